//! What the behaviour suite needs of a running relay, whatever its backend: one trait, one
//! implementation per backend (`memory_relay`, `sqlite_relay`, `aws_relay`), so
//! [`crate::deployment::Deployment`] dispatches nowhere but where it starts one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scim_relay_core::breaker::CredentialBreaker;
use scim_relay_core::config::Settings;
use scim_relay_core::ingress::IngressRequest;
use scim_relay_core::queue::Queue;
use scim_relay_core::state::SweepStore;
use scim_relay_core::sweeper::SweepReport;
use scim_relay_server::console::Console;
use serde_json::Value;

use crate::target::Target;

/// An answer of the ingress.
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[async_trait]
pub trait RelayUnderTest: Send + Sync {
    /// Stops and starts it again on the same queue and state, with `settings` (standalone: a
    /// new process on the same file; AWS: new containers).
    async fn restart(&mut self, settings: &Settings);

    /// The state store, as an operator's command reads it (not as any function).
    fn store(&self) -> Arc<dyn SweepStore>;

    /// The target-credential breaker the workers share.
    fn breaker(&self) -> Arc<dyn CredentialBreaker>;

    /// The work queue, as an operator's command writes to it.
    fn work_queue(&self) -> Arc<dyn Queue>;

    /// The operator's console on this deployment.
    fn console(&self, settings: &Settings, target: &Target) -> Result<Console, String>;

    /// While set, the writes that record a target account fail.
    async fn fail_account_commits(&self, failing: bool);

    /// One HTTP request to the ingress, as the IdP sends it.
    async fn request(&self, req: IngressRequest) -> Answer;

    /// Works the queue until it is empty or `timeout` passes; whether it emptied.
    async fn drain(&self, timeout: Duration) -> bool;

    /// Messages waiting and dead letters.
    async fn depth(&self) -> (u64, u64);

    /// The reasons of every dead letter so far.
    async fn dead_letters(&self) -> Vec<String>;

    /// The body of every dead letter so far, as ingress queued it.
    async fn dead_letter_bodies(&self) -> Vec<String>;

    /// Every dead letter back on the queue; how many.
    async fn redrive(&self) -> usize;

    /// One scheduled run of the sweeper.
    async fn sweep(&self) -> SweepReport;

    /// One run of the sweeper that must end by `deadline` (on AWS: the invocation's).
    async fn sweep_until(&self, deadline: std::time::Instant) -> SweepReport;

    /// The standalone server's `/healthz`; `None` on the backends that have none.
    async fn health(&self) -> Option<Value> {
        None
    }

    /// Stops it; on AWS, checks each function's calls against its policy.
    async fn finish(&mut self);

    /// The AWS backend's own controls.
    #[cfg(feature = "servers")]
    fn as_aws(&self) -> Option<&crate::aws_relay::AwsRelay> {
        None
    }
}
