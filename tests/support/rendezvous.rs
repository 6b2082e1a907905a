//! A SCIM target that makes a race happen every time: the first `parties` look-ups by userName
//! each wait for the others before they answer, so every racing worker has found the account
//! before any of them goes on; and the first user writes each wait (a second at most) for the
//! other racers to reach theirs, so a worker that checks and then acts cannot finish before
//! the others have checked. Everything else passes straight through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use scim_relay_core::scim::{PatchOp, ScimError, ScimRecord, ScimTarget, UserPage};
use serde_json::Value;
use tokio::sync::Barrier;

pub struct Rendezvous {
    inner: Arc<dyn ScimTarget>,
    parties: usize,
    arrived: AtomicUsize,
    barrier: Barrier,
    writing: AtomicUsize,
    writes: Barrier,
}

/// How long a write waits for the other racers (a racer refused before its write never comes).
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Rendezvous {
    pub fn new(inner: Arc<dyn ScimTarget>, parties: usize) -> Self {
        Self {
            inner,
            parties,
            arrived: AtomicUsize::new(0),
            barrier: Barrier::new(parties),
            writing: AtomicUsize::new(0),
            writes: Barrier::new(parties),
        }
    }
}

#[async_trait]
impl ScimTarget for Rendezvous {
    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        let found = self.inner.find_user(user_name).await;
        if self.arrived.fetch_add(1, Ordering::SeqCst) < self.parties {
            self.barrier.wait().await;
        }
        found
    }
    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        self.inner.create_user(resource).await
    }
    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        if self.writing.fetch_add(1, Ordering::SeqCst) < self.parties {
            let _ = tokio::time::timeout(WRITE_WAIT, self.writes.wait()).await;
        }
        self.inner.patch_user(id, ops).await
    }
    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        self.inner.delete_user(id).await
    }
    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        self.inner.find_group(display_name).await
    }
    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        self.inner.create_group(display_name).await
    }
    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        self.inner.delete_group(group_id).await
    }
    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        self.inner.rename_group(group_id, display_name).await
    }
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        self.inner.add_member(group_id, user_id).await
    }
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        self.inner.remove_member(group_id, user_id).await
    }
    async fn probe(&self) -> Result<(), ScimError> {
        self.inner.probe().await
    }
    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        self.inner.list_users(start_index, count).await
    }
}
