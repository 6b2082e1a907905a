//! What a warm Lambda container built from resolved secrets, rebuilt from the environment
//! after a while, so a rotated secret (a new target key, a new queue key) reaches containers
//! that started before the rotation, without a redeploy.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a container keeps the secrets it resolved before reading them again.
pub const SECRETS_TTL: Duration = Duration::from_secs(5 * 60);

pub struct Refreshing<T> {
    slot: tokio::sync::Mutex<(Arc<T>, Instant)>,
    ttl: Duration,
    stale: AtomicBool,
}

impl<T> Refreshing<T> {
    pub fn new(first: T, ttl: Duration) -> Self {
        Self {
            slot: tokio::sync::Mutex::new((Arc::new(first), Instant::now())),
            ttl,
            stale: AtomicBool::new(false),
        }
    }

    /// Rebuild on the next use (a credential was just refused: perhaps it was rotated).
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// The current parts, rebuilt with `build` first when they are older than the TTL or
    /// marked stale. A failed rebuild keeps the parts in hand (and waits a TTL before trying
    /// again): a secret read failing must not stop a working container.
    pub async fn current<F, Fut, E>(&self, build: F) -> Arc<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut slot = self.slot.lock().await;
        let due = self.stale.swap(false, Ordering::Relaxed) || slot.1.elapsed() >= self.ttl;
        if due {
            match build().await {
                Ok(fresh) => *slot = (Arc::new(fresh), Instant::now()),
                Err(e) => {
                    tracing::warn!("secrets not re-read, keeping the ones in hand: {e}");
                    slot.1 = Instant::now();
                }
            }
        }
        slot.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rebuilt_after_the_ttl_or_when_stale_and_kept_when_the_rebuild_fails() {
        let parts = Refreshing::new(1, Duration::from_secs(3600));
        let build = |v: i32| move || async move { Ok::<_, String>(v) };
        assert_eq!(*parts.current(build(2)).await, 1, "fresh: kept");
        parts.mark_stale();
        assert_eq!(*parts.current(build(2)).await, 2, "stale: rebuilt");
        assert_eq!(*parts.current(build(3)).await, 2, "once");
        parts.mark_stale();
        let failing = || async { Err::<i32, _>("secret unreadable") };
        assert_eq!(
            *parts.current(failing).await,
            2,
            "a failed rebuild keeps them"
        );

        let short = Refreshing::new(1, Duration::ZERO);
        assert_eq!(*short.current(build(5)).await, 5, "past the TTL: rebuilt");
    }
}
