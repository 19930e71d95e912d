//! Validates a decoded remote-write request and appends it to a tenant's TSDB.
//!
//! Every series is checked on its own; valid samples are stored even when others are rejected,
//! and the answer says how many were accepted and names the first offending series. Status
//! codes follow what remote-write clients do with them (they retry 5xx and drop 4xx):
//! - 400: data that can never be accepted (bad labels, invalid native histograms);
//! - 409: samples that conflict with what is stored (out of order, duplicate timestamp with a
//!   different value, older than the head accepts);
//! - 429: new series for a tenant at its active-series limit (existing series keep writing);
//! - 500: a storage failure: nothing of the request was acknowledged, so the client retries;
//! - 503: the same when the TSDB's disk is full, named as such: retried, and worth an alert.

use model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use proto::remote_write::{
    Histogram as WireHist, HistogramCount, ResetHint, TimeSeries, WriteRequest,
};
use tsdb::db::Db;
use tsdb::head::Durable;

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
    InvalidHistogram,
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
            Reason::InvalidHistogram => "invalid_histogram",
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
            Reason::InvalidLabels | Reason::InvalidHistogram => Severity::BadRequest,
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
    /// Float samples in the request.
    pub total_samples: usize,
    /// Float samples stored, plus exact duplicates of stored samples (accepted, not stored
    /// again).
    pub accepted_samples: usize,
    /// Native histogram samples in the request, and those accepted (as for floats).
    pub total_histograms: usize,
    pub accepted_histograms: usize,
    /// Exemplars stored. Exemplars refused (storage off, duplicate, out of order, labels too
    /// long) fail nothing, as in Prometheus and Thanos: they are counted in `exemplars_refused`.
    pub accepted_exemplars: usize,
    pub exemplars_refused: usize,
    /// Rejected samples and histograms (per sample, also for label errors) per reason.
    pub rejected: Vec<(Reason, usize)>,
    /// Of those, histograms.
    rejected_histograms: usize,
    /// The most severe problem, with its message naming the first offending series.
    pub error: Option<(Severity, String)>,
}

impl WriteOutcome {
    /// Rejects a whole series: its float samples and its histograms.
    fn reject_series(&mut self, series: &TimeSeries<'_>, reason: Reason, why: &dyn Fn() -> String) {
        self.reject(reason, series.samples.len(), why);
        if !series.histograms.is_empty() {
            self.reject_histograms(reason, series.histograms.len(), why);
        }
    }

    /// Rejects `histograms` histogram samples (besides float samples) with `reason`.
    fn reject_histograms(
        &mut self,
        reason: Reason,
        histograms: usize,
        message: impl FnOnce() -> String,
    ) {
        self.rejected_histograms += histograms;
        self.reject(reason, histograms, message);
    }

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
        let histograms = if self.total_histograms > 0 {
            format!(
                " and {} of {} native histograms",
                self.accepted_histograms, self.total_histograms
            )
        } else {
            String::new()
        };
        format!(
            "accepted {} of {} samples{histograms}; rejected: {}; first: {first}",
            self.accepted_samples,
            self.total_samples,
            rejected.join(", ")
        )
    }
}

/// Label names as Prometheus (before UTF-8 names) defines them: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    /// Per byte: 1 may start a name, 2 may follow in one (`[a-zA-Z_][a-zA-Z0-9_]*`).
    const CLASS: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            if c.is_ascii_alphabetic() || c == b'_' {
                t[b] = 3;
            } else if c.is_ascii_digit() {
                t[b] = 2;
            }
            b += 1;
        }
        t
    };
    match name.as_bytes() {
        [first, rest @ ..] => {
            CLASS[usize::from(*first)] & 1 != 0
                && rest.iter().all(|&b| CLASS[usize::from(b)] & 2 != 0)
        }
        [] => false,
    }
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
            match l.name.cmp(p) {
                std::cmp::Ordering::Greater => {}
                std::cmp::Ordering::Equal => {
                    return Err(InvalidLabels::Duplicate(l.name.to_string()));
                }
                std::cmp::Ordering::Less => {
                    return Err(InvalidLabels::NotSorted {
                        name: l.name.to_string(),
                        previous: p.to_string(),
                    });
                }
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
    let (mut out, durable) = write_series_deferred(db, series, limits, late);
    if let Err(e) = durable.wait() {
        commit_failed(db, &mut out, &e);
    }
    out
}

/// [`write_series`] without waiting for the WAL's fsync: the outcome holds only once the
/// returned [`Durable`] is ready; if that fails, pass its error to [`commit_failed`].
pub fn write_series_deferred<'a, 'b: 'a, I>(
    db: &Db,
    series: I,
    limits: HeadLimits,
    late: bool,
) -> (WriteOutcome, Durable)
where
    I: Iterator<Item = &'a TimeSeries<'b>> + Clone,
{
    let mut out = WriteOutcome {
        total_samples: series.clone().map(|s| s.samples.len()).sum(),
        total_histograms: series.clone().map(|s| s.histograms.len()).sum(),
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
    let exemplars_off = db.head().exemplars().capacity() == 0;
    // First the checks that need no head, and the series' identity hashes; then the series
    // already in the head are looked up all at once (see `Appender::existing_series`).
    let mut valid = Vec::new();
    let mut identities = Vec::new();
    for series in series {
        let (floats, histograms) = (series.samples.len(), series.histograms.len());
        if floats + histograms == 0 && (series.exemplars.is_empty() || exemplars_off) {
            out.exemplars_refused += series.exemplars.len();
            continue;
        }
        if let Err(why) = validate_labels(series) {
            out.reject_series(series, Reason::InvalidLabels, &|| {
                format!("series {}: {why}", describe(series))
            });
            continue;
        }
        valid.push(series);
        identities.push(tsdb::labels::identity_hash_pairs(
            series.labels.iter().map(|l| (l.name, l.value)),
        ));
    }
    let existing = app.existing_series(&identities);
    for (series, existing) in valid.into_iter().zip(existing) {
        let handle = match existing {
            Some(h) => h,
            None if at_limit.is_some() || node_at_limit.is_some() => {
                if let Some(limit) = at_limit {
                    out.reject_series(series, Reason::SeriesLimit, &|| {
                        format!(
                            "series {}: the tenant is at its limit of {limit} active series",
                            describe(series)
                        )
                    });
                } else if let Some(limit) = node_at_limit {
                    out.reject_series(series, Reason::NodeSeriesLimit, &|| {
                        format!(
                            "series {}: this receiver is at its limit of {limit} active series \
                             across tenants (--receive.node-head-series-limit); new series are \
                             refused until the head is cut into a block or the pool grows",
                            describe(series)
                        )
                    });
                }
                continue;
            }
            None => {
                pairs.clear();
                pairs.extend(series.labels.iter().map(|l| (l.name, l.value)));
                match app.series_for_pairs(&pairs) {
                    Ok(h) => h,
                    Err(e) => {
                        out.reject_series(series, Reason::Storage, &|| {
                            format!("series {}: {e}", describe(series))
                        });
                        continue;
                    }
                }
            }
        };
        for s in &series.samples {
            if let Err(e) = app.append_to(handle, s.timestamp, s.value) {
                out.reject(append_reason(&e), 1, || {
                    format!("series {}: {e}", describe(series))
                });
            }
        }
        for h in &series.histograms {
            let appended = match histogram_from_wire(h) {
                Ok(WireHistogram::Int(x)) => app.append_histogram_to(handle, h.timestamp, x),
                Ok(WireHistogram::Float(x)) => {
                    app.append_float_histogram_to(handle, h.timestamp, x)
                }
                Err(why) => {
                    out.reject_histograms(Reason::InvalidHistogram, 1, || {
                        format!(
                            "series {}: native histogram at {}: {why}",
                            describe(series),
                            h.timestamp
                        )
                    });
                    continue;
                }
            };
            if let Err(e) = appended {
                out.reject_histograms(append_reason(&e), 1, || {
                    format!("series {}: native histogram: {e}", describe(series))
                });
            }
        }
        for e in &series.exemplars {
            let exemplar = tsdb::exemplars::Exemplar {
                labels: tsdb::Labels::from_pairs(e.labels.iter().map(|l| (l.name, l.value))),
                value: e.value,
                ts: e.timestamp,
            };
            match app.append_exemplar_to(handle, exemplar) {
                Ok(()) => {}
                Err(tsdb::exemplars::ExemplarError::Disabled) => out.exemplars_refused += 1,
                Err(why) => {
                    out.exemplars_refused += 1;
                    tracing::debug!(series = %describe(series), error = %why, "exemplar refused");
                }
            }
        }
    }
    match app.commit_deferred() {
        Ok((stats, durable)) => {
            // Exact duplicates are accepted without being stored again; they count as written,
            // so what is accepted is what was neither rejected here nor lost at commit.
            let rejected: usize = out.rejected.iter().map(|(_, n)| n).sum();
            let rejected_floats = rejected - out.rejected_histograms;
            out.accepted_samples = out
                .total_samples
                .saturating_sub(rejected_floats + stats.rejected_late);
            out.accepted_histograms = out
                .total_histograms
                .saturating_sub(out.rejected_histograms + stats.rejected_late_histograms);
            out.accepted_exemplars = stats.exemplars;
            let late = stats.rejected_late + stats.rejected_late_histograms;
            if late > 0 {
                out.reject(Reason::OutOfOrder, late, || {
                    "samples lost a race with a concurrent write to the same series or a block cut (out of order)"
                        .into()
                });
            }
            (out, durable)
        }
        Err(e) => {
            commit_failed(db, &mut out, &e);
            (out, Durable::ready())
        }
    }
}

/// Turns an outcome into a failed write: its commit (or the commit's fsync) failed.
pub fn commit_failed(db: &Db, out: &mut WriteOutcome, e: &tsdb::Error) {
    out.accepted_samples = 0;
    out.accepted_histograms = 0;
    let all = out.total_samples + out.total_histograms;
    if is_disk_full(e) {
        out.reject(Reason::DiskFull, all, || {
            format!(
                "the receiver's disk is full, nothing of this request was written: {e} \
                 (the TSDB directory {} needs free space)",
                db.dir().display()
            )
        });
    } else {
        out.reject(Reason::Storage, all, || format!("storage error: {e}"));
    }
}

fn append_reason(e: &tsdb::Error) -> Reason {
    match e {
        tsdb::Error::OutOfOrder { .. } => Reason::OutOfOrder,
        tsdb::Error::DuplicateTimestamp { .. } => Reason::DuplicateTimestamp,
        tsdb::Error::OutOfBounds { .. } => Reason::OutOfBounds,
        _ => Reason::Storage,
    }
}

/// A remote-write histogram as the TSDB stores it.
pub enum WireHistogram {
    Int(Histogram),
    Float(FloatHistogram),
}

/// Converts and validates a remote-write histogram (Prometheus' rules: a known schema, spans
/// that match the buckets, no negative bucket, buckets adding up to the count). A histogram
/// whose count is a float is a float histogram, as Prometheus reads it.
pub fn histogram_from_wire(h: &WireHist) -> Result<WireHistogram, String> {
    let spans = |s: &[proto::remote_write::BucketSpan]| -> Vec<Span> {
        s.iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let hint = match h.reset_hint {
        ResetHint::Unknown => CounterResetHint::Unknown,
        ResetHint::Yes => CounterResetHint::Reset,
        ResetHint::No => CounterResetHint::NotReset,
        ResetHint::Gauge => CounterResetHint::Gauge,
    };
    // A stale marker carries only its sum; whatever else came with it is not kept.
    if model::is_stale_nan(h.sum) {
        return Ok(if h.is_float() {
            WireHistogram::Float(FloatHistogram {
                sum: h.sum,
                ..Default::default()
            })
        } else {
            WireHistogram::Int(Histogram {
                sum: h.sum,
                ..Default::default()
            })
        });
    }
    let as_f64 = |c: &HistogramCount| match *c {
        HistogramCount::Int(i) => i as f64,
        HistogramCount::Float(f) => f,
    };
    if h.is_float() {
        let fh = FloatHistogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: as_f64(&h.zero_count),
            count: as_f64(&h.count),
            sum: h.sum,
            positive_spans: spans(&h.positive_spans),
            negative_spans: spans(&h.negative_spans),
            positive_buckets: h.positive_counts.clone(),
            negative_buckets: h.negative_counts.clone(),
            custom_values: h.custom_values.clone(),
        };
        fh.validate().map_err(|e| e.to_string())?;
        return Ok(WireHistogram::Float(fh));
    }
    let int = |c: &HistogramCount, what: &str| match *c {
        HistogramCount::Int(i) => Ok(i),
        HistogramCount::Float(_) => Err(format!(
            "{what} is a float in an integer histogram (count_int is set)"
        )),
    };
    let ih = Histogram {
        counter_reset_hint: hint,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: int(&h.zero_count, "zero_count")?,
        count: int(&h.count, "count")?,
        sum: h.sum,
        positive_spans: spans(&h.positive_spans),
        negative_spans: spans(&h.negative_spans),
        positive_buckets: h.positive_deltas.clone(),
        negative_buckets: h.negative_deltas.clone(),
        custom_values: h.custom_values.clone(),
    };
    ih.validate().map_err(|e| e.to_string())?;
    Ok(WireHistogram::Int(ih))
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

    proptest::proptest! {
        /// The byte table decides label names as the Prometheus pattern
        /// `[a-zA-Z_][a-zA-Z0-9_]*` does.
        #[test]
        fn label_names_follow_the_pattern(name in "[a-zA-Z0-9_:. é-]{0,6}|\\PC{0,4}") {
            let mut chars = name.chars();
            let expected = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            proptest::prop_assert_eq!(is_valid_label_name(&name), expected, "{:?}", name);
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

    fn wire_histogram(t: i64, count: u64, deltas: &[i64]) -> proto::remote_write::Histogram {
        proto::remote_write::Histogram {
            count: HistogramCount::Int(count),
            zero_count: HistogramCount::Int(0),
            sum: 2.5,
            schema: 0,
            positive_spans: vec![proto::remote_write::BucketSpan {
                offset: 0,
                length: deltas.len() as u32,
            }],
            positive_deltas: deltas.to_vec(),
            timestamp: t,
            ..Default::default()
        }
    }

    #[test]
    fn native_histograms_and_exemplars_are_stored_and_bad_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let opts = tsdb::db::DbOptions {
            max_exemplars: 100,
            ..Default::default()
        };
        let (db, _) = Db::open(dir.path(), opts).unwrap();
        let mut good = ts(&[("__name__", "latency")], &[]);
        good.histograms = vec![
            wire_histogram(1000, 3, &[1, 1]),
            wire_histogram(2000, 5, &[2, 1]),
        ];
        good.exemplars = vec![proto::remote_write::Exemplar {
            labels: vec![WireLabel {
                name: "trace_id",
                value: "abc",
            }],
            value: 0.7,
            timestamp: 1500,
        }];
        let mut bad = ts(&[("__name__", "broken")], &[(1000, 1.0)]);
        // Buckets add up to 3, the count says 4.
        bad.histograms = vec![wire_histogram(1000, 4, &[1, 1])];
        let req = WriteRequest {
            timeseries: vec![good, bad],
            metadata: vec![],
        };
        let out = write(&db, &req, HeadLimits::default());
        assert_eq!(out.status(), 400, "{}", out.message());
        assert_eq!(
            (
                out.accepted_samples,
                out.accepted_histograms,
                out.accepted_exemplars
            ),
            (1, 2, 1)
        );
        assert!(
            out.message().contains("2 of 3 native histograms")
                && out.message().contains(
                    r#"series {__name__="broken"}: native histogram at 1000: 3 observations found in buckets, but the count field is 4"#
                ),
            "{}",
            out.message()
        );
        let chunks = db.head().all_series_sorted()[1].chunks(i64::MIN, i64::MAX);
        assert_eq!(chunks[0].encoding, tsdb::chunkenc::ENCODING_HISTOGRAM);
        assert_eq!(db.head().exemplars().select(0, 5000, &[]).len(), 1);
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
