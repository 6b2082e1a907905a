//! Pending invitations past expiry: still pending → send another (up to the limit), signed in →
//! accepted, gone → withdrawn, limit reached → reported.

use chrono::{DateTime, Utc};

use super::{InviteReport, Sweeper};
use crate::scim::TargetUserStatus;
use crate::state::{InviteOutcome, InviteState, ProcessedEvent, StoreError, UserKey, UserState};

/// At most this many invitations are looked at per run; the rest wait for the next one.
const BATCH: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteStep {
    /// Not expired yet: nothing to do.
    Wait,
    Resend,
    Accepted,
    Withdrawn,
    /// Every allowed invitation expired: report the user, stop inviting.
    Unaccepted,
}

/// The decision for one invitation, from the target's answer.
pub fn invite_step(
    invite: &InviteState,
    status: &TargetUserStatus,
    now: DateTime<Utc>,
    attempts: u32,
) -> InviteStep {
    match status {
        TargetUserStatus::Active => InviteStep::Accepted,
        TargetUserStatus::Disabled | TargetUserStatus::Missing => InviteStep::Withdrawn,
        TargetUserStatus::Pending { .. } if invite.expires_at > now => InviteStep::Wait,
        TargetUserStatus::Pending { .. } if invite.count >= attempts => InviteStep::Unaccepted,
        TargetUserStatus::Pending { .. } => InviteStep::Resend,
    }
}

impl Sweeper {
    pub(super) async fn sweep_invites(&self) -> InviteReport {
        let mut report = InviteReport::default();
        if !self.p.tracks_invitations {
            return report;
        }
        let now = self.p.clock.now();
        let due = match self.p.store.invites_due(now, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("cannot list pending invitations: {e}");
                return report;
            }
        };
        let Some(api) = self.p.invitations.as_ref() else {
            if !due.is_empty() {
                tracing::warn!(
                    due = due.len(),
                    "invitations expired, but target.api_key is not set: cannot check or re-send them"
                );
            }
            report.unchecked = due.len() as u32;
            return report;
        };
        for (key, state) in due {
            let Some(invite) = state.invite.clone() else {
                continue;
            };
            report.checked += 1;
            let status = match api.status(&state.user_name).await {
                Ok(status) => status,
                Err(e) => {
                    tracing::warn!(user = %key.user_id, "cannot read the invited user's status: {e}");
                    report.unchecked += 1;
                    continue;
                }
            };
            let step = invite_step(&invite, &status, now, self.p.invite_attempts);
            let next = match (step, &status) {
                (InviteStep::Wait, _) => continue,
                (InviteStep::Resend, TargetUserStatus::Pending { user_id }) => {
                    match api.resend(user_id).await {
                        Ok(expires) => InviteState {
                            sent_at: now,
                            // The target's expiry, unless it is missing or (clock skew) already
                            // past: that would re-send on every run.
                            expires_at: expires
                                .filter(|e| *e > now)
                                .unwrap_or(now + self.p.invite_ttl),
                            count: invite.count + 1,
                            outcome: None,
                        },
                        Err(e) => {
                            tracing::warn!(user = %key.user_id, "re-sending the invitation failed: {e}");
                            report.unchecked += 1;
                            continue;
                        }
                    }
                }
                (InviteStep::Accepted, _) => InviteState {
                    outcome: Some(InviteOutcome::Accepted { at: now }),
                    ..invite.clone()
                },
                (InviteStep::Unaccepted, _) => InviteState {
                    outcome: Some(InviteOutcome::Unaccepted { at: now }),
                    ..invite.clone()
                },
                _ => InviteState {
                    outcome: Some(InviteOutcome::Withdrawn { at: now }),
                    ..invite.clone()
                },
            };
            if let Err(e) = self.record_invite(&key, &state, next, now).await {
                // A concurrent worker write wins; the invitation is looked at next run.
                tracing::warn!(user = %key.user_id, "invitation state not recorded: {e}");
                continue;
            }
            match step {
                InviteStep::Resend => report.resent += 1,
                InviteStep::Accepted => report.accepted += 1,
                InviteStep::Unaccepted => {
                    tracing::error!(
                        alarm = "invite_unaccepted",
                        user = %key.storage_id(),
                        invitations = invite.count,
                        "user never accepted the target's invitation; reach out to them"
                    );
                    report.unaccepted.push(key.storage_id());
                }
                _ => report.withdrawn += 1,
            }
        }
        report
    }

    /// Writes the new invitation state on top of the version read, so a worker that changed
    /// the user meanwhile is never overwritten.
    async fn record_invite(
        &self,
        key: &UserKey,
        state: &UserState,
        invite: InviteState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut next = state.successor(now);
        next.invite = Some(invite);
        let marker = ProcessedEvent {
            key: format!(
                "{}:{}:sweep-invite:{}:{}",
                key.source, key.tenant, key.user_id, next.version
            ),
            expires_at: now + chrono::Duration::days(3),
        };
        self.p
            .store
            .commit(key, Some(&next), Some(state.version), &marker)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(expires_in_hours: i64, count: u32) -> (InviteState, DateTime<Utc>) {
        let now = Utc::now();
        (
            InviteState {
                sent_at: now - chrono::Duration::hours(48),
                expires_at: now + chrono::Duration::hours(expires_in_hours),
                count,
                outcome: None,
            },
            now,
        )
    }

    #[test]
    fn a_pending_user_is_invited_again_until_the_limit_then_reported() {
        let pending = TargetUserStatus::Pending {
            user_id: "u1".into(),
        };
        let (valid, now) = invite(1, 1);
        assert_eq!(invite_step(&valid, &pending, now, 3), InviteStep::Wait);
        let (expired, now) = invite(-1, 1);
        assert_eq!(invite_step(&expired, &pending, now, 3), InviteStep::Resend);
        let (expired, now) = invite(-1, 2);
        assert_eq!(invite_step(&expired, &pending, now, 3), InviteStep::Resend);
        let (expired, now) = invite(-1, 3);
        assert_eq!(
            invite_step(&expired, &pending, now, 3),
            InviteStep::Unaccepted
        );
    }

    #[test]
    fn what_the_target_says_decides_before_the_expiry() {
        let (valid, now) = invite(5, 1);
        assert_eq!(
            invite_step(&valid, &TargetUserStatus::Active, now, 3),
            InviteStep::Accepted
        );
        assert_eq!(
            invite_step(&valid, &TargetUserStatus::Disabled, now, 3),
            InviteStep::Withdrawn
        );
        assert_eq!(
            invite_step(&valid, &TargetUserStatus::Missing, now, 3),
            InviteStep::Withdrawn
        );
    }
}
