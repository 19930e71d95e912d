//! File service discovery for endpoints, in the format Thanos' `--store.sd-files` reads
//! (Prometheus' `file_sd_configs`): a YAML or JSON list of target groups,
//!
//! ```yaml
//! - targets: ['receive-0:10901', 'receive-1:10901']
//!   labels: {zone: a}        # accepted and ignored
//! ```
//!
//! A path may contain `*`, `?` and `[...]` (Go's `filepath.Match`) in its last component
//! (`/etc/cairn/sd/*.yml`). Files are re-read periodically by the endpoint set; a file that fails
//! to read or parse keeps the targets it had (and the error is logged), so a half-written file
//! does not empty the endpoint set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Classify, StatusClass};

/// Why an SD file (or pattern) gives no targets.
#[derive(Debug, thiserror::Error)]
pub enum SdError {
    /// Text that is not a list of target groups (not tied to a file yet).
    #[error("{0}")]
    Syntax(#[source] serde_saphyr::Error),
    /// A malformed wildcard pattern.
    #[error("{0}")]
    Pattern(#[source] model::glob::BadPattern),
    /// The directory of a pattern cannot be listed.
    #[error("listing {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose text is not a list of target groups.
    #[error("parsing {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_saphyr::Error,
    },
}

impl SdError {
    /// Ties a [`SdError::Syntax`] to the file it came from.
    pub fn in_file(self, path: &Path) -> SdError {
        match self {
            SdError::Syntax(source) => SdError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        }
    }
}

impl Classify for SdError {
    /// Never answered to a request (logged, the file keeps its targets); were it, it would be
    /// the server's failure.
    fn class(&self) -> StatusClass {
        StatusClass::Internal
    }
}

#[derive(Deserialize)]
struct TargetGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
}

/// Parses one file's text: the targets of every group, in order.
pub fn parse(text: &str) -> Result<Vec<String>, SdError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<TargetGroup> = model::yaml::from_str(text).map_err(SdError::Syntax)?;
    Ok(groups
        .into_iter()
        .flat_map(|g| g.targets)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect())
}

/// The files a path pattern names now, sorted (the path itself when it has no wildcard).
pub fn expand(pattern: &Path) -> Result<Vec<PathBuf>, SdError> {
    let Some(file_name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![pattern.to_path_buf()]);
    };
    if !file_name.contains(['*', '?', '[']) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let wanted = model::glob::Glob::new(file_name).map_err(SdError::Pattern)?;
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(source) => return Err(SdError::List { dir, source }),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if wanted.matches(name) && e.path().is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every file a pattern names. Files that cannot be read or parsed are reported in the
/// second list and left out of the first.
pub fn read(pattern: &Path) -> (Vec<(PathBuf, Vec<String>)>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let files = match expand(pattern) {
        Ok(f) => f,
        Err(e) => {
            errors.push(e.to_string());
            return (found, errors);
        }
    };
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => match parse(&text) {
                Ok(targets) => found.push((f, targets)),
                Err(e) => errors.push(e.in_file(&f).to_string()),
            },
            Err(source) => errors.push(SdError::Read { path: f, source }.to_string()),
        }
    }
    (found, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yaml_and_json_target_groups() {
        let yaml = "- targets: ['a:1', 'b:2']\n  labels:\n    zone: x\n- targets:\n  - c:3\n";
        assert_eq!(parse(yaml).unwrap(), ["a:1", "b:2", "c:3"]);
        let json = r#"[{"targets": ["a:1"]}, {"targets": [], "labels": {"k": "v"}}]"#;
        assert_eq!(parse(json).unwrap(), ["a:1"]);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("targets: [a]").is_err());
    }

    #[test]
    fn expands_wildcards_in_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.yml", "b.yml", "c.json", "d.yml.bak"] {
            std::fs::write(dir.path().join(name), "- targets: ['x:1']\n").unwrap();
        }
        let got = expand(&dir.path().join("*.yml")).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        assert_eq!(expand(&dir.path().join("?.json")).unwrap().len(), 1);
        let plain = dir.path().join("c.json");
        assert_eq!(expand(&plain).unwrap(), vec![plain]);

        std::fs::write(dir.path().join("bad.yml"), "{{{").unwrap();
        let (found, errors) = read(&dir.path().join("*.yml"));
        assert_eq!(found.len(), 2);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("bad.yml"), "{errors:?}");
    }
}
