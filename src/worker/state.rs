//! The state a worker's tasks share: its identity and queues, the dispatcher, the Redis
//! client its tasks open connections from, and the channel to the acker. Tasks (fetch,
//! acker, heartbeat, reaper, scheduler, cron ticker) depend on this module, never on
//! the engine that spawns them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::dispatch::Dispatcher;
use super::outcome::Outcome;
use crate::batch::End;
use crate::runtime::target::Target;
use crate::store::keys::Keys;
use crate::store::payload::{self, Parsed};

pub struct WorkerState {
    pub keys: Keys,
    /// `host:pid:random`, this process's name in Redis.
    pub identity: String,
    /// Queue names, in the worker's order; tasks refer to a queue by its index.
    pub queues: Vec<String>,
    /// Each queue's concurrency.
    pub limits: Vec<usize>,
    pub dispatcher: Dispatcher,
    /// Where every task opens its connections (re-resolving a Sentinel master).
    pub redis: Target,
    /// `network_timeout`: connect and reply deadlines.
    pub timeout: Duration,
    /// Each queue's processing list of this process.
    processing: Vec<String>,
    /// Each queue's held set of this process (see `Keys::held`).
    held: Vec<String>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// Set once the first heartbeat registered this process: fetchers wait for it, so
    /// no processing list exists that the reaper could not find.
    registered: watch::Sender<bool>,
    /// Per queue: wakes its idle fetcher (a message on the ready channel).
    ready: Vec<Notify>,
    /// whether the notifier is subscribed to the ready channel; without it idle
    /// fetchers poll every second.
    listening: watch::Sender<bool>,
    /// Per queue: a job was scheduled or a retry was set since the scheduler looked.
    scheduled: Vec<AtomicBool>,
    /// A queue was paused or resumed (a message): the heartbeat re-reads the paused set
    /// now instead of at its next beat.
    pause_news: Notify,
    /// When the executor and the heartbeat last showed life (health checks).
    pub pulses: Pulses,
}

impl WorkerState {
    pub fn new(
        keys: Keys,
        identity: String,
        queues: Vec<(String, usize)>,
        dispatcher: Dispatcher,
        redis: Target,
        timeout: Duration,
        outcomes: mpsc::UnboundedSender<Outcome>,
    ) -> WorkerState {
        let count = queues.len();
        WorkerState {
            processing: queues
                .iter()
                .map(|(name, _)| keys.processing(name, &identity))
                .collect(),
            held: queues
                .iter()
                .map(|(name, _)| keys.held(name, &identity))
                .collect(),
            limits: queues.iter().map(|(_, limit)| *limit).collect(),
            queues: queues.into_iter().map(|(name, _)| name).collect(),
            keys,
            identity,
            dispatcher,
            redis,
            timeout,
            outcomes,
            registered: watch::channel(false).0,
            ready: (0..count).map(|_| Notify::new()).collect(),
            listening: watch::channel(false).0,
            scheduled: (0..count).map(|_| AtomicBool::new(true)).collect(),
            pause_news: Notify::new(),
            pulses: Pulses::default(),
        }
    }

    /// Hands an outcome to the acker.
    pub fn report(&self, outcome: Outcome) {
        // Fails only after shutdown closed the acker; nothing is reported then.
        let _ = self.outcomes.send(outcome);
    }

    /// A member of a batch ended its run as `end`: call before reporting the job's own
    /// outcome (see `Outcome::BatchEnd`).
    pub fn batch_end(&self, job: &Parsed, end: End) {
        if let Some(bid) = &job.bid {
            self.report(Outcome::BatchEnd {
                bid: bid.clone(),
                jid: job.jid.to_string(),
                end,
            });
        }
    }

    /// A run of a job of queue `q` is over (after its outcome was reported): its
    /// concurrency lease ends, and, when the job is done for good (`done`), its unique
    /// lock is freed.
    pub fn run_over(&self, q: usize, job: &Parsed, done: bool) {
        if let Some(unlock) = Outcome::unlock(q, job).filter(|_| done) {
            self.report(unlock);
        }
        if let Some(lease) = Outcome::end_lease(q, job) {
            self.report(lease);
        }
    }

    /// Queue `q`'s processing list of this process.
    pub fn processing_key(&self, q: usize) -> &str {
        &self.processing[q]
    }

    /// Queue `q`'s held set of this process.
    pub fn held_key(&self, q: usize) -> &str {
        &self.held[q]
    }

    /// Records that this process is registered; true the first time.
    pub fn mark_registered(&self) -> bool {
        !self.registered.send_replace(true)
    }

    pub fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// Wakes queue `q`'s fetcher if it is idle (or makes its next idle wait return).
    pub fn wake(&self, q: usize) {
        self.ready[q].notify_one();
    }

    /// Wakes every idle fetcher: after the notifier (re)subscribed or lost its
    /// subscription, each looks at its queue again.
    pub fn wake_all(&self) {
        self.ready.iter().for_each(Notify::notify_one);
    }

    /// Waits until queue `q` may have jobs: a wake-up, or `backstop` at the latest —
    /// one second while the notifier is not subscribed.
    pub async fn idle(&self, q: usize, backstop: Duration) {
        let wait = if *self.listening.borrow() {
            backstop
        } else {
            Duration::from_secs(1)
        };
        let _ = tokio::time::timeout(wait, self.ready[q].notified()).await;
    }

    /// Records whether the channels are subscribed, wakes every fetcher and marks
    /// every queue for the scheduler: messages may have been missed.
    pub fn set_listening(&self, on: bool) {
        self.listening.send_replace(on);
        self.scheduled
            .iter()
            .for_each(|m| m.store(true, Ordering::Release));
        self.wake_all();
    }

    pub fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// Marks queue `q` for the scheduler's next pass.
    pub fn mark_scheduled(&self, q: usize) {
        self.scheduled[q].store(true, Ordering::Release);
    }

    /// Whether queue `q` was marked, clearing the mark.
    pub fn take_scheduled_mark(&self, q: usize) -> bool {
        self.scheduled[q].swap(false, Ordering::AcqRel)
    }

    /// Applies the paused set as the heartbeat read it: a queue paused starts no job
    /// here any more, and its buffered jobs go back to the queue's front at once; a
    /// queue resumed is fetched again. Logged when a queue's state changes.
    pub fn apply_paused(&self, paused: &[String]) {
        for (q, queue) in self.queues.iter().enumerate() {
            let pause = paused.contains(queue);
            let Some(drained) = self.dispatcher.set_paused(q, pause) else {
                continue;
            };
            if pause {
                tracing::info!(
                    "queue {queue:?} is paused: no new job of it starts until it is resumed"
                );
            } else {
                tracing::info!("queue {queue:?} is resumed");
            }
            if !drained.is_empty() {
                let raws = drained.into_iter().map(|j| j.raw.into_bytes()).collect();
                self.report(Outcome::GivenBack { q, raws });
            }
        }
    }

    /// A pause or resume was announced.
    pub fn pause_announced(&self) {
        self.pause_news.notify_one();
    }

    /// Returns after `wait`, or sooner when a pause or resume was announced: then true.
    pub async fn beat_pause(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.pause_news.notified())
            .await
            .is_ok()
    }

    pub async fn wait_registered(&self) {
        let mut rx = self.registered.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// Epoch milliseconds of events the health checks (`health.rs`) look at.
#[derive(Default)]
pub struct Pulses {
    /// The executor's last pulse (0: none yet).
    executor: AtomicU64,
    /// The last heartbeat Redis took.
    beat: AtomicU64,
}

fn now_ms() -> u64 {
    (payload::now() * 1000.0) as u64
}

impl Pulses {
    pub fn executor_pulse(&self) {
        self.executor.store(now_ms(), Ordering::Relaxed);
    }

    pub fn beat(&self) {
        self.beat.store(now_ms(), Ordering::Relaxed);
    }

    /// How long ago the executor last pulsed (None: never).
    pub fn executor_age(&self) -> Option<Duration> {
        age(&self.executor)
    }

    /// How long ago Redis last took a heartbeat (None: never).
    pub fn beat_age(&self) -> Option<Duration> {
        age(&self.beat)
    }
}

fn age(at: &AtomicU64) -> Option<Duration> {
    match at.load(Ordering::Relaxed) {
        0 => None,
        t => Some(Duration::from_millis(now_ms().saturating_sub(t))),
    }
}
