//! The directory read: what the IdP says of the user, mapped onto the target.

use super::Worker;
use crate::config::TargetProfile;
use chrono::{DateTime, Utc};

use crate::directory::{user_from_event, DirectoryRead, DirectoryUser, IdpStatus, Membership};
use crate::envelope::Trigger;
use crate::scim::{apply_attribute_map, desired_user, DesiredUser};
use crate::work::WorkError;

/// What the directory says of the user.
pub(super) enum Truth {
    Present(DesiredUser),
    /// Not returned any more (deleted, perhaps restorable).
    Deleted,
    /// Gone for good.
    HardDeleted,
    /// Suspended, and the policy is to leave the target as it is.
    LeaveAsIs,
}

impl Worker {
    /// The directory's truth about the user, mapped to the target. `recorded_at`: when the
    /// user's record was last written, if there is one.
    pub(super) async fn read_desired(
        &self,
        trigger: &Trigger,
        user_id: &str,
        recorded_at: Option<DateTime<Utc>>,
    ) -> Result<Truth, WorkError> {
        let listed = trigger
            .listed
            .as_deref()
            .filter(|l| l.usable_for(user_id, recorded_at));
        // The membership read for a listing, kept for the fresh read that may follow (it is
        // as fresh as a second one would be).
        let mut membership_read = None;
        if let (Some(d), Some(listed)) = (self.directory(trigger.source), listed) {
            // The sweeper's listing stands in for the read of the user (the membership is
            // still read: no listing carries it). Only while the account stays on: whatever
            // would switch it off is decided on a read of the user of its own.
            let membership = d.membership(user_id).await?;
            let truth = self.truth_of(trigger, listed.user.clone(), membership.clone())?;
            if matches!(&truth, Truth::Present(desired) if desired.active) {
                return Ok(truth);
            }
            membership_read = Some(membership);
        }
        let (user, membership) = match self.directory(trigger.source) {
            Some(d) => match d.read_user(user_id).await? {
                DirectoryRead::Found(u) => {
                    let membership = match membership_read {
                        Some(membership) => membership,
                        None => d.membership(user_id).await?,
                    };
                    (*u, membership)
                }
                DirectoryRead::NotFound => return Ok(Truth::Deleted),
                DirectoryRead::HardDeleted => return Ok(Truth::HardDeleted),
            },
            None if !self.trust_event_content => {
                return Err(WorkError::Permanent(format!(
                    "no {} directory credentials are configured, and event content is not trusted",
                    trigger.source
                )))
            }
            None => {
                tracing::warn!(
                    source = %trigger.source,
                    "no directory credentials configured: using what the event itself carries"
                );
                let user = user_from_event(trigger, user_id).ok_or_else(|| {
                    WorkError::Permanent(format!(
                        "no {} directory credentials are configured and the event does not describe the user",
                        trigger.source
                    ))
                })?;
                (user, Membership::everyone())
            }
        };
        self.truth_of(trigger, user, membership)
    }

    /// The target's view of a user the directory describes so, with that membership.
    fn truth_of(
        &self,
        trigger: &Trigger,
        user: DirectoryUser,
        membership: Membership,
    ) -> Result<Truth, WorkError> {
        let mut desired =
            desired_user(self.profile, &user).map_err(|e| WorkError::Permanent(e.to_string()))?;
        apply_attribute_map(&mut desired, &self.attribute_map, trigger.source, &user);
        // Roles follow membership on every profile that is sent anything (RFC 7643 `roles`;
        // Datadog's role UUIDs): a change of groups or of the mapping is one PATCH of `roles`.
        if self.profile != TargetProfile::DryRun && !self.roles.is_empty() {
            desired.attributes.insert(
                "roles".into(),
                self.roles.attribute(&membership.role_groups),
            );
        }
        if self.sync_groups {
            desired.groups = membership
                .groups
                .into_iter()
                .map(|g| (g.id, g.name))
                .collect();
        }
        let lookup = |name: &str| user.extra.get(name).cloned();
        let admitted = self.scoping.admits(trigger.source, &lookup);
        if !membership.in_scope || !admitted {
            // Out of scope is not "not yet": a recorded account is deactivated, and an account
            // the relay never recorded is someone else's business.
            desired.active = false;
            desired.pending = true;
            desired.lifecycle = if membership.in_scope {
                format!("{} (out of scope: scope.rules)", desired.lifecycle)
            } else {
                format!("{} (out of scope)", desired.lifecycle)
            };
        } else if self.keep_suspended && user.status == Some(IdpStatus::Suspended) {
            return Ok(Truth::LeaveAsIs);
        }
        Ok(Truth::Present(desired))
    }
}
