//! CloudWatch Embedded Metric Format: a JSON log line that Lambda's log pipeline turns into
//! metrics (namespace `scim-relay`), so the alarms in the template need no API call from the
//! functions.

pub const NAMESPACE: &str = "scim-relay";

/// One EMF line carrying `metrics` (name, count) at `timestamp_millis`.
pub fn emf_line(metrics: &[(&str, u64)], timestamp_millis: i64) -> String {
    let definitions: Vec<_> = metrics
        .iter()
        .map(|(name, _)| serde_json::json!({"Name": name, "Unit": "Count"}))
        .collect();
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
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_declared_and_valued() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(&[("A", 1), ("B", 3)], 42)).unwrap();
        let declared = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        assert_eq!(declared["Metrics"][1]["Name"], "B");
        assert_eq!((line["A"].as_u64(), line["B"].as_u64()), (Some(1), Some(3)));
        assert_eq!(line["_aws"]["Timestamp"], 42);
    }
}
