//! The relay's domain types: who a user is and what is remembered of them, the trigger that
//! asks for work, a held deprovision, and what became of a trigger. Pure data and the rules
//! that belong to the data alone. Every port and adapter depends on this module; it depends on
//! none of them, so no two ports need each other for a type.

mod hold;
mod listed;
mod outcome;
mod trigger;
mod user;

pub use hold::{Hold, HoldState, APPROVED_EVENT, LEAVE_GROUPS};
pub use listed::{DirectoryUser, IdpStatus, ListedDirectoryUser};
pub use outcome::{Explanation, Finish, HistoryEntry, KeptBy, Outcome, Step};
pub(crate) use trigger::fit_sqs_id;
pub use trigger::{EventHint, Subject, Trigger, ENVELOPE_VERSION, MAX_SQS_ID};
pub use user::{
    attributes_hash, InvitationCounts, InviteOutcome, InviteState, Source, UserKey, UserState,
};
