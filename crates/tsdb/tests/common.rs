//! Helpers shared by the tsdb integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The promtool binary (Debian package `prometheus`, 2.42). Missing promtool fails the test:
/// the README's test command installs it.
pub fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    assert!(
        path.exists(),
        "promtool not found at {} (install the Debian package `prometheus`, or set PROMTOOL)",
        path.display()
    );
    path
}

/// Runs promtool with arguments; panics with its output if it fails.
pub fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .output()
        .expect("running promtool");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "promtool {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// Parses a float as Go's `%g` prints it (NaN, +Inf, -Inf, 1e+06, ...).
pub fn parse_go_float(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or_else(|_| panic!("not a float: {s:?}")),
    }
}

/// Same value, with every NaN equal to every other NaN (promtool prints them all as NaN).
pub fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Parses `promtool tsdb dump` output into (labels text, timestamp, value) rows.
pub fn parse_dump(text: &str) -> Vec<(String, i64, f64)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let close = line.rfind('}').expect("dump line has labels");
            let labels = line[..=close].to_string();
            let mut rest = line[close + 1..].split_whitespace();
            let v = parse_go_float(rest.next().expect("value"));
            let t: i64 = rest
                .next()
                .expect("timestamp")
                .parse()
                .expect("integer timestamp");
            (labels, t, v)
        })
        .collect()
}

pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    out.sort();
    out
}
