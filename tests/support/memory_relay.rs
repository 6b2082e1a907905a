//! The memory backend: the core's engine on the in-memory queue, store and SCIM target, worked
//! by the same claim loop as the standalone server, with the standalone's consumer policy.

use std::sync::Arc;
use std::time::Duration;

use scim_relay_core::claim_loop;
use scim_relay_core::clock::Clock;
use scim_relay_core::config::Settings;
use scim_relay_core::ingress::Ingress;
use scim_relay_core::memory::{MemoryQueue, MemoryStore, MemoryTarget};
use scim_relay_core::sweeper::{SweepReport, Sweeper};
use scim_relay_core::wiring;
use scim_relay_server::RetryPolicy;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Retries a test can wait for: milliseconds, not minutes.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        idle_poll: Duration::from_millis(20),
        credential_pause: Duration::from_millis(50),
        lease: Duration::from_secs(2),
    }
}

pub struct MemoryRelay {
    pub queue: MemoryQueue,
    pub store: MemoryStore,
    /// The in-process target; `None` when the settings name one reached over HTTP.
    target: Option<MemoryTarget>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    ingress: Ingress,
    sweeper: Arc<Sweeper>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl MemoryRelay {
    pub fn start(
        settings: &Settings,
        target: Option<MemoryTarget>,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Self {
        Self::on(
            settings,
            target,
            clock,
            retry,
            MemoryQueue::default(),
            MemoryStore::new(),
        )
    }

    /// The engine and two claim loops on an existing queue and store.
    fn on(
        settings: &Settings,
        target: Option<MemoryTarget>,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
        queue: MemoryQueue,
        store: MemoryStore,
    ) -> Self {
        let mut outbound = wiring::outbound(settings).expect("outbound clients");
        if let Some(target) = &target {
            outbound.target = Arc::new(target.clone());
        }
        let engine = wiring::engine(
            settings,
            &outbound,
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            clock.clone(),
            retry.consumer(),
        )
        .expect("engine builds");
        let consumer = Arc::new(engine.consumer);
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let tasks = (0..2)
            .map(|_| {
                tokio::spawn(claim_loop::run(
                    consumer.clone(),
                    Arc::new(queue.clone()),
                    retry.timing(),
                    wake.clone(),
                    stopped.clone(),
                    |_| {},
                ))
            })
            .collect();
        Self {
            ingress: crate::deployment::ingress_on(
                settings,
                Arc::new(queue.clone()),
                clock.clone(),
            ),
            queue,
            store,
            target,
            clock,
            retry,
            sweeper: engine.sweeper,
            wake,
            stop,
            tasks,
        }
    }

    /// A new process on the same queue and store, with `settings`.
    pub async fn restart(&mut self, settings: &Settings) {
        self.stop().await;
        *self = Self::on(
            settings,
            self.target.clone(),
            self.clock.clone(),
            self.retry,
            self.queue.clone(),
            self.store.clone(),
        );
    }

    pub async fn drain(&self, timeout: Duration) -> bool {
        self.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.queue.depth().0 == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    pub async fn engine_sweep(&self) -> SweepReport {
        self.engine_sweep_until(None).await
    }

    pub async fn engine_sweep_until(&self, deadline: Option<std::time::Instant>) -> SweepReport {
        let report = self.sweeper.run_until(deadline).await;
        self.wake.notify_waiters();
        report
    }

    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

#[async_trait::async_trait]
impl crate::relay::RelayUnderTest for MemoryRelay {
    async fn restart(&mut self, settings: &Settings) {
        MemoryRelay::restart(self, settings).await
    }

    fn store(&self) -> Arc<dyn scim_relay_core::state::SweepStore> {
        Arc::new(self.store.clone())
    }

    fn breaker(&self) -> Arc<dyn scim_relay_core::breaker::CredentialBreaker> {
        Arc::new(self.store.clone())
    }

    fn work_queue(&self) -> Arc<dyn scim_relay_core::queue::Queue> {
        Arc::new(self.queue.clone())
    }

    fn console(
        &self,
        _settings: &Settings,
        target: &crate::target::Target,
    ) -> Result<scim_relay_server::console::Console, String> {
        let console = scim_relay_server::console::Console::new(
            Arc::new(self.store.clone()),
            Arc::new(self.queue.clone()),
            Arc::new(self.queue.clone()),
        );
        // The in-memory provider is reached in-process, never by the settings' URL.
        Ok(match target.memory_target() {
            Some(target) => console.with_target(Arc::new(target)),
            None => console,
        })
    }

    async fn fail_account_commits(&self, failing: bool) {
        self.store.fail_account_commits(failing)
    }

    async fn request(&self, req: scim_relay_core::ingress::IngressRequest) -> crate::relay::Answer {
        // No HTTP front in memory: the ingress's own answer.
        let answer = self.ingress.handle(req).await;
        crate::relay::Answer {
            status: answer.status,
            body: answer.body,
            headers: vec![("content-type".into(), answer.content_type.into())],
        }
    }

    async fn drain(&self, timeout: Duration) -> bool {
        MemoryRelay::drain(self, timeout).await
    }

    async fn depth(&self) -> (u64, u64) {
        self.queue.depth()
    }

    async fn dead_letters(&self) -> Vec<String> {
        self.queue.dead_letter_reasons()
    }

    async fn dead_letter_bodies(&self) -> Vec<String> {
        self.queue.dead_letter_bodies()
    }

    async fn redrive(&self) -> usize {
        self.queue.redrive_dead_letters()
    }

    async fn sweep(&self) -> SweepReport {
        self.engine_sweep().await
    }

    async fn sweep_until(&self, deadline: std::time::Instant) -> SweepReport {
        self.engine_sweep_until(Some(deadline)).await
    }

    async fn finish(&mut self) {
        self.stop().await
    }
}
