//! The target-credential breaker: one per deployment, shared by every worker and the sweeper.
//! A 401/403 from the target (to a worker's call or to the sweeper's probe) opens it; while it
//! is open no worker consumes, so an outage of the credential is waited out on the queue
//! instead of burning every message's retries. It closes by itself when its time runs out: the
//! next message is the probe.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::state::StoreError;

#[async_trait]
pub trait CredentialBreaker: Send + Sync {
    /// When the breaker closes again, if it is open at `now`.
    async fn open_until(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Opens the breaker until `until` (the last writer wins: every writer saw the same 401).
    async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError>;
}

/// A breaker read at most once per `ttl` by this process (a Lambda container): every batch
/// asks, and on DynamoDB each ask was a request on the hot path. What this process opens or
/// closes it sees at once; another container's change reaches it within `ttl`, which the
/// breaker's own hold (minutes) dwarfs. A failed read is not cached.
pub struct CachedBreaker {
    inner: std::sync::Arc<dyn CredentialBreaker>,
    ttl: std::time::Duration,
    /// When the breaker was last read, and what it said: open until when, if at all.
    last: std::sync::Mutex<Option<(std::time::Instant, Option<DateTime<Utc>>)>>,
}

impl CachedBreaker {
    pub fn new(inner: std::sync::Arc<dyn CredentialBreaker>, ttl: std::time::Duration) -> Self {
        Self {
            inner,
            ttl,
            last: std::sync::Mutex::new(None),
        }
    }

    fn remember(&self, until: Option<DateTime<Utc>>) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((std::time::Instant::now(), until));
        }
    }
}

#[async_trait]
impl CredentialBreaker for CachedBreaker {
    async fn open_until(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let cached = self
            .last
            .lock()
            .ok()
            .and_then(|last| *last)
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl);
        if let Some((_, until)) = cached {
            return Ok(until.filter(|u| *u > now));
        }
        let until = self.inner.open_until(now).await?;
        self.remember(until);
        Ok(until)
    }

    async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.open(until).await?;
        self.remember(Some(until));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A breaker that counts its reads.
    #[derive(Default)]
    struct Counted {
        until: Mutex<Option<DateTime<Utc>>>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl CredentialBreaker for Counted {
        async fn open_until(
            &self,
            now: DateTime<Utc>,
        ) -> Result<Option<DateTime<Utc>>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .until
                .lock()
                .map_err(|_| StoreError::Backend("poisoned".into()))?
                .filter(|u| *u > now))
        }

        async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
            *self
                .until
                .lock()
                .map_err(|_| StoreError::Backend("poisoned".into()))? = Some(until);
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_read_serves_every_batch_until_it_is_stale() {
        let shared = Arc::new(Counted::default());
        let cached = CachedBreaker::new(shared.clone(), Duration::from_millis(200));
        let now = Utc::now();
        for _ in 0..5 {
            assert_eq!(cached.open_until(now).await.ok().flatten(), None);
        }
        assert_eq!(shared.reads.load(Ordering::SeqCst), 1, "read once");

        // Another container opens it: seen once the cached answer is stale.
        let until = now + chrono::Duration::minutes(5);
        shared.open(until).await.ok();
        assert_eq!(
            cached.open_until(now).await.ok().flatten(),
            None,
            "still cached"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cached.open_until(now).await.ok().flatten(), Some(until));
        assert_eq!(shared.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn what_this_process_opens_or_closes_it_sees_at_once() {
        let shared = Arc::new(Counted::default());
        let cached = CachedBreaker::new(shared.clone(), Duration::from_secs(3600));
        let now = Utc::now();
        assert_eq!(cached.open_until(now).await.ok().flatten(), None);
        let until = now + chrono::Duration::minutes(5);
        cached.open(until).await.ok();
        assert_eq!(cached.open_until(now).await.ok().flatten(), Some(until));
        // Closing is opening until now (a probe found the key accepted).
        cached.open(now).await.ok();
        assert_eq!(cached.open_until(now).await.ok().flatten(), None);
        assert_eq!(shared.reads.load(Ordering::SeqCst), 1);
        // An open breaker's time running out needs no read either.
        cached.open(until).await.ok();
        assert_eq!(
            cached
                .open_until(until + chrono::Duration::seconds(1))
                .await
                .ok()
                .flatten(),
            None
        );
        assert_eq!(shared.reads.load(Ordering::SeqCst), 1);
    }
}
