//! CloudWatch Embedded Metric Format: a JSON log line that Lambda's log pipeline turns into
//! metrics (namespace `scim-relay`), so the alarms in the template need no API call from the
//! functions.

pub const NAMESPACE: &str = "scim-relay";

use std::sync::atomic::{AtomicU64, Ordering};

/// The EMF metric of apply latency: milliseconds from the IdP's change to the target changed.
pub const APPLY_LATENCY: &str = "ApplyLatency";
/// EMF takes at most this many values of one metric in one line.
const EMF_MAX_VALUES: usize = 100;

/// One EMF line carrying `metrics` (name, count) and, when there are any, the apply latencies
/// of the batch (each a sample of [`APPLY_LATENCY`], so CloudWatch gives percentiles) at
/// `timestamp_millis`.
pub fn emf_line(metrics: &[(&str, u64)], latencies_ms: &[u64], timestamp_millis: i64) -> String {
    let mut definitions: Vec<_> = metrics
        .iter()
        .map(|(name, _)| serde_json::json!({"Name": name, "Unit": "Count"}))
        .collect();
    if !latencies_ms.is_empty() {
        definitions.push(serde_json::json!({"Name": APPLY_LATENCY, "Unit": "Milliseconds"}));
    }
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": definitions
            }]
        }
    });
    for (name, value) in metrics {
        line[*name] = serde_json::json!(value);
    }
    if !latencies_ms.is_empty() {
        let samples = &latencies_ms[..latencies_ms.len().min(EMF_MAX_VALUES)];
        line[APPLY_LATENCY] = serde_json::json!(samples);
    }
    line.to_string()
}

/// Upper bounds (seconds) of the apply-latency histogram's buckets: "in seconds" is the
/// promise, minutes the worry.
pub const LATENCY_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A Prometheus-style histogram of apply latencies, shared by the standalone workers.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket of [`LATENCY_BUCKETS`] (not cumulative); the last counts what is beyond.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ms: AtomicU64,
    count: AtomicU64,
}

/// A histogram read once: cumulative bucket counts (the last is `+Inf`), sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    pub cumulative: Vec<(Option<f64>, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, latency_ms: u64) {
        let seconds = latency_ms as f64 / 1000.0;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(latency_ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                running += b.load(Ordering::Relaxed);
                (LATENCY_BUCKETS.get(i).copied(), running)
            })
            .collect();
        LatencySnapshot {
            cumulative,
            sum_seconds: self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_declared_and_valued() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(&[("A", 1), ("B", 3)], &[], 42)).unwrap();
        let declared = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        assert_eq!(declared["Metrics"][1]["Name"], "B");
        assert_eq!(declared["Metrics"].as_array().map(Vec::len), Some(2));
        assert_eq!((line["A"].as_u64(), line["B"].as_u64()), (Some(1), Some(3)));
        assert_eq!(line["_aws"]["Timestamp"], 42);
        assert!(line.get(APPLY_LATENCY).is_none(), "no samples, no metric");
    }

    #[test]
    fn apply_latencies_are_samples_in_milliseconds() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(&[("A", 1)], &[120, 4500], 42)).unwrap();
        let declared = &line["_aws"]["CloudWatchMetrics"][0]["Metrics"][1];
        assert_eq!(declared["Name"], APPLY_LATENCY);
        assert_eq!(declared["Unit"], "Milliseconds");
        assert_eq!(line[APPLY_LATENCY], serde_json::json!([120, 4500]));
    }

    #[test]
    fn the_histogram_counts_cumulatively_up_to_infinity() {
        let h = LatencyHistogram::default();
        for ms in [50, 100, 700, 400_000] {
            h.observe(ms);
        }
        let snap = h.snapshot();
        assert_eq!(snap.count, 4);
        assert_eq!(
            snap.cumulative[0],
            (Some(0.1), 2),
            "100 ms is in the 0.1 s bucket"
        );
        assert_eq!(snap.cumulative[3], (Some(1.0), 3));
        assert_eq!(snap.cumulative.last(), Some(&(None, 4)));
        assert!((snap.sum_seconds - 400.85).abs() < 1e-9);
    }
}
