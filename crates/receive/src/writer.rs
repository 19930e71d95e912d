//! Validates a decoded remote-write request and appends it to a tenant's TSDB.
//!
//! Every series is checked on its own; valid samples are stored even when others are rejected,
//! and the answer says how many were accepted and names the first offending series. Status
//! codes follow what remote-write clients do with them (they retry 5xx and drop 4xx):
//! - 400: data that can never be accepted (bad labels, native histograms);
//! - 409: samples that conflict with what is stored (out of order, duplicate timestamp with a
//!   different value, older than the head accepts);
//! - 429: new series for a tenant at its active-series limit (existing series keep writing);
//! - 500: a storage failure: nothing of the request was acknowledged, so the client retries;
//! - 503: the same when the TSDB's disk is full, named as such: retried, and worth an alert.

use proto::remote_write::{TimeSeries, WriteRequest};
use tsdb::db::Db;

/// The class of a rejection, from least to most severe for the response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Conflict,
    BadRequest,
    TooManyRequests,
    Internal,
    Unavailable,
}

impl Severity {
    pub fn status(self) -> u16 {
        match self {
            Severity::Conflict => 409,
            Severity::BadRequest => 400,
            Severity::TooManyRequests => 429,
            Severity::Internal => 500,
            Severity::Unavailable => 503,
        }
    }
}

/// Why samples were rejected (the `reason` label of the rejection metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidLabels,
    NativeHistogram,
    OutOfOrder,
    DuplicateTimestamp,
    OutOfBounds,
    SeriesLimit,
    NodeSeriesLimit,
    Storage,
    DiskFull,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidLabels => "invalid_labels",
            Reason::NativeHistogram => "native_histogram",
            Reason::OutOfOrder => "out_of_order",
            Reason::DuplicateTimestamp => "duplicate_timestamp",
            Reason::OutOfBounds => "out_of_bounds",
            Reason::SeriesLimit => "series_limit",
            Reason::NodeSeriesLimit => "node_series_limit",
            Reason::Storage => "storage",
            Reason::DiskFull => "disk_full",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Reason::InvalidLabels | Reason::NativeHistogram => Severity::BadRequest,
            Reason::OutOfOrder | Reason::DuplicateTimestamp | Reason::OutOfBounds => {
                Severity::Conflict
            }
            Reason::SeriesLimit | Reason::NodeSeriesLimit => Severity::TooManyRequests,
            Reason::Storage => Severity::Internal,
            Reason::DiskFull => Severity::Unavailable,
        }
    }
}

/// What happened to a request.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub total_samples: usize,
    /// Samples stored, plus exact duplicates of stored samples (accepted, not stored again).
    /// Exemplars are accepted and dropped (not stored yet), so none is counted anywhere.
    pub accepted_samples: usize,
    /// Rejected samples (or series, for label errors) per reason.
    pub rejected: Vec<(Reason, usize)>,
    /// The most severe problem, with its message naming the first offending series.
    pub error: Option<(Severity, String)>,
}

impl WriteOutcome {
    fn reject(&mut self, reason: Reason, count: usize, message: impl FnOnce() -> String) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += count,
            None => self.rejected.push((reason, count)),
        }
        let severity = reason.severity();
        if self.error.as_ref().is_none_or(|(s, _)| severity > *s) {
            self.error = Some((severity, message()));
        }
    }

    pub fn status(&self) -> u16 {
        self.error.as_ref().map_or(204, |(s, _)| s.status())
    }

    /// The response body for a failed request.
    pub fn message(&self) -> String {
        let Some((_, first)) = &self.error else {
            return String::new();
        };
        let rejected: Vec<String> = self
            .rejected
            .iter()
            .map(|(r, n)| format!("{n} {}", r.as_str()))
            .collect();
        format!(
            "accepted {} of {} samples; rejected: {}; first: {first}",
            self.accepted_samples,
            self.total_samples,
            rejected.join(", ")
        )
    }
}

/// Label names as Prometheus (before UTF-8 names) defines them: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Renders a series' labels as sent, for error messages.
fn describe(series: &TimeSeries<'_>) -> String {
    let parts: Vec<String> = series
        .labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// What is wrong with a series' labels.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLabels {
    #[error("series has no labels")]
    Empty,
    #[error("invalid label name {0:?}")]
    BadName(String),
    #[error("label {0:?} has an empty value")]
    EmptyValue(String),
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    #[error("labels are not sorted: {name:?} comes after {previous:?}")]
    NotSorted { name: String, previous: String },
    #[error("missing metric name (label __name__)")]
    NoMetricName,
}

/// Checks a series' labels: the rules of a Prometheus label set, as sent.
pub fn validate_labels(series: &TimeSeries<'_>) -> Result<(), InvalidLabels> {
    if series.labels.is_empty() {
        return Err(InvalidLabels::Empty);
    }
    let mut prev: Option<&str> = None;
    let mut has_name = false;
    for l in &series.labels {
        if !is_valid_label_name(l.name) {
            return Err(InvalidLabels::BadName(l.name.to_string()));
        }
        if l.value.is_empty() {
            return Err(InvalidLabels::EmptyValue(l.name.to_string()));
        }
        if let Some(p) = prev {
            if l.name == p {
                return Err(InvalidLabels::Duplicate(l.name.to_string()));
            }
            if l.name < p {
                return Err(InvalidLabels::NotSorted {
                    name: l.name.to_string(),
                    previous: p.to_string(),
                });
            }
        }
        has_name |= l.name == tsdb::labels::METRIC_NAME;
        prev = Some(l.name);
    }
    if !has_name {
        return Err(InvalidLabels::NoMetricName);
    }
    Ok(())
}

/// Active-series limits a write checks before it creates a series.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadLimits {
    /// The tenant's limit (the limits file's `head_series_limit`).
    pub tenant: Option<u64>,
    /// The receiver's limit across tenants (`--receive.node-head-series-limit`) and the
    /// series all its tenants' heads hold now.
    pub node: Option<(u64, u64)>,
}

/// Appends a request's samples to `db` as one commit. A tenant at its limit of series, or a
/// receiver at its limit across tenants, accepts samples of existing series only.
pub fn write(db: &Db, req: &WriteRequest<'_>, limits: HeadLimits) -> WriteOutcome {
    write_series(db, req.timeseries.iter(), limits, false)
}

/// [`write`] for some of a request's series (the share a receiver owns). `late`: the samples are
/// late on purpose (hinted handoff deliveries) and go wherever the head still reaches.
pub fn write_series<'a, 'b: 'a, I>(
    db: &Db,
    series: I,
    limits: HeadLimits,
    late: bool,
) -> WriteOutcome
where
    I: Iterator<Item = &'a TimeSeries<'b>> + Clone,
{
    let mut out = WriteOutcome {
        total_samples: series.clone().map(|s| s.samples.len()).sum(),
        ..Default::default()
    };
    let at_limit = limits
        .tenant
        .filter(|&l| db.head().num_series() as u64 >= l);
    let node_at_limit = limits
        .node
        .filter(|&(limit, series)| series >= limit)
        .map(|(limit, _)| limit);
    let mut app = db.appender();
    if late {
        app.accept_late();
    }
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(16);
    for series in series {
        if !series.histograms.is_empty() {
            out.reject(Reason::NativeHistogram, series.histograms.len(), || {
                format!(
                    "series {}: native histograms are not supported yet",
                    describe(series)
                )
            });
        }
        if series.samples.is_empty() {
            continue;
        }
        match validate_labels(series) {
            Ok(()) => {}
            Err(why) => {
                out.reject(Reason::InvalidLabels, series.samples.len(), || {
                    format!("series {}: {why}", describe(series))
                });
                continue;
            }
        };
        pairs.clear();
        pairs.extend(series.labels.iter().map(|l| (l.name, l.value)));
        if (at_limit.is_some() || node_at_limit.is_some()) && !db.head().contains_pairs(&pairs) {
            if let Some(limit) = at_limit {
                out.reject(Reason::SeriesLimit, series.samples.len(), || {
                    format!(
                        "series {}: the tenant is at its limit of {limit} active series",
                        describe(series)
                    )
                });
            } else if let Some(limit) = node_at_limit {
                out.reject(Reason::NodeSeriesLimit, series.samples.len(), || {
                    format!(
                        "series {}: this receiver is at its limit of {limit} active series across \
                         tenants (--receive.node-head-series-limit); new series are refused until \
                         the head is cut into a block or the pool grows",
                        describe(series)
                    )
                });
            }
            continue;
        }
        let handle = match app.series_for_pairs(&pairs) {
            Ok(h) => h,
            Err(e) => {
                out.reject(Reason::Storage, series.samples.len(), || {
                    format!("series {}: {e}", describe(series))
                });
                continue;
            }
        };
        for s in &series.samples {
            match app.append_to(handle, s.timestamp, s.value) {
                Ok(_) => {}
                Err(e) => {
                    let reason = match e {
                        tsdb::Error::OutOfOrder { .. } => Reason::OutOfOrder,
                        tsdb::Error::DuplicateTimestamp { .. } => Reason::DuplicateTimestamp,
                        tsdb::Error::OutOfBounds { .. } => Reason::OutOfBounds,
                        _ => Reason::Storage,
                    };
                    out.reject(reason, 1, || format!("series {}: {e}", describe(series)));
                }
            }
        }
    }
    match app.commit() {
        Ok(stats) => {
            // Exact duplicates are accepted without being stored again; they count as written,
            // so what is accepted is what was neither rejected here nor lost at commit.
            let rejected: usize = out
                .rejected
                .iter()
                .filter(|(r, _)| *r != Reason::NativeHistogram)
                .map(|(_, n)| n)
                .sum();
            out.accepted_samples = out
                .total_samples
                .saturating_sub(rejected + stats.rejected_late);
            if stats.rejected_late > 0 {
                out.reject(Reason::OutOfOrder, stats.rejected_late, || {
                    "samples lost a race with a concurrent write to the same series or a block cut (out of order)"
                        .into()
                });
            }
        }
        Err(e) => {
            out.accepted_samples = 0;
            if is_disk_full(&e) {
                out.reject(Reason::DiskFull, out.total_samples, || {
                    format!(
                        "the receiver's disk is full, nothing of this request was written: {e} \
                         (the TSDB directory {} needs free space)",
                        db.dir().display()
                    )
                });
            } else {
                out.reject(Reason::Storage, out.total_samples, || {
                    format!("storage error: {e}")
                });
            }
        }
    }
    out
}

/// Whether a storage error comes from a full disk (or an exhausted quota).
fn is_disk_full(e: &tsdb::Error) -> bool {
    match e {
        tsdb::Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::remote_write::{Label as WireLabel, Sample};

    fn ts<'a>(labels: &[(&'a str, &'a str)], samples: &[(i64, f64)]) -> TimeSeries<'a> {
        TimeSeries {
            labels: labels
                .iter()
                .map(|&(name, value)| WireLabel { name, value })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn label_validation_names_the_problem() {
        let cases = [
            (vec![], "no labels"),
            (vec![("job", "x")], "missing metric name"),
            (vec![("__name__", "up"), ("job", "")], "empty value"),
            (
                vec![("__name__", "up"), ("1job", "x")],
                "invalid label name",
            ),
            (
                vec![("__name__", "up"), ("job", "a"), ("job", "b")],
                "duplicate label name",
            ),
            (vec![("job", "a"), ("__name__", "up")], "not sorted"),
        ];
        for (labels, want) in cases {
            let err = validate_labels(&ts(&labels, &[(1, 1.0)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{labels:?}: {err}");
        }
        validate_labels(&ts(&[("__name__", "up"), ("job", "a")], &[])).unwrap();
    }

    #[test]
    fn partial_writes_report_the_first_offender() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), Default::default()).unwrap();
        let req = WriteRequest {
            timeseries: vec![
                ts(&[("__name__", "up")], &[(1000, 1.0), (2000, 1.0)]),
                ts(&[("job", "x")], &[(1000, 1.0)]),
            ],
            metadata: vec![],
        };
        let out = write(&db, &req, HeadLimits::default());
        assert_eq!(out.status(), 400);
        assert_eq!(out.accepted_samples, 2);
        assert!(
            out.message().contains("accepted 2 of 3 samples"),
            "{}",
            out.message()
        );
        assert!(
            out.message()
                .contains(r#"series {job="x"}: missing metric name"#),
            "{}",
            out.message()
        );

        let req = WriteRequest {
            timeseries: vec![ts(
                &[("__name__", "up")],
                &[(1500, 1.0), (2000, 5.0), (3000, 1.0)],
            )],
            metadata: vec![],
        };
        let out = write(&db, &req, HeadLimits::default());
        assert_eq!(out.status(), 409);
        assert_eq!(out.accepted_samples, 1);
        assert!(out.message().contains("out of order"), "{}", out.message());
        assert!(
            out.message().contains("1 duplicate_timestamp"),
            "{}",
            out.message()
        );
    }

    #[test]
    fn a_receiver_at_its_node_limit_takes_samples_of_existing_series_only() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), Default::default()).unwrap();
        fn one(name: &str, t: i64) -> WriteRequest<'_> {
            WriteRequest {
                timeseries: vec![ts(&[("__name__", name)], &[(t, 1.0)])],
                metadata: vec![],
            }
        }
        let out = write(&db, &one("a", 1000), HeadLimits::default());
        assert_eq!(out.status(), 204);
        // Other tenants fill the node: 10 series of a limit of 10.
        let full = HeadLimits {
            tenant: None,
            node: Some((10, 10)),
        };
        let out = write(&db, &one("a", 2000), full);
        assert_eq!(out.status(), 204, "an existing series still takes samples");
        let out = write(&db, &one("b", 2000), full);
        assert_eq!(out.status(), 429);
        assert_eq!(out.rejected, vec![(Reason::NodeSeriesLimit, 1)]);
        assert!(
            out.message().contains(
                r#"series {__name__="b"}: this receiver is at its limit of 10 active series across tenants"#
            ),
            "{}",
            out.message()
        );
        // The tenant's own limit is named first when both are reached.
        let both = HeadLimits {
            tenant: Some(1),
            node: Some((10, 10)),
        };
        let out = write(&db, &one("b", 2000), both);
        assert_eq!(out.rejected, vec![(Reason::SeriesLimit, 1)]);
        let out = write(
            &db,
            &one("b", 2000),
            HeadLimits {
                tenant: None,
                node: Some((10, 9)),
            },
        );
        assert_eq!(out.status(), 204);
    }
}
