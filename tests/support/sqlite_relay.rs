//! The SQLite backend: the standalone server itself (HTTP ingress, SQLite queue and store,
//! claim loops, sweeper) on a fresh database file, reached over HTTP as an IdP reaches it.

use std::sync::Arc;
use std::time::Duration;

use scim_relay_core::clock::Clock;
use scim_relay_core::config::Settings;
use scim_relay_core::ingress::IngressRequest;
use scim_relay_core::sweeper::SweepReport;
use scim_relay_server::{RetryPolicy, RunningRelay};
use serde_json::Value;

use crate::relay::{Answer, RelayUnderTest};

pub struct SqliteRelay {
    relay: Option<RunningRelay>,
    db_path: std::path::PathBuf,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl SqliteRelay {
    /// The server on a fresh database file and a free port (written into `settings`).
    pub async fn start(settings: &mut Settings, clock: Arc<dyn Clock>, retry: RetryPolicy) -> Self {
        let db_path =
            std::env::temp_dir().join(format!("scim-relay-behaviour-{}.db", uuid::Uuid::new_v4()));
        settings.listen = "127.0.0.1:0".into();
        settings.database = db_path.display().to_string();
        let relay = scim_relay_server::start_with_clock(settings.clone(), retry, clock.clone())
            .await
            .expect("relay starts");
        Self {
            relay: Some(relay),
            db_path,
            http: reqwest::Client::new(),
            clock,
            retry,
        }
    }

    fn running(&self) -> &RunningRelay {
        self.relay.as_ref().expect("relay running")
    }

    fn database(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db_path).expect("open the relay's database")
    }
}

#[async_trait::async_trait]
impl RelayUnderTest for SqliteRelay {
    async fn restart(&mut self, settings: &Settings) {
        if let Some(old) = self.relay.take() {
            old.stop().await;
        }
        self.relay = Some(
            scim_relay_server::start_with_clock(settings.clone(), self.retry, self.clock.clone())
                .await
                .expect("relay restarts"),
        );
    }

    fn store(&self) -> Arc<dyn scim_relay_core::state::SweepStore> {
        Arc::new(self.running().db.clone())
    }

    fn breaker(&self) -> Arc<dyn scim_relay_core::breaker::CredentialBreaker> {
        Arc::new(self.running().db.clone())
    }

    fn work_queue(&self) -> Arc<dyn scim_relay_core::queue::Queue> {
        Arc::new(self.running().db.clone())
    }

    fn console(
        &self,
        settings: &Settings,
        _target: &crate::target::Target,
    ) -> Result<scim_relay_server::console::Console, String> {
        scim_relay_server::console::Console::sqlite(settings)
    }

    async fn fail_account_commits(&self, failing: bool) {
        let sql = if failing {
            "CREATE TRIGGER IF NOT EXISTS test_fail_account_insert BEFORE INSERT ON users \
             WHEN json_extract(NEW.doc, '$.scim_id') IS NOT NULL \
             BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END; \
             CREATE TRIGGER IF NOT EXISTS test_fail_account_update BEFORE UPDATE ON users \
             WHEN json_extract(NEW.doc, '$.scim_id') IS NOT NULL \
             BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END;"
        } else {
            "DROP TRIGGER IF EXISTS test_fail_account_insert; \
             DROP TRIGGER IF EXISTS test_fail_account_update;"
        };
        self.database().execute_batch(sql).expect("fault trigger");
    }

    async fn request(&self, req: IngressRequest) -> Answer {
        let mut url = format!("http://{}{}", self.running().addr, req.path);
        if let Some(q) = &req.query {
            url = format!("{url}?{q}");
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("method");
        let mut r = self.http.request(method, url).body(req.body);
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        let resp = r.send().await.expect("relay reachable");
        let status = resp.status().as_u16();
        let headers = crate::header_pairs(resp.headers());
        Answer {
            status,
            body: resp.text().await.unwrap_or_default(),
            headers,
        }
    }

    async fn drain(&self, timeout: Duration) -> bool {
        self.running().wait_idle(timeout).await
    }

    async fn depth(&self) -> (u64, u64) {
        self.running().db.depth().await.expect("depth")
    }

    async fn dead_letters(&self) -> Vec<String> {
        self.running()
            .db
            .dead_letter_reasons()
            .await
            .expect("dead letters")
    }

    async fn dead_letter_bodies(&self) -> Vec<String> {
        let db = self.database();
        let mut stmt = db
            .prepare("SELECT body FROM dead_letters ORDER BY id")
            .expect("dead letters");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("dead letters");
        rows.collect::<Result<_, _>>().expect("dead letters")
    }

    async fn redrive(&self) -> usize {
        self.running()
            .db
            .redrive_dead_letters()
            .await
            .expect("redrive")
    }

    async fn sweep(&self) -> SweepReport {
        self.running().sweep().await
    }

    async fn sweep_until(&self, deadline: std::time::Instant) -> SweepReport {
        self.running().sweep_until(Some(deadline)).await
    }

    async fn health(&self) -> Option<Value> {
        let resp = self
            .http
            .get(format!("http://{}/healthz", self.running().addr))
            .send()
            .await
            .expect("relay reachable");
        Some(resp.json().await.expect("health is JSON"))
    }

    async fn finish(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.stop().await;
        }
        let _ = std::fs::remove_file(&self.db_path);
    }
}
