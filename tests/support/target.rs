//! The SCIM target as a behaviour test sees it, on any backend: the in-memory service provider,
//! scim2-server behind the counting proxy, or the fixture that behaves as Datadog documents its
//! SCIM API. Each answers the same questions (what does the target hold, which calls did the
//! relay make) and takes the faults it can model.

use scim_relay_core::memory::MemoryTarget;
use serde_json::Value;

use crate::datadog::{DatadogFixture, DATADOG_TOKEN};

/// Which target a deployment is started against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A plain RFC 7644 provider: in memory on the memory backend, scim2-server on the others.
    Scim,
    /// The Datadog fixture (HTTP, in process) on every backend.
    Datadog,
}

pub enum Target {
    Memory(MemoryTarget),
    #[cfg(feature = "servers")]
    Scim {
        tenant: crate::scim::ScimTenant,
        proxy: crate::scim::ScimProxy,
    },
    Datadog(DatadogFixture),
}

impl Target {
    pub fn memory() -> Self {
        Self::Memory(MemoryTarget::new())
    }

    #[cfg(feature = "servers")]
    pub async fn scim2_server() -> Self {
        let tenant = crate::scim::ScimTenant::fresh();
        let proxy = crate::scim::ScimProxy::start(&tenant).await;
        Self::Scim { tenant, proxy }
    }

    pub async fn datadog() -> Self {
        Self::Datadog(DatadogFixture::start().await)
    }

    /// The in-memory provider the memory backend's engine calls in-process; `None` where the
    /// target is reached over HTTP.
    pub fn memory_target(&self) -> Option<MemoryTarget> {
        match self {
            Self::Memory(t) => Some(t.clone()),
            _ => None,
        }
    }

    /// The Datadog fixture, for what only it models (invitations, the Users API).
    pub fn datadog_fixture(&self) -> &DatadogFixture {
        match self {
            Self::Datadog(dd) => dd,
            _ => panic!("this deployment's target is not the Datadog fixture"),
        }
    }

    /// The base URL the relay is configured with.
    pub fn url(&self) -> String {
        match self {
            Self::Memory(_) => "http://memory.invalid/scim/v2".into(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.url.clone(),
            Self::Datadog(dd) => dd.base_url.clone(),
        }
    }

    pub fn token(&self) -> String {
        match self {
            Self::Memory(_) => "memory-target-token".into(),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.token.clone(),
            Self::Datadog(_) => DATADOG_TOKEN.into(),
        }
    }

    /// The user with this userName, as the target returns it.
    pub async fn user(&self, user_name: &str) -> Option<Value> {
        match self {
            Self::Memory(t) => t.user(user_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.user(user_name).await,
            Self::Datadog(dd) => dd.user(user_name),
        }
    }

    /// The SCIM id of the user with this userName; panics when there is none.
    pub async fn id_of(&self, user_name: &str) -> String {
        let user = self.user(user_name).await;
        user.as_ref()
            .and_then(|u| u["id"].as_str())
            .unwrap_or_else(|| panic!("no account {user_name} on the target"))
            .to_string()
    }

    pub async fn user_count(&self) -> usize {
        match self {
            Self::Memory(t) => t.user_count(),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.user_count().await,
            Self::Datadog(dd) => dd.user_count(),
        }
    }

    /// Creates an account as an admin would by hand (not a relay call); its id.
    pub async fn create_user_by_hand(&self, user_name: &str) -> String {
        match self {
            Self::Memory(t) => t.create_user_by_hand(user_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.create_user(user_name).await,
            Self::Datadog(dd) => dd.create_user_by_hand(user_name).await,
        }
    }

    /// Deletes an account as an admin would by hand.
    pub async fn delete_user_by_hand(&self, id: &str) {
        match self {
            Self::Memory(t) => assert!(t.delete_user_by_hand(id), "no user {id}"),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.delete_user(id).await,
            Self::Datadog(_) => unimplemented!("Datadog disables on DELETE; not a hand delete"),
        }
    }

    pub async fn group_members(&self, display_name: &str) -> Option<Vec<String>> {
        match self {
            Self::Memory(t) => t.group_members(display_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.group_members(display_name).await,
            Self::Datadog(dd) => dd.team_members(display_name),
        }
    }

    /// Deletes the group as an admin would by hand.
    pub async fn delete_group_by_hand(&self, display_name: &str) {
        match self {
            Self::Memory(t) => t.delete_group_by_hand(display_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.delete_group(display_name).await,
            Self::Datadog(dd) => dd.delete_team_by_hand(display_name),
        }
    }

    pub async fn groups_named(&self, display_name: &str) -> usize {
        match self {
            Self::Memory(t) => t.groups_named(display_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.groups_named(display_name).await,
            Self::Datadog(dd) => dd.teams_named(display_name),
        }
    }

    /// The calls the relay made, as (method, path).
    pub fn calls(&self) -> Vec<(String, String)> {
        match self {
            Self::Memory(t) => t.calls(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.calls(),
            Self::Datadog(dd) => dd.calls(),
        }
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls().iter().filter(|(m, _)| m == method).count()
    }

    /// When each call arrived, as (method, instant), in order.
    pub fn call_times(&self) -> Vec<(String, std::time::Instant)> {
        match self {
            Self::Memory(t) => t.call_times(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.call_times(),
            Self::Datadog(_) => unimplemented!("the Datadog fixture keeps no call times"),
        }
    }

    /// The next call with this method answers `status` without reaching the target.
    pub fn fail_next(&self, method: &str, status: u16) {
        self.fail_next_with(method, status, &[]);
    }

    pub fn fail_next_with(&self, method: &str, status: u16, headers: &[(&str, &str)]) {
        match self {
            Self::Memory(t) => t.fail_next_with(method, status, headers),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.fail_next_with(method, status, headers),
            Self::Datadog(dd) => {
                assert_eq!(status, 429, "the Datadog fixture injects 429 only");
                dd.throttle_next(method)
            }
        }
    }

    /// The next call with this method reaches the target, and the relay sees `status`.
    pub fn lose_next_response(&self, method: &str, status: u16) {
        match self {
            Self::Memory(t) => t.lose_next_response(method, status),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.lose_next_response(method, status),
            Self::Datadog(_) => unimplemented!("the Datadog fixture loses no answers"),
        }
    }

    /// While set, every call is refused 401: the target no longer accepts the credential.
    pub fn reject_credential(&self, rejecting: bool) {
        match self {
            Self::Memory(t) => t.reject_credential(rejecting),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.answer_every(rejecting.then_some(401)),
            Self::Datadog(_) => unimplemented!("use the Scim target"),
        }
    }

    /// While set, the target answers a filtered look-up with whoever comes first, as a
    /// provider without filter support does.
    pub fn ignore_filters(&self, ignoring: bool) {
        match self {
            Self::Memory(t) => t.ignore_filters(ignoring),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.ignore_filters(ignoring),
            Self::Datadog(_) => unimplemented!("use the Scim target"),
        }
    }

    /// While set, every call is answered 503: the target is down.
    pub fn unavailable(&self, down: bool) {
        match self {
            Self::Memory(t) => t.unavailable(down),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.answer_every(down.then_some(503)),
            Self::Datadog(_) => unimplemented!("use the Scim target"),
        }
    }

    /// From now on a `rate` share of calls fails at random, seeded (scim2-server's proxy only).
    pub fn chaos(&self, rate: f64, seed: u64, stall: std::time::Duration) {
        let _ = (rate, seed, stall);
        match self {
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.chaos(rate, seed, stall),
            _ => unimplemented!("chaos is the proxy's"),
        }
    }

    /// Stops the chaos; how many failures it injected, in all and on writes.
    pub fn calm(&self) -> (usize, usize) {
        match self {
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.calm(),
            _ => (0, 0),
        }
    }

    /// userNames the target really created (whether or not the relay saw the answer).
    pub fn created(&self) -> Vec<String> {
        match self {
            Self::Memory(t) => t.created(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.created(),
            Self::Datadog(_) => unimplemented!("use the Scim target"),
        }
    }
}
