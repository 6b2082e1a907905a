//! What an operator writes about attributes: expressions that compute a SCIM value from the
//! directory's attributes (`target.attributes`), and scoping rules that admit users by them
//! (`target.scope_rules`). Parsed once at start-up, so a bad one is a configuration error;
//! total when evaluated, so no user can make the worker fail.

pub mod expression;
pub mod scoping;

pub use expression::{Expression, ExpressionError};
pub use scoping::{ScopingError, ScopingRules};
