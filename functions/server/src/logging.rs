//! The standalone relay's log: human-readable text by default, or one JSON object per line
//! (`--log-format json`, `SCIM_RELAY_LOG_FORMAT=json`) for a log shipper, as the Lambdas write
//! under their JSON log format. On stderr, so command output can be piped.

use tracing_subscriber::fmt::MakeWriter;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// `SCIM_RELAY_LOG_FORMAT`, when the flag is not given.
    pub fn from_env() -> Self {
        match std::env::var("SCIM_RELAY_LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Whether text logs on stderr may carry colour: only on a terminal, and never under
/// `NO_COLOR` (no-color.org). A file, a pipe or a log shipper gets plain text.
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The subscriber for `format`, writing to `writer`, filtered by `SCIM_RELAY_LOG` (default
/// `info`), with colour codes only when `colour` (see [`colour_on_stderr`]).
pub fn subscriber<W>(
    format: LogFormat,
    writer: W,
    colour: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCIM_RELAY_LOG")
        .unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour && format == LogFormat::Text)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(fmt.finish()),
        // Fields at the top level, as a log query expects them (`outcome`, `latency_ms`…).
        LogFormat::Json => Box::new(fmt.json().flatten_event(true).finish()),
    }
}

#[cfg(test)]
mod tests {
    /// Held by each test that reads log lines: tracing's per-callsite cache, rebuilt whenever
    /// a subscriber is made, can switch a callsite off for a test whose subscriber was made at
    /// the same moment on another thread.
    static LOG_CAPTURE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

    /// The finished-trigger line as a log query sees it: one JSON object, the history fields
    /// at the top level, the user by id and fingerprint only.
    #[tokio::test]
    async fn a_finished_trigger_is_one_json_line_with_its_history_fields() {
        let _capture = LOG_CAPTURE.lock().await;
        use scim_relay_core::envelope::Source;
        use scim_relay_core::history::{Finish, Trace};
        use scim_relay_core::state::UserKey;
        let out = Captured::default();
        let _guard =
            tracing::subscriber::set_default(subscriber(LogFormat::Json, out.clone(), false));
        let dir = std::env::temp_dir().join(format!("scim-relay-log-{}.db", std::process::id()));
        let db = scim_relay_core::sqlite::SqliteDb::open(dir.display().to_string())
            .expect("database opens");
        let mut settings = scim_relay_core::config::Settings::default();
        settings.target.profile = scim_relay_core::config::TargetProfile::DryRun;
        settings.queue.signing_key = scim_relay_core::secret::Secret::new("log-test-key");
        let outbound = scim_relay_core::wiring::outbound(&settings).expect("dry-run outbound");
        let db = std::sync::Arc::new(db);
        let engine = scim_relay_core::wiring::engine(
            &settings,
            &outbound,
            db.clone(),
            db.clone(),
            std::sync::Arc::new(scim_relay_core::clock::SystemClock),
            scim_relay_core::consumer::ConsumerPolicy::lambda(),
        )
        .expect("engine builds");
        let worker = engine.consumer.worker();
        let trace = Trace {
            key: Some(UserKey {
                source: Source::Okta,
                tenant: "acme.okta.com".into(),
                user_id: "00uJSON".into(),
            }),
            event_type: "user.account.update_profile".into(),
            event_id: "ev-json".into(),
            user_fingerprint: Some(scim_relay_core::pii::fingerprint("json.user@example.com")),
            plan: "update".into(),
            changed: vec!["title".into(), "name.familyName".into()],
            scim_calls: 1,
            since: Some(chrono::Utc::now() - chrono::Duration::seconds(2)),
            ..Trace::default()
        };
        worker.finished(&trace, Finish::Applied, None).await;
        let text = String::from_utf8_lossy(&out.0.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned();
        let line = text
            .lines()
            .find(|l| l.contains("trigger finished"))
            .unwrap_or_else(|| panic!("no finished line in {text}"));
        let json: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
        assert_eq!(json["message"], "trigger finished");
        assert_eq!(json["user"], "00uJSON");
        assert_eq!(json["outcome"], "applied");
        assert_eq!(json["plan"], "update");
        assert_eq!(json["changed"], "title,name.familyName");
        assert_eq!(json["event"], "ev-json");
        assert!(json["latency_ms"].as_i64() >= Some(2000), "{json}");
        assert!(json["user_name"]
            .as_str()
            .is_some_and(|f| f.starts_with("hmac:")));
        assert!(!line.contains("json.user"), "plaintext email in {line}");
        // And the same trigger is in the user's history.
        use scim_relay_core::state::StateStore;
        let key = trace.key.as_ref().expect("key");
        let history = db
            .history(key, chrono::Utc::now(), 10)
            .await
            .expect("history");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].changed, ["title", "name.familyName"]);
        let _ = std::fs::remove_file(dir);
    }

    /// Text written to a file or a pipe (no terminal) carries no colour codes.
    #[test]
    fn text_for_a_file_or_a_pipe_has_no_colour_codes() {
        let _capture = LOG_CAPTURE.blocking_lock();
        let out = Captured::default();
        tracing::subscriber::with_default(subscriber(LogFormat::Text, out.clone(), false), || {
            tracing::warn!(user = "00u1", outcome = "retried", "trigger finished");
        });
        let text =
            String::from_utf8_lossy(&out.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        assert!(text.contains("trigger finished"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let coloured = Captured::default();
        tracing::subscriber::with_default(
            subscriber(LogFormat::Text, coloured.clone(), true),
            || tracing::warn!("on a terminal"),
        );
        assert!(
            String::from_utf8_lossy(&coloured.0.lock().unwrap_or_else(|e| e.into_inner()))
                .contains('\u{1b}'),
            "a terminal gets colour"
        );
    }
}
