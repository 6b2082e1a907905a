//! The standalone sweeper: one run at start (to catch up on whatever happened while the relay
//! was down), then one every `sweep.interval_minutes`.

use std::sync::Arc;
use std::time::Duration;

use scim_relay_core::sweeper::{CredentialCheck, SweepReport, Sweeper};
use tokio::sync::{watch, Notify};

use crate::worker_loop::CredentialHealth;

/// What a run means for the rest of the process: the credential verdict, and new work.
pub fn apply(report: &SweepReport, health: &watch::Sender<CredentialHealth>, wake: &Notify) {
    match report.credential {
        CredentialCheck::Rejected { .. } => {
            health.send_replace(CredentialHealth::Rejected);
        }
        CredentialCheck::Accepted => {
            health.send_replace(CredentialHealth::Accepted);
        }
        CredentialCheck::Unavailable { .. } => {}
    }
    wake.notify_one();
}

pub async fn run(
    sweeper: Arc<Sweeper>,
    interval: Duration,
    health: Arc<watch::Sender<CredentialHealth>>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let report = sweeper.run().await;
        apply(&report, &health, &wake);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
}
