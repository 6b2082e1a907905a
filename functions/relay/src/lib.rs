//! scim-relay's core: verification, envelopes, mapping and planning as pure code, and the
//! adapters (SQS, DynamoDB, SQLite, the IdP directories, SCIM over HTTP) behind small traits.

pub mod clock;
pub mod config;
pub mod directory;
pub mod envelope;
pub mod ingress;
pub mod pii;
pub mod queue;
pub mod scim;
pub mod secret;
pub mod state;
pub mod worker;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "outbound")]
pub mod wiring;
