//! The drift report: target users the relay has no record of — accounts made by hand on the
//! target, or left over from before the relay. Reported by default; deactivated only when
//! configured, only once two reports in a row found them (a user the worker is creating right
//! now is briefly unknown), never the credential's owner, and never more than a small share in
//! one run.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{FeedOutcome, FeedReport, Sweeper};
use crate::config::DriftPolicy;
use crate::deprovision::{take_slot, Slot};
use crate::scim::{any_named, list_all_users, ListedUser, PatchOp};

const CURSOR: &str = "drift/last-run";
/// The unknown ids of the previous report: only those found again are deactivated.
const CANDIDATES: &str = "drift/candidates";
/// At most this many, or a tenth of the target's users if more, are deactivated in one run;
/// above that the report says so and deactivates nobody (a bad read, not a real drift).
const MIN_DEACTIVATION_CAP: usize = 5;
/// Listed in the report (the count is always exact).
const LISTED: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    /// Target users looked at.
    pub target_users: u32,
    /// Active target users the relay has no record of.
    pub unknown: u32,
    /// Their target ids (the first hundred): ids, not emails, so the report can be logged.
    pub unknown_ids: Vec<String>,
    pub deactivated: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The active target users whose userName the relay does not know, never the owner's nor a
/// protected account (`spared`: both).
pub fn unknown_users<'a>(
    target: &'a [ListedUser],
    known: &std::collections::HashSet<String>,
    spared: &[String],
) -> Vec<&'a ListedUser> {
    target
        .iter()
        .filter(|u| u.active != Some(false))
        .filter(|u| {
            !known.contains(&u.user_name.to_lowercase())
                && !any_named(&[u.user_name.as_str()], spared)
        })
        .collect()
}

impl Sweeper {
    /// Runs the report when it is due and the relay can know every directory user: each feed
    /// has finished a pass before, none aborted this time, and none is a full pass whose users
    /// the worker has yet to record.
    pub(super) async fn drift(&self, reconciliation: &[FeedReport]) -> Option<DriftReport> {
        if self.p.drift == DriftPolicy::Off || self.p.feeds.is_empty() {
            return None;
        }
        if reconciliation.iter().any(|f| {
            matches!(
                f.outcome,
                FeedOutcome::Aborted { .. }
                    | FeedOutcome::Enqueued { full: true, .. }
                    | FeedOutcome::Paused { .. }
            )
        }) {
            return None;
        }
        for feed in &self.p.feeds {
            if !matches!(
                self.p.store.load_cursor(&feed.cursor_name()).await,
                Ok(Some(_))
            ) {
                return None;
            }
        }
        let now = self.p.clock.now();
        let last = self
            .p
            .store
            .load_cursor(CURSOR)
            .await
            .ok()
            .flatten()
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        if last.is_some_and(|last| now - last < self.p.drift_interval) {
            return None;
        }
        let report = match self.drift_now().await {
            Ok(report) => {
                // Every completed report counts, so two sightings are an interval apart.
                if let Err(e) = self.p.store.save_cursor(CURSOR, &now.to_rfc3339()).await {
                    tracing::warn!("drift report time not recorded: {e}");
                }
                report
            }
            Err(note) => DriftReport {
                note: Some(note),
                ..DriftReport::default()
            },
        };
        if report.unknown > 0 {
            tracing::warn!(
                alarm = "drift",
                unknown = report.unknown,
                ids = ?report.unknown_ids,
                deactivated = report.deactivated,
                "target users the relay has no record of"
            );
        }
        Some(report)
    }

    async fn drift_now(&self) -> Result<DriftReport, String> {
        let target = list_all_users(self.p.target.as_ref())
            .await
            .map_err(|e| format!("cannot list target users: {e}"))?;
        let known = self
            .p
            .store
            .known_user_names()
            .await
            .map_err(|e| e.to_string())?;
        let spared: Vec<String> = self
            .p
            .owner
            .iter()
            .chain(&self.p.protected)
            .cloned()
            .collect();
        let unknown = unknown_users(&target, &known, &spared);
        let mut report = DriftReport {
            target_users: target.len() as u32,
            unknown: unknown.len() as u32,
            unknown_ids: unknown.iter().take(LISTED).map(|u| u.id.clone()).collect(),
            deactivated: 0,
            note: None,
        };
        if self.p.drift != DriftPolicy::Deactivate {
            return Ok(report);
        }
        let seen_before: std::collections::HashSet<String> = self
            .p
            .store
            .load_cursor(CANDIDATES)
            .await
            .ok()
            .flatten()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        // Always the latest sighting, even an empty one: only users unknown in two reports in
        // a row are candidates.
        let ids: Vec<&str> = unknown.iter().map(|u| u.id.as_str()).collect();
        self.p
            .store
            .save_cursor(CANDIDATES, &serde_json::to_string(&ids).unwrap_or_default())
            .await
            .map_err(|e| e.to_string())?;
        if unknown.is_empty() {
            return Ok(report);
        }
        let unknown: Vec<&ListedUser> = unknown
            .into_iter()
            .filter(|u| seen_before.contains(&u.id))
            .collect();
        if unknown.is_empty() {
            report.note =
                Some("first sighting: deactivated only if still unknown next time".into());
            return Ok(report);
        }
        let cap = MIN_DEACTIVATION_CAP.max(target.len() / 10);
        if unknown.len() > cap {
            report.note = Some(format!(
                "{} unknown users is more than {cap} (a tenth of the target): none deactivated; check the relay's records before deactivating by hand",
                unknown.len()
            ));
            return Ok(report);
        }
        for user in unknown {
            let now = self.p.clock.now();
            let slot = take_slot(
                self.p.store.as_ref(),
                &format!("drift#{}", user.id),
                now,
                &self.p.deprovision,
            )
            .await
            .map_err(|e| e.to_string())?;
            if let Slot::Refused { taken, allowed } = slot {
                tracing::error!(
                    alarm = "deprovision_held",
                    taken,
                    allowed,
                    "deprovisioning breaker: drift deactivations stopped for this run"
                );
                report.note = Some(format!(
                    "deprovisioning breaker: {taken} deprovisions in the window reached the limit of {allowed}; the rest are left active until a later run"
                ));
                break;
            }
            match self
                .p
                .target
                .patch_user(
                    &user.id,
                    &[PatchOp::replace("active", serde_json::json!(false))],
                )
                .await
            {
                Ok(()) => report.deactivated += 1,
                Err(e) => tracing::warn!(scim_id = %user.id, "drift deactivation failed: {e}"),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str, active: Option<bool>) -> ListedUser {
        ListedUser {
            id: id.into(),
            user_name: name.into(),
            active,
            external_id: None,
            resource: serde_json::Value::Null,
        }
    }

    #[test]
    fn only_active_unknown_users_drift_and_never_the_owner() {
        let target = [
            user("1", "Known@Example.com", Some(true)),
            user("2", "manual@example.com", Some(true)),
            user("3", "gone@example.com", Some(false)),
            user("4", "owner@example.com", None),
            user("5", "no-active-field@example.com", None),
            user("6", "break.glass@example.com", Some(true)),
        ];
        let known = ["known@example.com".to_string()].into_iter().collect();
        let spared = ["Owner@example.com".into(), "BREAK.GLASS@example.com".into()];
        let ids: Vec<&str> = unknown_users(&target, &known, &spared)
            .iter()
            .map(|u| u.id.as_str())
            .collect();
        assert_eq!(ids, ["2", "5"]);
    }
}
