//! `GET /metrics`: the standalone relay's figures in the Prometheus text format, the same ones
//! the Lambdas emit as CloudWatch metrics: triggers by outcome, the queue, the credential, the
//! deprovisioning breaker.

use scim_relay_core::metrics::LatencySnapshot;

use crate::worker_loop::{CredentialHealth, WorkerCounts};

/// What one scrape reports.
pub struct Figures {
    pub counts: WorkerCounts,
    pub queued: u64,
    pub dead_letters: u64,
    pub oldest_queued_seconds: u64,
    pub credential: CredentialHealth,
    pub held_pending: u64,
    pub apply_latency: LatencySnapshot,
}

pub fn render(f: &Figures) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let c = &f.counts;
    metric(
        "scim_relay_triggers_total",
        "counter",
        "Triggers the workers finished since the start, by outcome.",
        &[
            ("{outcome=\"applied\"}", c.applied),
            ("{outcome=\"duplicate\"}", c.duplicates),
            ("{outcome=\"held\"}", c.held),
            ("{outcome=\"dead_lettered\"}", c.dead_lettered),
        ],
    );
    metric(
        "scim_relay_retries_total",
        "counter",
        "Attempts that failed and were put back on the queue for later.",
        &[("", c.retried)],
    );
    metric(
        "scim_relay_queue_messages",
        "gauge",
        "Triggers waiting on the queue.",
        &[("", f.queued)],
    );
    metric(
        "scim_relay_queue_oldest_seconds",
        "gauge",
        "Age of the oldest trigger waiting on the queue.",
        &[("", f.oldest_queued_seconds)],
    );
    metric(
        "scim_relay_dead_letters",
        "gauge",
        "Triggers parked in the dead-letter table (see their reason; scim-relay redrive).",
        &[("", f.dead_letters)],
    );
    metric(
        "scim_relay_deprovisions_held",
        "gauge",
        "Deactivations the deprovisioning breaker holds for an operator (scim-relay held).",
        &[("", f.held_pending)],
    );
    let credential = match f.credential {
        CredentialHealth::Unknown => None,
        CredentialHealth::Accepted => Some(1),
        CredentialHealth::Rejected => Some(0),
    };
    if let Some(accepted) = credential {
        metric(
            "scim_relay_target_credential_accepted",
            "gauge",
            "1 while the target accepts the relay's credential, 0 once it refused it.",
            &[("", accepted)],
        );
    }
    let name = "scim_relay_apply_latency_seconds";
    out.push_str(&format!(
        "# HELP {name} From the IdP's change (its published time) to the target changed, per applied trigger.\n# TYPE {name} histogram\n"
    ));
    for (bound, count) in &f.apply_latency.cumulative {
        let le = bound.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {count}\n"));
    }
    out.push_str(&format!(
        "{name}_sum {}\n{name}_count {}\n",
        f.apply_latency.sum_seconds, f.apply_latency.count
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_is_a_typed_sample_and_an_unknown_credential_is_left_out() {
        let figures = Figures {
            counts: WorkerCounts {
                applied: 3,
                duplicates: 1,
                held: 2,
                dead_lettered: 0,
                retried: 4,
            },
            queued: 5,
            dead_letters: 6,
            oldest_queued_seconds: 7,
            credential: CredentialHealth::Unknown,
            held_pending: 2,
            apply_latency: {
                let h = scim_relay_core::metrics::LatencyHistogram::default();
                h.observe(300);
                h.observe(1500);
                h.snapshot()
            },
        };
        let text = render(&figures);
        assert!(text.contains("scim_relay_triggers_total{outcome=\"applied\"} 3\n"));
        assert!(text.contains("scim_relay_retries_total 4\n"));
        assert!(
            text.contains("# TYPE scim_relay_queue_messages gauge\nscim_relay_queue_messages 5\n")
        );
        assert!(text.contains("scim_relay_deprovisions_held 2\n"));
        assert!(!text.contains("target_credential"));
        assert!(text.contains("# TYPE scim_relay_apply_latency_seconds histogram\n"));
        assert!(text.contains("scim_relay_apply_latency_seconds_bucket{le=\"0.25\"} 0\n"));
        assert!(text.contains("scim_relay_apply_latency_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("scim_relay_apply_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains(
            "scim_relay_apply_latency_seconds_sum 1.8\nscim_relay_apply_latency_seconds_count 2\n"
        ));
        let text = render(&Figures {
            credential: CredentialHealth::Rejected,
            ..figures
        });
        assert!(text.contains("scim_relay_target_credential_accepted 0\n"));
    }
}
