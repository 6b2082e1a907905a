//! The SCIM target as a behaviour test sees it, on any backend: the in-memory service provider,
//! or scim2-server behind the counting proxy. Both answer the same questions (what does the
//! target hold, which calls did the relay make) and take the same faults.

use scim_relay_core::memory::MemoryTarget;
use serde_json::Value;

pub enum Target {
    Memory(MemoryTarget),
    #[cfg(feature = "servers")]
    Scim {
        tenant: crate::scim::ScimTenant,
        proxy: crate::scim::ScimProxy,
    },
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

    /// The in-memory provider, for the memory backend's engine.
    pub fn memory_target(&self) -> MemoryTarget {
        match self {
            Self::Memory(t) => t.clone(),
            #[cfg(feature = "servers")]
            Self::Scim { .. } => MemoryTarget::new(),
        }
    }

    /// The base URL the relay is configured with.
    pub fn url(&self) -> String {
        match self {
            Self::Memory(_) => "http://memory.invalid/scim/v2".into(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.url.clone(),
        }
    }

    pub fn token(&self) -> String {
        match self {
            Self::Memory(_) => "memory-target-token".into(),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.token.clone(),
        }
    }

    /// The user with this userName, as the target returns it.
    pub async fn user(&self, user_name: &str) -> Option<Value> {
        match self {
            Self::Memory(t) => t.user(user_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.user(user_name).await,
        }
    }

    pub async fn user_count(&self) -> usize {
        match self {
            Self::Memory(t) => t.user_count(),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.user_count().await,
        }
    }

    /// Creates an account as an admin would by hand (not a relay call); its id.
    pub async fn create_user_by_hand(&self, user_name: &str) -> String {
        match self {
            Self::Memory(t) => t.create_user_by_hand(user_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.create_user(user_name).await,
        }
    }

    pub async fn group_members(&self, display_name: &str) -> Option<Vec<String>> {
        match self {
            Self::Memory(t) => t.group_members(display_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.group_members(display_name).await,
        }
    }

    /// Deletes the group as an admin would by hand.
    pub async fn delete_group_by_hand(&self, display_name: &str) {
        match self {
            Self::Memory(t) => t.delete_group_by_hand(display_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.delete_group(display_name).await,
        }
    }

    pub async fn groups_named(&self, display_name: &str) -> usize {
        match self {
            Self::Memory(t) => t.groups_named(display_name),
            #[cfg(feature = "servers")]
            Self::Scim { tenant, .. } => tenant.groups_named(display_name).await,
        }
    }

    /// The calls the relay made, as (method, path).
    pub fn calls(&self) -> Vec<(String, String)> {
        match self {
            Self::Memory(t) => t.calls(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.calls(),
        }
    }

    pub fn count(&self, method: &str) -> usize {
        match self {
            Self::Memory(t) => t.count(method),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.count(method),
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
        }
    }

    /// The next call with this method reaches the target, and the relay sees `status`.
    pub fn lose_next_response(&self, method: &str, status: u16) {
        match self {
            Self::Memory(t) => t.lose_next_response(method, status),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.lose_next_response(method, status),
        }
    }

    /// userNames the target really created (whether or not the relay saw the answer).
    pub fn created(&self) -> Vec<String> {
        match self {
            Self::Memory(t) => t.created(),
            #[cfg(feature = "servers")]
            Self::Scim { proxy, .. } => proxy.created(),
        }
    }
}
