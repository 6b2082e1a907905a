//! IdP rate limits as a budget. Okta's limits are org-wide and shared with sign-in: every
//! answer says how much of the current window is left (`X-Rate-Limit-Limit`, `-Remaining`,
//! `-Reset`), and the relay keeps to its share of it (`okta.rate_limit_percent`), waiting for
//! the window to reset rather than starving SSO. Because the counter is Okta's own, every
//! worker of a deployment reads the same one: no coordination needed. Graph says only
//! `Retry-After`, when it throttles. Either way a wait is a wait, never a failure: short ones
//! are slept in place, longer ones hand the trigger back with that delay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::DirectoryError;

/// Waits at most this long in place before a read from the worker; longer, the trigger goes
/// back to the queue with the wait.
pub const WORKER_PATIENCE: Duration = Duration::from_secs(2);
/// The sweeper's passes wait this long in place before giving up the pass for this run.
pub const SWEEPER_PATIENCE: Duration = Duration::from_secs(60);
/// A throttled answer without a usable wait is tried again after this.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// No wait is longer than this (a clock far off, a header gone wrong).
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// One window of one of Okta's rate-limit buckets, as its last answer described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    limit: u64,
    remaining: u64,
    reset: DateTime<Utc>,
}

/// The relay's share of each rate-limit bucket it has seen.
#[derive(Debug)]
pub struct RateBudget {
    /// Per cent of each bucket's limit the relay may use (1–100).
    share: u64,
    windows: Mutex<HashMap<String, Window>>,
}

impl RateBudget {
    pub fn new(share_percent: u64) -> Self {
        Self {
            share: share_percent.clamp(1, 100),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Notes what an answer says of its bucket's window.
    pub fn observe(&self, bucket: &str, headers: &reqwest::header::HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let (Some(limit), Some(remaining), Some(reset)) = (
            number("x-rate-limit-limit"),
            number("x-rate-limit-remaining"),
            number("x-rate-limit-reset"),
        ) else {
            return;
        };
        let Some(reset) = DateTime::from_timestamp(reset, 0) else {
            return;
        };
        let window = Window {
            limit: limit.max(0) as u64,
            remaining: remaining.max(0) as u64,
            reset,
        };
        if let Ok(mut windows) = self.windows.lock() {
            windows.insert(bucket.to_string(), window);
        }
    }

    /// How long to wait before the next call to `bucket` to keep within the share: none while
    /// more than the others' part of the window is left.
    pub fn wait_before(&self, bucket: &str, now: DateTime<Utc>) -> Option<Duration> {
        let windows = self.windows.lock().ok()?;
        let window = windows.get(bucket)?;
        // What others (sign-in, other apps) are left when the relay has used its share.
        let reserved = window.limit.saturating_mul(100 - self.share).div_ceil(100);
        if window.remaining > reserved || window.reset <= now {
            return None;
        }
        Some(until(window.reset, now))
    }
}

/// From now to `at`, at least a second (Okta's reset is in whole seconds), at most [`MAX_WAIT`].
fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_secs(1))
        .min(MAX_WAIT)
}

/// How long a 429 (or 503) asks the relay to wait: Graph's `Retry-After` (seconds), Okta's
/// `X-Rate-Limit-Reset` (epoch seconds), or a default.
pub fn throttle_wait(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Duration {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(seconds) = text("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Duration::from_secs(seconds).clamp(Duration::from_secs(1), MAX_WAIT);
    }
    if let Some(reset) = text("x-rate-limit-reset")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0))
    {
        return until(reset, now);
    }
    DEFAULT_WAIT
}

/// The error for a wait longer than the caller's patience.
pub fn throttled(idp: &str, what: &str, wait: Duration) -> DirectoryError {
    DirectoryError::Throttled {
        reason: format!("{idp} rate limit: {what}; waiting {} s", wait.as_secs()),
        wait,
    }
}

/// The bucket an Okta API path counts against: its path with the ids taken out
/// (`/api/v1/users/00u1/groups` → `users/{id}/groups`). Okta's limits are per endpoint.
pub fn okta_bucket(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path
        .split_once("/api/v1/")
        .map(|(_, rest)| rest)
        .unwrap_or(path);
    rest.split('/')
        .enumerate()
        .map(|(i, segment)| if i % 2 == 1 { "{id}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn okta(limit: u64, remaining: u64, reset: DateTime<Utc>) -> HeaderMap {
        headers(&[
            ("x-rate-limit-limit", limit.to_string()),
            ("x-rate-limit-remaining", remaining.to_string()),
            ("x-rate-limit-reset", reset.timestamp().to_string()),
        ])
    }

    #[test]
    fn the_relay_keeps_to_its_share_of_the_window_until_it_resets() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let reset = now + chrono::Duration::seconds(40);
        let budget = RateBudget::new(50);
        assert_eq!(
            budget.wait_before("users/{id}", now),
            None,
            "nothing seen yet"
        );
        budget.observe("users/{id}", &okta(600, 301, reset));
        assert_eq!(
            budget.wait_before("users/{id}", now),
            None,
            "more than half left"
        );
        budget.observe("users/{id}", &okta(600, 300, reset));
        assert_eq!(
            budget.wait_before("users/{id}", now),
            Some(Duration::from_secs(40)),
            "half used: wait for the reset"
        );
        assert_eq!(budget.wait_before("logs", now), None, "another bucket");
        assert_eq!(
            budget.wait_before("users/{id}", reset),
            None,
            "the window reset"
        );
        let all = RateBudget::new(100);
        all.observe("b", &okta(600, 1, reset));
        assert_eq!(all.wait_before("b", now), None, "a 100 % share uses it all");
        all.observe("b", &okta(600, 0, reset));
        assert!(all.wait_before("b", now).is_some());
    }

    #[test]
    fn a_throttled_answer_says_how_long_to_wait() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!(
            throttle_wait(&headers(&[("retry-after", "7".into())]), now),
            Duration::from_secs(7)
        );
        assert_eq!(
            throttle_wait(&okta(600, 0, now + chrono::Duration::seconds(12)), now),
            Duration::from_secs(12)
        );
        assert_eq!(throttle_wait(&HeaderMap::new(), now), DEFAULT_WAIT);
        assert_eq!(
            throttle_wait(&okta(600, 0, now - chrono::Duration::seconds(12)), now),
            Duration::from_secs(1),
            "a reset in the past (clock skew) still waits a second"
        );
        assert_eq!(
            throttle_wait(&headers(&[("retry-after", "999999".into())]), now),
            MAX_WAIT
        );
    }

    #[test]
    fn okta_buckets_leave_the_ids_out() {
        assert_eq!(
            okta_bucket("https://x.okta.com/api/v1/users/00u1"),
            "users/{id}"
        );
        assert_eq!(
            okta_bucket("https://x.okta.com/api/v1/users/00u1/groups?limit=200"),
            "users/{id}/groups"
        );
        assert_eq!(
            okta_bucket("https://x.okta.com/api/v1/users?search=x"),
            "users"
        );
        assert_eq!(
            okta_bucket("https://x.okta.com/api/v1/apps/0oa1/users/00u1"),
            "apps/{id}/users/{id}"
        );
        assert_eq!(
            okta_bucket("https://x.okta.com/api/v1/logs?since=1"),
            "logs"
        );
    }
}
