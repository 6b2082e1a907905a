//! A target that asked to be left alone (a 429, or a 503 with `Retry-After`) is not called
//! again by any worker of this process until then: every call inside the wait would only be
//! refused, and each refusal still counts against the target's budget. The message goes back
//! to the queue for the rest of the wait, as it would after a refusal of its own.
//! [`GatedTarget`] puts the gate in front of any target, so every deployment (and every test
//! backend) has it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::{PatchOp, ScimError, ScimFailure, ScimRecord, ScimTarget, UserPage};

/// The longest the gate stays closed on one answer, whatever the answer asked: a target that
/// sends an epoch in `X-RateLimit-Reset` (read as seconds) must not stop every worker for an
/// hour. The message that got the answer still waits what it was told.
const LONGEST_CLOSE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct RateGate {
    closed_until: Mutex<Option<Instant>>,
}

impl RateGate {
    /// How long the target still asked to be left alone, if at all.
    pub fn closed_for(&self, now: Instant) -> Option<Duration> {
        let until = *self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|until| *until > now).map(|until| until - now)
    }

    /// The target asked to wait `wait` from `now`: closed until then (at most
    /// [`LONGEST_CLOSE`]), or later if an earlier answer said so.
    pub fn close(&self, now: Instant, wait: Duration) {
        let until = now + wait.min(LONGEST_CLOSE);
        let mut closed = self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        if closed.is_none_or(|c| c < until) {
            *closed = Some(until);
        }
    }
}

/// A target behind a [`RateGate`].
pub struct GatedTarget {
    inner: Arc<dyn ScimTarget>,
    gate: RateGate,
}

impl GatedTarget {
    pub fn new(inner: Arc<dyn ScimTarget>) -> Self {
        Self {
            inner,
            gate: RateGate::default(),
        }
    }

    /// The call, unless the target asked to wait; a wait it asks for shuts the gate.
    async fn pass<T>(
        &self,
        call: impl Future<Output = Result<T, ScimError>> + Send,
    ) -> Result<T, ScimError> {
        if let Some(wait) = self.gate.closed_for(Instant::now()) {
            return Err(ScimError {
                failure: ScimFailure::Retryable,
                status: None,
                detail: format!(
                    "the target asked to wait; not called for another {} ms",
                    wait.as_millis()
                ),
                retry_after: Some(wait),
            });
        }
        let result = call.await;
        if let Err(ScimError {
            retry_after: Some(wait),
            ..
        }) = &result
        {
            self.gate.close(Instant::now(), *wait);
        }
        result
    }
}

#[async_trait]
impl ScimTarget for GatedTarget {
    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        self.pass(self.inner.find_user(user_name)).await
    }
    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        self.pass(self.inner.create_user(resource)).await
    }
    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        self.pass(self.inner.patch_user(id, ops)).await
    }
    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        self.pass(self.inner.delete_user(id)).await
    }
    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        self.pass(self.inner.find_group(display_name)).await
    }
    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        self.pass(self.inner.create_group(display_name)).await
    }
    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        self.pass(self.inner.rename_group(group_id, display_name))
            .await
    }
    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        self.pass(self.inner.delete_group(group_id)).await
    }
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        self.pass(self.inner.add_member(group_id, user_id)).await
    }
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        self.pass(self.inner.remove_member(group_id, user_id)).await
    }
    async fn probe(&self) -> Result<(), ScimError> {
        self.pass(self.inner.probe()).await
    }
    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        self.pass(self.inner.list_users(start_index, count)).await
    }
    fn asked_to_wait(&self) -> Option<Duration> {
        self.gate.closed_for(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_for_what_the_target_asked_and_opens_after() {
        let gate = RateGate::default();
        let now = Instant::now();
        assert_eq!(gate.closed_for(now), None);
        gate.close(now, Duration::from_secs(5));
        assert_eq!(gate.closed_for(now), Some(Duration::from_secs(5)));
        assert_eq!(
            gate.closed_for(now + Duration::from_secs(2)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(gate.closed_for(now + Duration::from_secs(5)), None);
        // A shorter wait asked later never reopens it early.
        gate.close(now, Duration::from_secs(10));
        gate.close(now + Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(gate.closed_for(now), Some(Duration::from_secs(10)));
    }

    #[test]
    fn an_hour_asked_closes_it_for_a_minute_at_most() {
        let gate = RateGate::default();
        let now = Instant::now();
        gate.close(now, Duration::from_secs(3600));
        assert_eq!(gate.closed_for(now), Some(LONGEST_CLOSE));
    }
}
