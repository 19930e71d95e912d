//! StoreAPI label matchers to TSDB matchers, and what external labels do with them.

use proto::thanos::{label_matcher, LabelMatcher};
use tonic::Status;
use tsdb::matcher::{MatchType, Matcher};

use crate::ExternalLabels;

/// Converts StoreAPI matchers, compiling regexes. Errors are `InvalidArgument` naming the
/// matcher.
pub fn convert_matchers(matchers: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    matchers
        .iter()
        .map(|m| {
            let kind = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchType::Equal,
                Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
                Ok(label_matcher::Type::Re) => MatchType::Regex,
                Ok(label_matcher::Type::Nre) => MatchType::NotRegex,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown matcher type {} for label {:?}",
                        m.r#type, m.name
                    )))
                }
            };
            Matcher::new(kind, m.name.as_str(), m.value.as_str()).map_err(|e| {
                Status::invalid_argument(format!(
                    "invalid matcher {}{}{:?}: {e}",
                    m.name,
                    kind.as_str(),
                    m.value
                ))
            })
        })
        .collect()
}

/// The matchers to run against one TSDB: `None` when a matcher on one of its external labels
/// rejects the label's value (the TSDB has nothing to contribute), otherwise the matchers on
/// other labels. A matcher on an external label is checked against the external value and
/// dropped, as Thanos does: the series in the TSDB do not carry the label themselves.
pub fn matchers_for_tsdb(matchers: &[Matcher], external: &ExternalLabels) -> Option<Vec<Matcher>> {
    let mut rest = Vec::with_capacity(matchers.len());
    for m in matchers {
        match external.get(&m.name).filter(|v| !v.is_empty()) {
            Some(value) if !m.matches(value) => return None,
            Some(_) => {}
            None => rest.push(m.clone()),
        }
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(pairs: &[(&str, &str)]) -> ExternalLabels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pm(t: label_matcher::Type, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn converts_every_type() {
        use label_matcher::Type::*;
        let ms = convert_matchers(&[
            pm(Eq, "a", "1"),
            pm(Neq, "b", "2"),
            pm(Re, "c", "x|y"),
            pm(Nre, "d", "z.*"),
        ])
        .unwrap();
        let kinds: Vec<MatchType> = ms.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MatchType::Equal,
                MatchType::NotEqual,
                MatchType::Regex,
                MatchType::NotRegex
            ]
        );
        assert!(ms[2].matches("y") && !ms[2].matches("xy"));
    }

    #[test]
    fn bad_regex_and_unknown_type_are_invalid_argument() {
        let err = convert_matchers(&[pm(label_matcher::Type::Re, "job", "(")]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("job=~\"(\""), "{}", err.message());

        let mut m = pm(label_matcher::Type::Eq, "job", "x");
        m.r#type = 9;
        let err = convert_matchers(&[m]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("unknown matcher type 9"));
    }

    #[test]
    fn external_label_matchers_filter_tsdbs_and_are_dropped() {
        let e = ext(&[("tenant_id", "a"), ("replica", "r1")]);
        let ms = vec![
            Matcher::equal("tenant_id", "a"),
            Matcher::regex("replica", "r.*").unwrap(),
            Matcher::equal("job", "x"),
        ];
        let rest = matchers_for_tsdb(&ms, &e).unwrap();
        assert_eq!(rest, vec![Matcher::equal("job", "x")]);

        assert!(matchers_for_tsdb(&[Matcher::equal("tenant_id", "b")], &e).is_none());
        assert!(matchers_for_tsdb(&[Matcher::not_equal("tenant_id", "a")], &e).is_none());
        // "label absent" cannot match: every series of the TSDB carries the external label.
        assert!(matchers_for_tsdb(&[Matcher::equal("replica", "")], &e).is_none());
        // Without external labels, everything goes to the TSDB.
        assert_eq!(matchers_for_tsdb(&ms, &ext(&[])).unwrap(), ms);
    }
}
