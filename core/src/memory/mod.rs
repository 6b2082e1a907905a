//! In-memory adapters of the core's ports: the work queue, the state store (with the credential
//! breaker) and a SCIM service provider, so the behaviour suite runs in plain `cargo test`,
//! with no server. Each keeps the contracts of the real adapters (SQLite and DynamoDB; an
//! RFC 7644 provider seen through the HTTP client), and adds the hooks and readers the tests
//! need.

mod patch;
mod queue;
mod store;
mod target;

pub use queue::MemoryQueue;
pub use store::MemoryStore;
pub use target::MemoryTarget;
