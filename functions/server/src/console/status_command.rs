//! `scim-relay status`: one look at a deployment's health, for a person (aligned text) or a
//! script (`--output json`, one stable object): the work queue, the dead letters by reason,
//! the credential breaker, the sweeper's last run, the Graph subscriptions, invitations and
//! held deprovisions. It only reads: nothing is taken from the work queue, and dead letters
//! read on SQS are made visible again at once.
//!
//! Each part is read on its own; one that cannot be read is `null` in the JSON (and says so
//! in the text), its error is listed under `errors`, and the command exits with status 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Args;
use scim_relay_core::config::Settings;
use scim_relay_core::deprovision::{held_users, HoldState};
use scim_relay_core::queue::QueueFigures;
use scim_relay_core::state::InvitationCounts;
use scim_relay_core::sweeper::{last_sweep, recorded_subscriptions, SweepSummary};
use serde::Serialize;

use crate::console::{Console, Output};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// `json` for scripts: one object, the same keys every time.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How many dead letters' reasons are read. On SQS each is received from the dead-letter queue
/// (and hidden for a moment), so the count is capped; the total is counted all the same.
pub const DEAD_LETTER_REASONS_READ: usize = 100;

/// Where a Lambda deployment's queue age is, since SQS tells it only to CloudWatch.
const SQS_AGE_METRIC: &str = "CloudWatch AWS/SQS ApproximateAgeOfOldestMessage (QueueAgeAlarm)";

/// A grouped reason is cut to this many characters.
const REASON_CHARS: usize = 200;

/// Everything the command shows; serialised as is for `--output json`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub at: DateTime<Utc>,
    pub queue: Option<QueueStatus>,
    pub dead_letters: Option<DeadLetterStatus>,
    pub credential_breaker: Option<BreakerStatus>,
    /// `null` before the first run that recorded one (or when it could not be read).
    pub last_sweep: Option<SweepSummary>,
    pub subscriptions: Option<Vec<SubscriptionStatus>>,
    pub invitations: Option<InvitationCounts>,
    pub held: Option<HeldCounts>,
    /// What could not be read, one line each.
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    #[serde(flatten)]
    pub figures: QueueFigures,
    /// Where the oldest message's age is when the queue cannot tell it here (SQS).
    pub oldest_age_metric: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetterStatus {
    pub total: u64,
    /// Dead letters whose reason was read (at most [`DEAD_LETTER_REASONS_READ`]).
    pub read: u64,
    /// The reasons read, ids and emails masked so that alike reasons count together; most
    /// frequent first.
    pub reasons: Vec<ReasonCount>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct BreakerStatus {
    pub open: bool,
    pub open_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionStatus {
    pub resource: String,
    pub id: String,
    pub expires_at: DateTime<Utc>,
    /// Negative once it has expired.
    pub expires_in_seconds: i64,
}

#[derive(Debug, Serialize)]
pub struct HeldCounts {
    /// Waiting for an operator (`scim-relay held list`).
    pub pending: u64,
    /// Approved, applied at the user's next trigger.
    pub approved: u64,
    /// Rejected: the account stays until the directory shows the user active again.
    pub rejected: u64,
}

/// Runs `status` against `console`. The report is written even when a part failed; the error
/// then says how many.
pub async fn run(
    console: &Console,
    settings: &Settings,
    args: StatusArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    let status = read(console, settings, Utc::now()).await;
    // A closed pipe (`| head`) ends the output, not the process.
    let _ = match args.output {
        Output::Text => write!(out, "{}", render(&status)),
        Output::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
        ),
    };
    match status.errors.len() {
        0 => Ok(()),
        n => Err(format!("{n} parts of the status could not be read")),
    }
}

/// Reads every part of the status at `now`.
pub async fn read(console: &Console, settings: &Settings, now: DateTime<Utc>) -> Status {
    let mut errors = Vec::new();
    let mut keep = Keep(&mut errors);
    let store = console.store.as_ref();
    let queue = keep.part(
        "queue",
        console
            .queue_monitor
            .figures(now)
            .await
            .map(|figures| QueueStatus {
                oldest_age_metric: figures
                    .oldest_age_seconds
                    .is_none()
                    .then_some(SQS_AGE_METRIC),
                figures,
            })
            .map_err(|e| e.to_string()),
    );
    let dead_letters = keep.part(
        "dead letters",
        console
            .queue_monitor
            .dead_letters(DEAD_LETTER_REASONS_READ)
            .await
            .map(|d| DeadLetterStatus {
                total: d.total,
                read: d.reasons.len() as u64,
                reasons: group_reasons(&d.reasons),
            })
            .map_err(|e| e.to_string()),
    );
    let credential_breaker = keep.part(
        "credential breaker",
        console
            .breaker
            .open_until(now)
            .await
            .map(|until| BreakerStatus {
                open: until.is_some(),
                open_until: until,
            })
            .map_err(|e| e.to_string()),
    );
    let last_sweep = keep
        .part(
            "last sweep",
            last_sweep(store).await.map_err(|e| e.to_string()),
        )
        .flatten();
    let tenant = settings.entra_tenant();
    let subscriptions = keep.part(
        "graph subscriptions",
        if tenant.is_empty() {
            // No Entra tenant configured: the relay owns no subscription.
            Ok(Vec::new())
        } else {
            recorded_subscriptions(store, &tenant)
                .await
                .map(|subs| {
                    subs.into_iter()
                        .map(|s| SubscriptionStatus {
                            expires_in_seconds: (s.expires_at - now).num_seconds(),
                            resource: s.resource,
                            id: s.id,
                            expires_at: s.expires_at,
                        })
                        .collect()
                })
                .map_err(|e| e.to_string())
        },
    );
    let invitations = keep.part(
        "invitations",
        store
            .invitation_counts(now)
            .await
            .map_err(|e| e.to_string()),
    );
    let held = keep.part(
        "held deprovisions",
        held_users(store)
            .await
            .map(|held| {
                let count = |wanted: fn(&HoldState) -> bool| {
                    held.iter().filter(|h| wanted(&h.hold.state)).count() as u64
                };
                HeldCounts {
                    pending: count(|s| matches!(s, HoldState::Pending)),
                    approved: count(|s| matches!(s, HoldState::Approved { .. })),
                    rejected: count(|s| matches!(s, HoldState::Rejected { .. })),
                }
            })
            .map_err(|e| e.to_string()),
    );
    Status {
        at: now,
        queue,
        dead_letters,
        credential_breaker,
        last_sweep,
        subscriptions,
        invitations,
        held,
        errors,
    }
}

/// Keeps a part that was read, or its error.
struct Keep<'a>(&'a mut Vec<String>);

impl Keep<'_> {
    fn part<T>(&mut self, part: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.0.push(format!("{part}: {e}"))).ok()
    }
}

/// Counts reasons once their ids and emails are masked (`user <id> has no email address`),
/// most frequent first, then alphabetically.
pub fn group_reasons(reasons: &[Option<String>]) -> Vec<ReasonCount> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for reason in reasons {
        let grouped = match reason {
            Some(r) => mask_ids(r),
            None => "no reason (moved by SQS after maxReceiveCount receives)".into(),
        };
        *counts.entry(grouped).or_default() += 1;
    }
    let mut grouped: Vec<ReasonCount> = counts
        .into_iter()
        .map(|(reason, count)| ReasonCount { reason, count })
        .collect();
    grouped.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    grouped
}

/// A reason with what differs from user to user masked: email addresses (`<email>`), and ids
/// (`<id>`: words of six characters or more with a digit in them — IdP user ids, SCIM ids,
/// UUIDs, event ids — and long hex strings). Status codes and plain words stay.
pub fn mask_ids(reason: &str) -> String {
    let mut masked = String::with_capacity(reason.len());
    for (i, piece) in reason.split_whitespace().enumerate() {
        if i > 0 {
            masked.push(' ');
        }
        let core = piece.trim_matches(|c: char| !c.is_alphanumeric());
        if core.contains('@') {
            // Keep the punctuation around it: `(<email>)`, `<email>,`.
            let start = piece.find(core).unwrap_or(0);
            masked.push_str(&piece[..start]);
            masked.push_str("<email>");
            masked.push_str(&piece[start + core.len()..]);
            continue;
        }
        let mut word = String::new();
        for c in piece.chars() {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                word.push(c);
            } else {
                masked.push_str(&mask_word(&word));
                word.clear();
                masked.push(c);
            }
        }
        masked.push_str(&mask_word(&word));
    }
    let mut cut: String = masked.chars().take(REASON_CHARS).collect();
    if cut.len() < masked.len() {
        cut.push('…');
    }
    cut
}

fn mask_word(word: &str) -> String {
    let has_digit = word.chars().any(|c| c.is_ascii_digit());
    let long_hex = word.len() >= 16 && word.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if (has_digit && word.chars().count() >= 6) || long_hex {
        "<id>".into()
    } else {
        word.into()
    }
}

/// The label column of the text output.
const LABEL: usize = 15;

/// The text an operator reads: one line per part, details indented under it.
pub fn render(status: &Status) -> String {
    let mut text = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(text, "{label:<LABEL$} {value}");
    };
    let unreadable = "unreadable (see errors)";
    line("status at", &utc(status.at));
    match &status.queue {
        Some(q) => line("queue", &queue_line(q)),
        None => line("queue", unreadable),
    }
    match &status.dead_letters {
        Some(d) => {
            let mut value = d.total.to_string();
            if d.read < d.total {
                let _ = write!(value, " (reasons of {} read)", d.read);
            }
            line("dead letters", &value);
            for r in &d.reasons {
                line("", &format!("{:>4}  {}", r.count, r.reason));
            }
        }
        None => line("dead letters", unreadable),
    }
    match &status.credential_breaker {
        Some(b) => match b.open_until {
            Some(until) => line(
                "breaker",
                &format!(
                    "OPEN until {} (the target refused the credential; workers wait)",
                    utc(until)
                ),
            ),
            None => line("breaker", "closed"),
        },
        None => line("breaker", unreadable),
    }
    match (
        &status.last_sweep,
        status.errors.iter().any(|e| e.starts_with("last sweep")),
    ) {
        (Some(s), _) => {
            let took = (s.finished_at - s.started_at).num_seconds().max(0);
            line(
                "last sweep",
                &format!(
                    "{} ({} ago, took {took} s), credential {}",
                    utc(s.finished_at),
                    duration((status.at - s.finished_at).num_seconds()),
                    s.credential,
                ),
            );
            for detail in sweep_details(s) {
                line("", &detail);
            }
        }
        (None, true) => line("last sweep", unreadable),
        (None, false) => line("last sweep", "none recorded yet"),
    }
    match &status.subscriptions {
        Some(subs) if subs.is_empty() => line("subscriptions", "none (the relay owns none)"),
        Some(subs) => {
            for (i, s) in subs.iter().enumerate() {
                let when = if s.expires_in_seconds > 0 {
                    format!("in {}", duration(s.expires_in_seconds))
                } else {
                    format!("EXPIRED {} ago", duration(-s.expires_in_seconds))
                };
                let label = if i == 0 { "subscriptions" } else { "" };
                line(
                    label,
                    &format!("{:<7}expires {} ({when})", s.resource, utc(s.expires_at)),
                );
            }
        }
        None => line("subscriptions", unreadable),
    }
    match &status.invitations {
        Some(i) => line(
            "invitations",
            &format!(
                "{} pending ({} past expiry), {} unaccepted",
                i.pending, i.past_expiry, i.unaccepted
            ),
        ),
        None => line("invitations", unreadable),
    }
    match &status.held {
        Some(h) => {
            let mut value = format!("{} waiting for an operator", h.pending);
            if h.pending > 0 {
                value.push_str(" (scim-relay held list)");
            }
            let _ = write!(value, ", {} approved, {} rejected", h.approved, h.rejected);
            line("held", &value);
        }
        None => line("held", unreadable),
    }
    for (i, e) in status.errors.iter().enumerate() {
        line(if i == 0 { "errors" } else { "" }, e);
    }
    text
}

fn queue_line(q: &QueueStatus) -> String {
    let f = &q.figures;
    let mut value = format!(
        "{} messages: {} visible, {} being worked or waiting to retry",
        f.messages, f.visible, f.not_visible
    );
    if let Some(delayed) = f.delayed {
        let _ = write!(value, ", {delayed} delayed");
    }
    match (f.oldest_age_seconds, q.oldest_age_metric) {
        (Some(0), _) if f.messages == 0 => {}
        (Some(age), _) => {
            let _ = write!(value, "; oldest waited {}", duration(age as i64));
        }
        (None, Some(metric)) => {
            let _ = write!(value, "; oldest: see {metric}");
        }
        (None, None) => {}
    }
    value
}

/// The last run's figures, a line per part.
fn sweep_details(s: &SweepSummary) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(reason) = &s.credential_reason {
        lines.push(format!("credential: {reason}"));
    }
    for f in &s.reconciliation {
        let what = match f.outcome.as_str() {
            "enqueued" if f.full => format!("{} users queued (full pass)", f.users),
            "enqueued" => format!("{} users queued", f.users),
            other => match &f.reason {
                Some(reason) => format!("{other}: {reason}"),
                None => other.to_string(),
            },
        };
        lines.push(format!("reconcile {} {}: {what}", f.source, f.feed));
    }
    for sub in &s.subscriptions {
        let what = match (&sub.expires_at, &sub.reason) {
            (_, Some(reason)) => format!("{}: {reason}", sub.action),
            (Some(at), None) => format!("{}, expires {}", sub.action, utc(*at)),
            (None, None) => sub.action.clone(),
        };
        lines.push(format!("subscription {}: {what}", sub.resource));
    }
    let i = &s.invites;
    lines.push(format!(
        "invitations: {} checked, {} re-sent, {} accepted, {} withdrawn, {} given up, {} unchecked",
        i.checked, i.resent, i.accepted, i.withdrawn, i.unaccepted, i.unchecked
    ));
    if let Some(unknown) = s.drift_unknown {
        lines.push(format!(
            "drift: {unknown} target users unknown to the relay"
        ));
    }
    let d = &s.deprovisions;
    lines.push(match &d.error {
        Some(e) => format!("deprovisions: not counted: {e}"),
        None => format!(
            "deprovisions: {} of {} allowed in the window, {} held, {} active accounts",
            d.in_window, d.allowed, d.held_pending, d.active_accounts
        ),
    });
    lines
}

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `42 s`, `12 min`, `5 h`, `27 d`: short, rounded down.
fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s} s"),
        120..7_200 => format!("{} min", s / 60),
        7_200..172_800 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_once_ids_and_emails_are_masked() {
        let reasons = [
            Some("user 00uNOMAIL has no email address, which the target needs as userName".into()),
            Some("user 00u2b3c4d5 has no email address, which the target needs as userName".into()),
            Some("target answered 400 for jane.doe@example.com: invalid".into()),
            Some("target account 3f2a9c1e-77aa-4b0e-9d21-0c8f5e6a7b11 belongs to another IdP user (okta#example.okta.com#00uA1B2C3D4)".into()),
            None,
        ];
        let grouped = group_reasons(&reasons);
        assert_eq!(
            grouped[0],
            ReasonCount {
                reason: "user <id> has no email address, which the target needs as userName".into(),
                count: 2
            }
        );
        let rest: Vec<&str> = grouped[1..].iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            rest,
            [
                "no reason (moved by SQS after maxReceiveCount receives)",
                "target account <id> belongs to another IdP user (okta#example.okta.com#<id>)",
                "target answered 400 for <email>: invalid",
            ]
        );
    }

    #[test]
    fn a_long_reason_is_cut() {
        let masked = mask_ids(&"word ".repeat(100));
        assert_eq!(masked.chars().count(), REASON_CHARS + 1);
        assert!(masked.ends_with('…'));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(12 * 60 + 5), "12 min");
        assert_eq!(duration(5 * 3600), "5 h");
        assert_eq!(duration(27 * 86_400 + 3), "27 d");
        assert_eq!(duration(-3), "0 s");
    }
}
