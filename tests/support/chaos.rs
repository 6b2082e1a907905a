//! The chaos run's model, shared by its drivers (the standalone server on SQLite, the Lambda
//! handlers on AWS): a generated Okta directory, a random script of changes (create, profile
//! update, suspend, deactivate, reactivate, delete, group joins and leaves) whose deliveries are
//! duplicated, reordered, dropped and replayed late, and the check that every user on the
//! target is what the directory says.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::idp::IdpFixture;

pub const STAFF: &str = "00gSTAFF";
pub const ENG: &str = "00gENG";

/// What every chaos run sets, whatever its backend: an Okta directory scoped by two groups and
/// mirrored as SCIM groups, a short target timeout (so lost answers happen), and the
/// deprovisioning breaker out of the way: a chaos script deactivates far more than 10 users an
/// hour, and the property checked here is convergence (the breaker has its own behaviours).
pub fn chaos_settings(s: &mut scim_relay_core::config::Settings) {
    s.target.profile = scim_relay_core::config::TargetProfile::Generic;
    s.entra.client_id = None;
    s.okta.group_ids = vec![STAFF.into(), ENG.into()];
    s.target.sync_groups = true;
    s.target.timeout = std::time::Duration::from_secs(1);
    s.target.deprovision_limit = 1_000_000;
}

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the directory holds for one user, as the script leaves it.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub status: Option<&'static str>,
    pub deleted: bool,
    pub title: u32,
    pub eng: bool,
}

impl Person {
    pub fn email(i: usize) -> String {
        format!("chaos.{i:05}@example.com")
    }

    pub fn id(i: usize) -> String {
        format!("00uCHAOS{i:05}")
    }
}

pub struct ChaosDirectory {
    pub idp: IdpFixture,
    /// The model: each user as the whole script leaves them.
    pub people: Vec<Person>,
    /// Changes decided but not yet written to the fixture, oldest first.
    pending: Vec<(usize, Person)>,
}

impl ChaosDirectory {
    /// `users` people, none of them in the directory yet.
    pub fn new(idp: IdpFixture, users: usize) -> Self {
        Self {
            idp,
            people: vec![Person::default(); users],
            pending: Vec::new(),
        }
    }

    fn write_state(&self, i: usize, p: &Person) {
        let (id, email) = (Person::id(i), Person::email(i));
        if p.deleted {
            self.idp.remove_okta_user(&id);
            return;
        }
        let title = format!("Title {}", p.title);
        self.idp.set_okta_user(
            &id,
            p.status.unwrap_or("ACTIVE"),
            Some(&email),
            "Chaos",
            &format!("User{i}"),
            Some(&title),
        );
        let groups: &[&str] = if p.eng { &[STAFF, ENG] } else { &[STAFF] };
        self.idp.set_okta_groups(&id, groups);
    }

    /// One random change to user `i` in the model (the fixture is written by [`Self::apply`]
    /// when the change's round comes); the event Okta would send.
    pub fn change_later(&mut self, i: usize, rng: &mut fastrand::Rng) -> Option<&'static str> {
        let p = self.people[i].clone();
        let event = match (p.status, p.deleted) {
            (_, true) => return None,
            (None, _) => {
                self.people[i].status = Some("ACTIVE");
                "user.lifecycle.create"
            }
            (Some("ACTIVE"), _) => match rng.u8(0..10) {
                0..=3 => {
                    self.people[i].title += 1;
                    "user.account.update_profile"
                }
                4..=5 => {
                    self.people[i].eng = !p.eng;
                    if p.eng {
                        "group.user_membership.remove"
                    } else {
                        "group.user_membership.add"
                    }
                }
                6..=7 => {
                    self.people[i].status = Some("SUSPENDED");
                    "user.lifecycle.suspend"
                }
                _ => {
                    self.people[i].status = Some("DEPROVISIONED");
                    "user.lifecycle.deactivate"
                }
            },
            (Some("SUSPENDED"), _) => {
                if rng.bool() {
                    self.people[i].status = Some("ACTIVE");
                    "user.lifecycle.unsuspend"
                } else {
                    self.people[i].status = Some("DEPROVISIONED");
                    "user.lifecycle.deactivate"
                }
            }
            (Some(_), _) => {
                if rng.bool() {
                    self.people[i].status = Some("ACTIVE");
                    "user.lifecycle.activate"
                } else {
                    self.people[i].deleted = true;
                    "user.lifecycle.delete.initiated"
                }
            }
        };
        self.pending.push((i, self.people[i].clone()));
        Some(event)
    }

    /// Writes the oldest unwritten change of user `i` to the fixture.
    pub fn apply(&mut self, i: usize) {
        if let Some(at) = self.pending.iter().position(|(u, _)| *u == i) {
            let (_, state) = self.pending.remove(at);
            self.write_state(i, &state);
        }
    }
}

/// One round of the script: the users it changes (in order), and the deliveries that arrive,
/// as (event uuid, event type, user index).
pub type Round = (Vec<usize>, Vec<(String, &'static str, usize)>);

/// The whole script of a run.
pub struct ChaosScript {
    pub rounds: Vec<Round>,
    /// Changes that change the target (a deletion after a deactivation does not).
    pub real_changes: usize,
    pub dropped: usize,
    /// Deliveries sent once more at the very end, long after.
    pub late: Vec<(String, &'static str, usize)>,
    /// Users with at least one event never delivered: only reconciliation can bring them right.
    pub lost: HashSet<usize>,
}

impl ChaosScript {
    /// Every user is created, then random changes, in rounds of eight. Each round changes the
    /// directory, then its events arrive shuffled; each event is dropped (10%) or sent twice
    /// (25%), and a tenth are sent once more at the very end.
    pub fn generate(
        dir: &mut ChaosDirectory,
        steps: usize,
        seed: u64,
        rng: &mut fastrand::Rng,
    ) -> Self {
        let users = dir.people.len();
        let mut script = Self {
            rounds: Vec::new(),
            real_changes: 0,
            dropped: 0,
            late: Vec::new(),
            lost: HashSet::new(),
        };
        let order: Vec<usize> = (0..users)
            .chain((0..steps.saturating_sub(users)).map(|_| rng.usize(0..users)))
            .collect();
        let (mut changed, mut round) = (Vec::new(), Vec::new());
        for (n, i) in order.into_iter().enumerate() {
            let before = dir.people[i].clone();
            let Some(event) = dir.change_later(i, rng) else {
                continue;
            };
            if !(before.status == Some("DEPROVISIONED") && dir.people[i].deleted) {
                script.real_changes += 1;
            }
            changed.push(i);
            let uuid = format!("chaos-{seed}-{n}");
            if rng.f64() < 0.10 {
                script.dropped += 1;
                script.lost.insert(i);
            } else {
                round.push((uuid.clone(), event, i));
                if rng.f64() < 0.25 {
                    round.push((uuid.clone(), event, i));
                }
                if rng.f64() < 0.10 {
                    script.late.push((uuid, event, i));
                }
            }
            if changed.len() >= 8 {
                rng.shuffle(&mut round);
                script
                    .rounds
                    .push((std::mem::take(&mut changed), std::mem::take(&mut round)));
            }
        }
        rng.shuffle(&mut round);
        script.rounds.push((changed, round));
        script
    }

    pub fn deliveries(&self) -> usize {
        self.rounds.iter().map(|(_, d)| d.len()).sum()
    }
}

/// The users (among those `which` selects) whose account on the target is not what the
/// directory says: active flag, title, and membership of ENG. `on_target` holds the target's
/// account by userName, `eng_members` the ENG group's member ids.
pub fn differing(
    people: &[Person],
    on_target: &HashMap<String, Value>,
    eng_members: &HashSet<String>,
    which: impl Fn(usize) -> bool,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (i, p) in people.iter().enumerate().filter(|(i, _)| which(*i)) {
        let account = on_target.get(&Person::email(i));
        let should_be_active = !p.deleted && p.status == Some("ACTIVE");
        let ok = match (account, should_be_active) {
            (None, false) => true,
            (None, true) => false,
            (Some(u), false) => u["active"] == false,
            (Some(u), true) => {
                let id = u["id"].as_str().unwrap_or_default();
                u["active"] == true
                    && u["title"] == format!("Title {}", p.title)
                    && eng_members.contains(id) == p.eng
            }
        };
        if !ok {
            wrong.push(format!("{i}: {p:?} vs {account:?}"));
        }
    }
    wrong
}

/// What the target holds for the run's users: each account by userName, and the ENG group's
/// member ids.
pub async fn accounts_on(
    target: &crate::target::Target,
    people: &[Person],
) -> (HashMap<String, Value>, HashSet<String>) {
    let mut accounts = HashMap::new();
    for i in 0..people.len() {
        if let Some(u) = target.user(&Person::email(i)).await {
            accounts.insert(Person::email(i), u);
        }
    }
    let eng = target
        .group_members(ENG)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    (accounts, eng)
}

/// [`differing`], read from the target.
pub async fn differing_on(
    target: &crate::target::Target,
    people: &[Person],
    which: impl Fn(usize) -> bool,
) -> Vec<String> {
    let (accounts, eng) = accounts_on(target, people).await;
    differing(people, &accounts, &eng, which)
}
