//! What a warm Lambda container built from resolved secrets, rebuilt from the environment
//! after a while, so a rotated secret (a new target key, a new queue key) reaches containers
//! that started before the rotation, without a redeploy.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a container keeps the secrets it resolved before reading them again.
pub const SECRETS_TTL: Duration = Duration::from_secs(5 * 60);

/// The least time between two reads forced by a refusal (a secret that may have just been
/// rotated). Anyone can send a wrong secret or a message naming an unknown key: this bounds
/// what they can make a container spend on Secrets Manager (one read per 5 s at most).
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

pub struct Refreshing<T> {
    slot: tokio::sync::Mutex<(Arc<T>, Instant)>,
    ttl: Duration,
    forced_interval: Duration,
    stale: AtomicBool,
}

impl<T> Refreshing<T> {
    pub fn new(first: T, ttl: Duration) -> Self {
        Self {
            slot: tokio::sync::Mutex::new((Arc::new(first), Instant::now())),
            ttl,
            forced_interval: FORCED_REFRESH_INTERVAL,
            stale: AtomicBool::new(false),
        }
    }

    /// Sets the least time between two forced reads ([`FORCED_REFRESH_INTERVAL`] by default).
    pub fn with_forced_interval(mut self, interval: Duration) -> Self {
        self.forced_interval = interval;
        self
    }

    /// Rebuilds the parts now, because something just refused what they hold (a secret that
    /// may have been rotated), unless they were built less than the forced interval ago.
    /// Returns the fresh parts, or `None` when nothing was rebuilt (too soon, or the rebuild
    /// failed: the parts in hand stay).
    pub async fn refresh_now<F, Fut, E>(&self, build: F) -> Option<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut slot = self.slot.lock().await;
        if slot.1.elapsed() < self.forced_interval {
            return None;
        }
        match build().await {
            Ok(fresh) => {
                *slot = (Arc::new(fresh), Instant::now());
                Some(slot.0.clone())
            }
            Err(e) => {
                tracing::warn!("secrets not re-read, keeping the ones in hand: {e}");
                slot.1 = Instant::now();
                None
            }
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

    #[tokio::test]
    async fn a_forced_read_happens_at_most_once_an_interval() {
        let build = |v: i32| move || async move { Ok::<_, String>(v) };
        let parts = Refreshing::new(1, Duration::from_secs(3600));
        assert_eq!(
            parts.refresh_now(build(2)).await,
            None,
            "just built: a refusal now cannot make it read again"
        );
        assert_eq!(*parts.current(build(2)).await, 1);

        let parts = Refreshing::new(1, Duration::from_secs(3600))
            .with_forced_interval(Duration::from_millis(30));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(parts.refresh_now(build(2)).await.as_deref(), Some(&2));
        assert_eq!(
            parts.refresh_now(build(3)).await,
            None,
            "a second refusal right after reads nothing"
        );
        assert_eq!(*parts.current(build(3)).await, 2);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let failing = || async { Err::<i32, _>("secret unreadable") };
        assert_eq!(parts.refresh_now(failing).await, None);
        assert_eq!(
            *parts.current(build(4)).await,
            2,
            "a failed read keeps them"
        );
    }
}
