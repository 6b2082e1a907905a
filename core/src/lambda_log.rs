//! The Lambdas' log. As `lambda_runtime`'s default subscriber (level from
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else info; no timestamp, CloudWatch stamps each
//! line), with two differences an operator's queries depend on: under the JSON log format
//! (`LoggingConfig: LogFormat: JSON`) each event's fields sit at the top level of its object —
//! the README's Logs Insights queries (`filter outcome = "dead-lettered"`) read `outcome`, not
//! `fields.outcome` — and text never carries terminal colour codes (CloudWatch shows them raw).

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The subscriber: `json` under Lambda's JSON log format, at `level` (a tracing level name).
pub fn subscriber<W>(
    json: bool,
    level: Option<&str>,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_max_level(level)
        .with_writer(writer);
    if json {
        Box::new(
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        )
    } else {
        Box::new(fmt.finish())
    }
}

/// Installs [`subscriber`] for this process from Lambda's environment, on stdout.
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    // Nothing else sets one in a Lambda's process.
    let _ = tracing::subscriber::set_global_default(subscriber(
        json,
        level.as_deref(),
        std::io::stdout,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    /// Every field the README's Logs Insights queries (`` `filter <field> …` ``) filter on is
    /// a top-level key of the line the worker writes.
    #[test]
    fn the_readmes_log_queries_find_their_fields_at_the_top_level() {
        let out = Captured::default();
        tracing::subscriber::with_default(subscriber(true, Some("info"), out.clone()), || {
            tracing::info!(
                source = "okta",
                user = "00u1",
                outcome = "dead-lettered",
                latency_ms = 12u64,
                reason = "user 00u1 has no email address",
                "trigger finished"
            );
        });
        let line: serde_json::Value =
            serde_json::from_str(out.text().trim()).expect("one JSON object");
        let readme = include_str!("../../README.md");
        let queried: Vec<&str> = readme
            .split("`filter ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|field| field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        assert!(queried.contains(&"outcome"), "{queried:?}");
        for field in queried {
            assert!(
                line.get(field).is_some(),
                "`{field}` not at the top level: {line}"
            );
        }
        assert_eq!(line["message"], "trigger finished");
        assert!(line.get("fields").is_none(), "{line}");
    }

    #[test]
    fn text_lines_carry_no_colour_codes_and_the_level_holds() {
        let out = Captured::default();
        tracing::subscriber::with_default(subscriber(false, Some("warn"), out.clone()), || {
            tracing::info!("not at warn");
            tracing::warn!(user = "00u1", "a warning");
        });
        let text = out.text();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(
            text.contains("a warning") && !text.contains("not at warn"),
            "{text}"
        );
    }
}
