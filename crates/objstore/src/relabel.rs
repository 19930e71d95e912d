//! Prometheus relabelling (`relabel_config`), as Thanos applies it to choose blocks:
//! `--selector.relabel-config` on the store gateway and the compactor runs these rules over a
//! block's external labels plus `__block_id`, and a block whose labels do not survive is not
//! served (or compacted) by that instance. That is how a fleet shards the bucket.
//!
//! ```yaml
//! - action: hashmod            # shard by block: md5 of the joined values, mod 2
//!   source_labels: [__block_id]
//!   target_label: shard
//!   modulus: 2
//! - action: keep               # this instance takes shard 0
//!   source_labels: [shard]
//!   regex: 0
//! ```
//!
//! Semantics are Prometheus' `model/relabel`: the defaults (`separator: ";"`,
//! `regex: (.*)`, `replacement: $1`, `action: replace`), regexes anchored at both ends and
//! compiled with `(?s)`, `$1`/`${name}` expansion, an empty value meaning "no such label", and
//! hashmod taking the big-endian u64 of the last 8 bytes of the MD5 of the joined source
//! values. Validation is Prometheus' with UTF-8 label names (what Thanos asks for). Thanos
//! allows only keep, drop and hashmod for block selection ([`SELECTOR_ACTIONS`]); every action
//! is implemented so other callers can use the rest.
//!
//! One deliberate difference: Go's YAML decoder ignores unknown fields, so a typo such as
//! `source_label:` silently selects nothing; here it is an error that names the field.

use std::collections::BTreeMap;
use std::fmt;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// The label Thanos adds, holding the block's ULID, before relabelling for block selection.
pub const BLOCK_ID_LABEL: &str = "__block_id";

/// The actions Thanos accepts in a block-selection relabel config.
pub const SELECTOR_ACTIONS: &[Action] = &[Action::Keep, Action::Drop, Action::HashMod];

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    /// Parses an action name; Prometheus accepts any case.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated relabelling rule.
#[derive(Clone, Debug)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// The regex as written (before anchoring).
    pub regex_source: String,
    regex: Regex,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
}

/// A relabel config that could not be parsed or is not valid; says which rule and field.
#[derive(Debug, thiserror::Error)]
pub enum RelabelError {
    #[error("parsing relabel configuration: {0}")]
    Yaml(String),
    #[error("relabel config #{index}: field {field}: {message}")]
    Invalid {
        /// 1-based position of the rule in the list.
        index: usize,
        field: &'static str,
        message: String,
    },
}

/// The YAML shape; every field optional so Prometheus' defaults can be told apart from
/// explicit values (some actions forbid non-default ones).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source_labels: Option<Vec<ScalarString>>,
    #[serde(default)]
    separator: Option<ScalarString>,
    #[serde(default)]
    regex: Option<ScalarString>,
    #[serde(default)]
    modulus: Option<u64>,
    #[serde(default)]
    target_label: Option<ScalarString>,
    #[serde(default)]
    replacement: Option<ScalarString>,
    #[serde(default)]
    action: Option<ScalarString>,
}

/// A YAML scalar taken as text, whatever its type: `regex: 0` is the string "0" to Go's YAML
/// decoder, and shard selectors are written that way.
struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ScalarString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Compiles a Prometheus relabel regex: anchored, and `.` matching newlines too.
fn compile_anchored(source: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{source})$"))
}

/// Parses a YAML list of relabel configs (the content of `--selector.relabel-config`).
/// With `allowed`, any other action is rejected (Thanos passes [`SELECTOR_ACTIONS`]).
pub fn parse_relabel_configs(
    yaml: &str,
    allowed: Option<&[Action]>,
) -> Result<Vec<RelabelConfig>, RelabelError> {
    // An empty file or flag means no rules, as for Go's decoder.
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Option<Vec<RawConfig>> =
        model::yaml::from_str(yaml).map_err(|e| RelabelError::Yaml(e.to_string()))?;
    let mut compiled = std::collections::HashMap::new();
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, raw)| RelabelConfig::from_raw(i + 1, raw, allowed, &mut compiled))
        .collect()
}

impl RelabelConfig {
    fn from_raw(
        index: usize,
        raw: RawConfig,
        allowed: Option<&[Action]>,
        compiled: &mut std::collections::HashMap<String, Regex>,
    ) -> Result<RelabelConfig, RelabelError> {
        let invalid = |field: &'static str, message: String| RelabelError::Invalid {
            index,
            field,
            message,
        };
        let action_text = raw.action.map_or_else(|| "replace".to_string(), |a| a.0);
        if action_text.is_empty() {
            return Err(invalid("action", "relabel action cannot be empty".into()));
        }
        let action = Action::parse(&action_text)
            .ok_or_else(|| invalid("action", format!("unknown relabel action {action_text:?}")))?;
        if let Some(allowed) = allowed {
            if !allowed.contains(&action) {
                let names: Vec<&str> = allowed.iter().map(Action::as_str).collect();
                return Err(invalid(
                    "action",
                    format!(
                        "unsupported relabel action {action}: only {} are allowed here",
                        names.join(", ")
                    ),
                ));
            }
        }
        let regex_given = raw.regex.is_some();
        let regex_source = raw.regex.map_or_else(|| DEFAULT_REGEX.to_string(), |r| r.0);
        // Compiling a regex costs a few hundred KiB whatever its size: a file repeating one
        // (the default, most often) compiles it once.
        let regex = match compiled.get(&regex_source) {
            Some(r) => Regex::clone(r),
            None => {
                let r = compile_anchored(&regex_source).map_err(|e| {
                    invalid("regex", format!("{regex_source:?} does not compile: {e}"))
                })?;
                compiled.insert(regex_source.clone(), r.clone());
                r
            }
        };
        let source_labels_given = raw.source_labels.is_some();
        let config = RelabelConfig {
            source_labels: raw
                .source_labels
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.0)
                .collect(),
            separator: raw
                .separator
                .map_or_else(|| DEFAULT_SEPARATOR.to_string(), |s| s.0),
            regex_source,
            regex,
            modulus: raw.modulus.unwrap_or(0),
            target_label: raw.target_label.map(|s| s.0).unwrap_or_default(),
            replacement: raw
                .replacement
                .map_or_else(|| DEFAULT_REPLACEMENT.to_string(), |s| s.0),
            action,
        };
        config.validate(regex_given, source_labels_given, index)?;
        Ok(config)
    }

    /// Prometheus' `Config.Validate` under UTF-8 name validation, where any non-empty name
    /// is a valid label name.
    fn validate(
        &self,
        regex_given: bool,
        source_labels_given: bool,
        index: usize,
    ) -> Result<(), RelabelError> {
        let invalid = |field: &'static str, message: String| {
            Err(RelabelError::Invalid {
                index,
                field,
                message,
            })
        };
        let action = self.action;
        if action == Action::HashMod && self.modulus == 0 {
            return invalid("modulus", "hashmod requires a non-zero modulus".into());
        }
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return invalid(
                "target_label",
                format!("the {action} action requires a target_label"),
            );
        }
        let replacement_is_default = self.replacement == DEFAULT_REPLACEMENT;
        if matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        ) && !replacement_is_default
        {
            return invalid(
                "replacement",
                format!("replacement can not be set for the {action} action"),
            );
        }
        if action == Action::LabelMap && self.replacement.is_empty() {
            return invalid(
                "replacement",
                "the labelmap action needs a non-empty replacement label name".into(),
            );
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (regex_given && self.regex_source != DEFAULT_REGEX
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR)
        {
            return invalid(
                "action",
                format!("the {action} action takes only source_labels and target_label"),
            );
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (source_labels_given
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || !replacement_is_default)
        {
            return invalid("action", format!("the {action} action takes only a regex"));
        }
        Ok(())
    }

    /// Applies this rule to `labels`; false means "drop the target".
    fn apply(&self, labels: &mut BTreeMap<String, String>) -> bool {
        let values: Vec<&str> = self
            .source_labels
            .iter()
            .map(|name| labels.get(name).map_or("", String::as_str))
            .collect();
        let value = values.join(&self.separator);
        match self.action {
            Action::Drop => return !self.regex.is_match(&value),
            Action::Keep => return self.regex.is_match(&value),
            Action::DropEqual => {
                return labels.get(&self.target_label).map_or("", String::as_str) != value
            }
            Action::KeepEqual => {
                return labels.get(&self.target_label).map_or("", String::as_str) == value
            }
            Action::Replace => {
                // Prometheus' fast path (set or delete a fixed label) gives the same result as
                // the general one below for these inputs, so it needs no special case.
                let Some(captures) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                captures.expand(&self.target_label, &mut target);
                if target.is_empty() {
                    return true;
                }
                let mut replaced = String::new();
                captures.expand(&self.replacement, &mut replaced);
                set_label(labels, &target, replaced);
            }
            Action::Lowercase => set_label(labels, &self.target_label, value.to_lowercase()),
            Action::Uppercase => set_label(labels, &self.target_label, value.to_uppercase()),
            Action::HashMod => {
                let shard = hashmod(&value, self.modulus);
                set_label(labels, &self.target_label, shard.to_string());
            }
            Action::LabelMap => {
                let snapshot: Vec<(String, String)> =
                    labels.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
                for (name, value) in snapshot {
                    if self.regex.is_match(&name) {
                        let mapped = self.regex.replace_all(&name, self.replacement.as_str());
                        set_label(labels, &mapped, value);
                    }
                }
            }
            Action::LabelDrop => labels.retain(|name, _| !self.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| self.regex.is_match(name)),
        }
        true
    }
}

/// Sets a label; an empty value removes it, as in Prometheus' `labels.Builder`.
fn set_label(labels: &mut BTreeMap<String, String>, name: &str, value: String) {
    if value.is_empty() {
        labels.remove(name);
    } else {
        labels.insert(name.to_string(), value);
    }
}

/// Prometheus' hashmod: MD5 of `value`, the last 8 bytes read as a big-endian u64 (what
/// older Prometheus versions used, kept for stable shards), modulo `modulus`.
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(tail) % modulus
}

/// Runs the rules in order over `labels`. Returns false as soon as a rule drops the target;
/// `labels` then holds whatever the rules had made of it so far.
pub fn process(configs: &[RelabelConfig], labels: &mut BTreeMap<String, String>) -> bool {
    configs.iter().all(|c| c.apply(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85c edef654fccc4a4d8: the last 8 bytes, big-endian.
        assert_eq!(hashmod("foo", u64::MAX), 0xedef_654f_ccc4_a4d8);
        // Prometheus' relabel_test.go hashmod cases: "baz" -> 976, "foo\nbar" -> 734.
        assert_eq!(hashmod("foo\nbar", 1000), 734);
        let configs = parse_relabel_configs(
            "- action: hashmod\n  source_labels: [c]\n  target_label: d\n  modulus: 1000\n",
            None,
        )
        .unwrap();
        let mut l = labels(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
        assert!(process(&configs, &mut l));
        assert_eq!(
            l,
            labels(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")])
        );
    }

    #[test]
    fn shard_by_block_id_with_keep_and_a_numeric_regex() {
        let yaml = r#"
- action: hashmod
  source_labels: ["__block_id"]
  target_label: shard
  modulus: 2
- action: keep
  source_labels: [shard]
  regex: 0
"#;
        let configs = parse_relabel_configs(yaml, Some(SELECTOR_ACTIONS)).unwrap();
        let mut kept = 0;
        for i in 0..100 {
            let id = format!("01HQ8ZC3Y8ZJ6M5X2N0W6P3V{i:02}");
            let mut l = labels(&[(BLOCK_ID_LABEL, id.as_str())]);
            let keep = process(&configs, &mut l);
            assert_eq!(keep, hashmod(&id, 2) == 0);
            kept += usize::from(keep);
        }
        assert!(kept > 20 && kept < 80, "{kept}");
    }

    #[test]
    fn keep_and_drop_are_anchored() {
        let keep = parse_relabel_configs(
            "- action: keep\n  source_labels: [cluster, env]\n  regex: eu-1;prod\n",
            None,
        )
        .unwrap();
        assert!(process(
            &keep,
            &mut labels(&[("cluster", "eu-1"), ("env", "prod")])
        ));
        assert!(!process(
            &keep,
            &mut labels(&[("cluster", "xeu-1"), ("env", "prod")])
        ));
        assert!(!process(&keep, &mut labels(&[("cluster", "eu-1")])));
        let drop = parse_relabel_configs(
            "- action: DROP\n  source_labels: [env]\n  regex: dev|test\n",
            None,
        )
        .unwrap();
        assert!(!process(&drop, &mut labels(&[("env", "dev")])));
        assert!(process(&drop, &mut labels(&[("env", "development")])));
        // With no source labels the joined value is "", which (.*) matches.
        let keep_all = parse_relabel_configs("- action: keep\n", None).unwrap();
        assert!(process(&keep_all, &mut labels(&[])));
    }

    #[test]
    fn replace_and_labelmap() {
        let configs = parse_relabel_configs(
            r#"
- source_labels: [a]
  regex: "f(.*)"
  target_label: "${1}_x"
  replacement: "v-$1"
- source_labels: [b]
  regex: "(.*)"
  target_label: b
  replacement: ""
- action: labelmap
  regex: "tmp_(.*)"
  replacement: "kept_$1"
"#,
            None,
        )
        .unwrap();
        let mut l = labels(&[("a", "foo"), ("b", "gone"), ("tmp_zone", "z1")]);
        assert!(process(&configs, &mut l));
        assert_eq!(
            l,
            labels(&[
                ("a", "foo"),
                ("kept_zone", "z1"),
                ("oo_x", "v-oo"),
                ("tmp_zone", "z1")
            ])
        );
    }

    #[test]
    fn other_actions() {
        let configs = parse_relabel_configs(
            "- action: uppercase\n  source_labels: [a]\n  target_label: up\n- action: labeldrop\n  regex: a\n- action: keepequal\n  source_labels: [up]\n  target_label: copy\n",
            None,
        )
        .unwrap();
        let mut l = labels(&[("a", "Foo"), ("copy", "FOO")]);
        assert!(process(&configs, &mut l));
        assert_eq!(l, labels(&[("copy", "FOO"), ("up", "FOO")]));
    }

    #[test]
    fn errors_name_the_rule_and_field() {
        let err = |yaml: &str| {
            parse_relabel_configs(yaml, Some(SELECTOR_ACTIONS))
                .unwrap_err()
                .to_string()
        };
        let e = err("- action: keep\n- action: hashmod\n  source_labels: [a]\n  target_label: s\n");
        assert!(e.contains("#2") && e.contains("modulus"), "{e}");
        let e = err("- action: hashmod\n  modulus: 3\n");
        assert!(e.contains("target_label"), "{e}");
        let e = err("- action: labelmap\n  regex: x\n");
        assert!(e.contains("unsupported relabel action labelmap"), "{e}");
        let e = err("- action: nope\n");
        assert!(e.contains("unknown relabel action"), "{e}");
        let e = err("- action: keep\n  regex: \"(\"\n");
        assert!(e.contains("regex"), "{e}");
        let e = err("- action: keep\n  source_label: [a]\n");
        assert!(e.contains("source_label"), "{e}");
        assert!(parse_relabel_configs("", Some(SELECTOR_ACTIONS))
            .unwrap()
            .is_empty());
        let e = parse_relabel_configs(
            "- action: lowercase\n  target_label: x\n  replacement: y\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("replacement"), "{e}");
    }
}
