//! One worker process: its engine (this file), the state its tasks share
//! (`state.rs`), and the tasks on the tokio runtime — a fetcher per queue (`fetch.rs`),
//! the acker (`acker/`), the heartbeat (`heartbeat.rs`) and the reaper
//! (`reaper.rs`), the scheduler (`scheduler.rs`), the notifier (`notifier.rs`: the one
//! pub/sub subscriber, waking the others), the cron ticker (`cron_ticker.rs`).
//! Executors (Ruby) take jobs from the dispatcher (`dispatch/`, holding up to what
//! `prefetch.rs` allows) and report outcomes (`outcome.rs`) through the engine's
//! methods (`finish.rs`); `ruby/worker.rs` calls nothing else. Beside them: limits per
//! key (`flow/`), the Sidekiq bridge (`sidekiq_bridge.rs`) and the health server
//! (`health.rs`); and, for the bench only, the engine without Ruby (`ceiling.rs`).
//!
//! Lifecycle: `new` (plain values, no I/O) → `start` (spawns the tasks; never waits on
//! Redis, so a worker starts while Redis is down) → executors `take` and report jobs →
//! `request_stop` (from a signal: stops handing out and fetching, gives buffered jobs
//! back at once) → `shutdown` (after the executors are done: waits for the fetchers,
//! flushes outcomes, sweeps whatever is left in this process's processing lists back to
//! the queues, unregisters).

mod acker;
#[cfg(test)]
mod ceiling;
pub mod cron_ticker;
mod dispatch;
mod fetch;
mod finish;
mod flow;
mod health;
mod heartbeat;
mod notifier;
mod outcome;
mod prefetch;
mod reaper;
mod scheduler;
mod sidekiq_bridge;
mod state;

pub use prefetch::Prefetch;

use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::cron_ticker::CronDef;
use self::dispatch::Dispatcher;
pub use self::dispatch::Taken;
use self::outcome::Outcome;
use self::state::WorkerState;
use crate::error::{Error, Result};
use crate::runtime::cancel::Cancel;
use crate::runtime::target::{Target, TargetSettings};
use crate::runtime::{self, Runtime};
use crate::store::keys::Keys;
use crate::store::scripts;

/// What a worker is: where Redis is, who it is, what it works.
pub struct Settings {
    pub target: TargetSettings,
    pub prefix: String,
    /// `host:pid:random`.
    pub identity: String,
    pub queues: Vec<QueueSettings>,
    /// Also work the jobs real Sidekiq clients push (`sidekiq_bridge.rs`).
    pub sidekiq_compat: bool,
    /// `host:port` to serve health checks on (`health.rs`), or None.
    pub health: Option<String>,
}

/// One queue a worker serves: at most `limit` of its jobs run at once, and the process
/// holds at most `prefetch` more, fetched and not started.
pub struct QueueSettings {
    pub name: String,
    pub limit: usize,
    pub prefetch: Prefetch,
}

pub struct Engine {
    state: Arc<WorkerState>,
    rt: Arc<Runtime>,
    outcomes: Mutex<Option<mpsc::UnboundedReceiver<Outcome>>>,
    fetchers: Mutex<Vec<JoinHandle<()>>>,
    /// Heartbeat, scheduler, notifier, reaper, cron ticker: aborted at shutdown.
    background: Mutex<Vec<JoinHandle<()>>>,
    acker: Mutex<Option<JoinHandle<()>>>,
    /// The shutdown's work once begun: it runs on its own, so an interrupted wait for
    /// it (a second TERM) can wait again.
    shutting_down: Mutex<Option<JoinHandle<Result<()>>>>,
    sidekiq_compat: bool,
    /// The health checks' socket, bound at `new` (so a taken port fails there), served
    /// from `start`.
    health: Mutex<Option<std::net::TcpListener>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn new(settings: Settings) -> Result<Engine> {
        if settings.queues.is_empty() {
            return Err(Error::Config("a worker needs at least one queue".into()));
        }
        let redis = Target::new(&settings.target)?;
        let sidekiq_compat = settings.sidekiq_compat;
        let health = match &settings.health {
            Some(addr) => Some(health::bind(addr)?),
            None => None,
        };
        let timeout = settings.target.timeout;
        let rt = runtime::get()?;
        let limits: Vec<(usize, Prefetch)> = settings
            .queues
            .iter()
            .map(|q| (q.limit, q.prefetch))
            .collect();
        let dispatcher = Dispatcher::new(&limits)
            .map_err(|e| Error::Other(format!("cannot create the wake-up socket: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = WorkerState::new(
            Keys::new(&settings.prefix),
            settings.identity,
            settings
                .queues
                .into_iter()
                .map(|q| (q.name, q.limit))
                .collect(),
            dispatcher,
            redis,
            timeout,
            tx,
        );
        Ok(Engine {
            state: Arc::new(state),
            rt,
            outcomes: Mutex::new(Some(rx)),
            fetchers: Mutex::new(Vec::new()),
            background: Mutex::new(Vec::new()),
            acker: Mutex::new(None),
            shutting_down: Mutex::new(None),
            sidekiq_compat,
            health: Mutex::new(health),
        })
    }

    /// Starts the tasks; `cron` lists the cron jobs this worker ticks for (times in
    /// UTC when `utc`, else in the process's local time zone).
    pub fn start(&self, cron: Vec<CronDef>, utc: bool) -> Result<()> {
        let rx = lock(&self.outcomes)
            .take()
            .ok_or_else(|| Error::Other("this worker was already started".into()))?;
        let h = self.rt.tokio.handle();
        let state = &self.state;
        *lock(&self.acker) = Some(h.spawn(acker::run(state.clone(), rx)));
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut background = lock(&self.background);
        background.push(h.spawn(heartbeat::run(state.clone())));
        background.push(h.spawn(scheduler::run(state.clone(), wake.clone())));
        background.push(h.spawn(notifier::run(state.clone(), wake)));
        background.push(h.spawn(reaper::run(state.clone())));
        if !cron.is_empty() {
            background.push(h.spawn(cron_ticker::run(state.clone(), cron, utc)));
        }
        if self.sidekiq_compat {
            background.push(h.spawn(sidekiq_bridge::run(state.clone())));
        }
        if let Some(listener) = lock(&self.health).take() {
            background.push(h.spawn(health::serve(state.clone(), listener)));
        }
        let mut fetchers = lock(&self.fetchers);
        for q in 0..state.queues.len() {
            fetchers.push(h.spawn(fetch::run(state.clone(), q)));
        }
        Ok(())
    }

    /// This process's name in Redis.
    pub fn identity(&self) -> &str {
        &self.state.identity
    }

    /// The name of queue number `q`.
    pub fn queue_name(&self, q: usize) -> &str {
        &self.state.queues[q]
    }

    // --- what executors call ------------------------------------------------------

    /// Up to `max` jobs that may start now, without waiting (fiber executor). When there
    /// are none, the next change writes a byte to `wake_socket`.
    pub fn take(&self, max: usize) -> Vec<Taken> {
        let taken = self.state.dispatcher.take(max);
        taken.iter().for_each(|t| self.started(t));
        taken
    }

    /// `take(1)`, without a Vec.
    pub fn take_one(&self) -> Option<Taken> {
        let taken = self.state.dispatcher.take_one();
        taken.iter().for_each(|t| self.started(t));
        taken
    }

    /// A job is handed out: a unique job with `until: :start` frees its lock now.
    fn started(&self, job: &Taken) {
        if let Some(digest) = &job.unlock_at_start {
            self.state.report(Outcome::Unlock {
                q: job.queue,
                digest: digest.clone(),
                jid: job.jid.to_string(),
            });
        }
    }

    /// A throttled job's perform begins (its executor calls this right before it): its
    /// start is logged, and counts from now (until now it held its place:
    /// `store::flow_scripts`). A job taken behind one that holds the CPU thus counts
    /// from when it really starts. A no-op for other jobs, or a second call.
    pub fn begin(&self, id: u64) {
        if let Some((q, key, per, log)) = self.state.dispatcher.begin(id) {
            self.state.report(Outcome::Started { q, key, log, per });
        }
    }

    /// Waits up to `timeout` for a job that may start (thread executor; call without the
    /// GVL). `None` after the timeout, a stop, or `cancel`.
    pub fn take_blocking(&self, timeout: Duration, cancel: &AtomicBool) -> Option<Taken> {
        let taken = self.state.dispatcher.take_blocking(timeout, cancel);
        taken.iter().for_each(|t| self.started(t));
        taken
    }

    /// Waits up to `timeout` for the worker to stop; true once it has.
    pub fn wait_stopping(&self, timeout: Duration, cancel: &AtomicBool) -> bool {
        self.state.dispatcher.wait_stopping(timeout, cancel)
    }

    /// Wakes every thread waiting in `take_blocking` or `wait_stopping` (unblock
    /// functions call this after setting their flag).
    pub fn interrupt(&self) {
        self.state.dispatcher.interrupt()
    }

    /// The socket the fiber executor waits on when `take` found nothing.
    pub fn wake_socket(&self) -> &UnixStream {
        self.state.dispatcher.wake_socket()
    }

    /// The stored payload of a busy job (for server middleware).
    pub fn payload(&self, id: u64) -> Option<String> {
        self.state.dispatcher.payload(id)
    }

    /// The batch of the busy job `jid` (`Job#bid`).
    pub fn batch_of(&self, jid: &str) -> Option<String> {
        self.state
            .dispatcher
            .busy_by_jid(jid, |j| j.parsed.bid.as_deref().map(str::to_string))
            .flatten()
    }

    /// The payload of the busy job `jid` (a Sidekiq job's `retry`).
    pub fn busy_payload(&self, jid: &str) -> Option<String> {
        self.state.dispatcher.busy_by_jid(jid, |j| j.raw.clone())
    }

    /// The executor is responsive (`health.rs`'s `/live`).
    pub fn pulse(&self) {
        self.state.pulses.executor_pulse();
    }

    pub fn is_stopping(&self) -> bool {
        self.state.dispatcher.is_stopping()
    }

    /// Stop handing out and fetching; give buffered, unstarted jobs back now. Safe to
    /// call from a signal trap: it only takes a short lock and queues a message.
    pub fn request_stop(&self) {
        self.state.dispatcher.stop();
        self.give_back_buffered();
    }

    /// Quiet (TSTP): no more fetching or starting; buffered jobs go back now.
    pub fn quiet(&self) {
        self.state.dispatcher.quiet();
        self.give_back_buffered();
    }

    fn give_back_buffered(&self) {
        let mut by_queue: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.state.queues.len()];
        for job in self.state.dispatcher.drain_buffers() {
            by_queue[job.queue].push(job.raw.into_bytes());
        }
        for (q, raws) in by_queue.into_iter().enumerate() {
            if !raws.is_empty() {
                self.state.report(Outcome::GivenBack { q, raws });
            }
        }
    }

    /// Finishes a stopped worker (blocking; call without the GVL once no job runs).
    /// `Ok(None)`: `cancel` ended the wait, and the shutdown goes on; call again to
    /// wait for it.
    pub fn shutdown(&self, cancel: &Cancel) -> Result<Option<()>> {
        let mut task = lock(&self.shutting_down)
            .take()
            .unwrap_or_else(|| self.begin_shutdown());
        match self.rt.tokio.block_on(cancel.run(&mut task)) {
            Some(Ok(done)) => done.map(Some),
            Some(Err(e)) => Err(Error::Other(format!("shutdown failed: {e}"))),
            None => {
                *lock(&self.shutting_down) = Some(task);
                Ok(None)
            }
        }
    }

    fn begin_shutdown(&self) -> JoinHandle<Result<()>> {
        self.request_stop();
        let state = self.state.clone();
        let fetchers: Vec<_> = lock(&self.fetchers).drain(..).collect();
        let background: Vec<_> = lock(&self.background).drain(..).collect();
        let acker = lock(&self.acker).take();
        let work = async move {
            for f in fetchers {
                let _ = f.await;
            }
            // Anything a fetcher delivered while stopping was given back by `buffer`;
            // this catches a buffer filled between the stop and the fetcher's end.
            let (tx, rx) = oneshot::channel();
            state.report(Outcome::Flush(tx));
            // Bounded: with Redis down, what is left stays in the processing list for
            // another worker to recover.
            let flushed = tokio::time::timeout(state.timeout * 2, rx).await.is_ok();
            for h in background {
                h.abort();
            }
            if let Some(h) = acker {
                h.abort();
            }
            if !flushed {
                return Err(Error::Connection(
                    "Redis did not take this worker's last results before shutdown; its unacknowledged jobs stay in its processing list and are recovered by another worker".into(),
                ));
            }
            sweep_and_unregister(&state).await
        };
        self.rt.tokio.spawn(work)
    }
}

/// Moves whatever is left in this process's processing lists and held sets back to
/// the front of their queues, then removes the process's registration.
async fn sweep_and_unregister(state: &WorkerState) -> Result<()> {
    let mut conn = state.redis.connect(None).await?;
    for (q, queue) in state.queues.iter().enumerate() {
        let moved: i64 = scripts::SWEEP
            .key(state.keys.queue(queue))
            .key(state.processing_key(q))
            .key(state.held_key(q))
            .invoke_async(&mut conn)
            .await?;
        if moved > 0 {
            tracing::info!("put {moved} unfinished job(s) back on queue {queue:?}");
        }
    }
    redis::pipe()
        .cmd("SREM")
        .arg(state.keys.processes())
        .arg(&state.identity)
        .ignore()
        .cmd("DEL")
        .arg(state.keys.process(&state.identity))
        .ignore()
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}
