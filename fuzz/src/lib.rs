//! What the fuzz targets share: an ingress wired to a queue that records what reaches it, and
//! one runtime to drive it.

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use scim_relay_core::clock::SystemClock;
use scim_relay_core::config::Settings;
use scim_relay_core::envelope::EnvelopeSigner;
use scim_relay_core::ingress::{Ingress, IngressRequest, IngressResponse};
use scim_relay_core::queue::{Queue, QueueError, QueueMessage};
use scim_relay_core::secret::Secret;

pub const OKTA_SECRET: &str = "fuzz-okta-shared-secret";
pub const CLIENT_STATE: &str = "fuzz-graph-client-state";
pub const SIGNING_KEY: &str = "fuzz-queue-signing-key";

/// Everything enqueued, for the targets to inspect.
#[derive(Default)]
pub struct RecordingQueue(pub Mutex<Vec<QueueMessage>>);

#[async_trait]
impl Queue for RecordingQueue {
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        self.0
            .lock()
            .map_err(|_| QueueError("poisoned".into()))?
            .extend_from_slice(messages);
        Ok(())
    }
}

pub fn signer() -> EnvelopeSigner {
    EnvelopeSigner::new(Secret::new(SIGNING_KEY))
}

/// Sends one request through a fresh ingress; returns the answer and what was enqueued.
pub fn handle(req: IngressRequest) -> (IngressResponse, Vec<QueueMessage>) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    let mut settings = Settings::default();
    settings.queue.signing_key = Secret::new(SIGNING_KEY);
    settings.okta.shared_secret = Secret::new(OKTA_SECRET);
    settings.entra.client_state = Secret::new(CLIENT_STATE);
    let queue = Arc::new(RecordingQueue::default());
    let ingress = Ingress::from_settings(&settings, queue.clone(), Arc::new(SystemClock));
    let response = runtime.block_on(ingress.handle(req));
    let enqueued = queue.0.lock().map(|q| q.clone()).unwrap_or_default();
    (response, enqueued)
}

pub fn request(
    method: &str,
    path: &str,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> IngressRequest {
    IngressRequest {
        method: method.into(),
        path: path.into(),
        query,
        headers,
        body,
    }
}
