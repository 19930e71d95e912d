//! YAML as every configuration file here is read: serde-saphyr with alias expansion bounded by
//! the size of the text, so a few hundred bytes of nested aliases ("billion laughs") cannot
//! expand into megabytes. serde-saphyr's own default allows a million replayed events whatever
//! the input; here a document may replay about one event per 8 bytes of text, plus 1024, far
//! more than anchors in a hand-written file use.

use serde::de::DeserializeOwned;

/// Parses `text`, refusing alias expansion beyond what its size justifies.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.alias_limits.max_total_replayed_events = 1024 + text.len() / 8;
    serde_saphyr::from_str_with_options(text, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_work_and_alias_bombs_do_not() {
        let v: Vec<Vec<String>> = from_str("- &a [x, y]\n- *a\n").unwrap();
        assert_eq!(v, [["x", "y"], ["x", "y"]]);
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
        let e = from_str::<serde_json::Value>(bomb).unwrap_err().to_string();
        assert!(e.contains("alias") || e.contains("replay"), "{e}");
    }
}
