//! In-memory adapters of the core's ports: the state store (with the credential breaker) and a
//! SCIM service provider, so the behaviour suite runs in plain `cargo test`, with no server.
//! Both keep the contracts of the real adapters (SQLite and DynamoDB; an RFC 7644 provider seen
//! through the HTTP client), and add the hooks and readers the tests need.

mod patch;
mod store;
mod target;

pub use store::MemoryStore;
pub use target::MemoryTarget;
