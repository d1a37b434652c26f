//! The in-memory hand-off between tokio fetchers and Ruby executors.
//!
//! Fetchers `buffer` jobs they moved from Redis, per queue; executors `take`
//! them. A job is handed out only while its queue runs fewer than `limit` jobs, so the
//! per-queue concurrency limit is exact: it is a counter under one mutex, not a hope.
//! A fetcher asks for `capacity` first, so a process never holds more than
//! `limit + prefetch` jobs of a queue (busy plus buffered); `prefetch.rs` says how
//! deep the default (`Auto`) goes.
//!
//! Waking: thread executors wait on a `Condvar` (without the GVL); the fiber executor
//! waits on the read end of a socketpair (an IO its scheduler understands), to which a
//! byte is written when work may be available and it said it was waiting.
//!
//! Submodules: `tests`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::prefetch::{Depth, Prefetch};
use crate::store::flow_scripts::THROTTLE_HOLD_SECS;
use crate::store::payload::{Args, ClassName, Jid, Parsed};

/// A held job (ARCHITECTURE.md, "Words"): taken from Redis by this process (so in its
/// held set or processing list), buffered or busy, until it is acked or given back.
/// A concurrency lease a held job has on its key (`limits_concurrency`), renewed by
/// the heartbeat (`flow/leases.rs`).
#[derive(Debug)]
pub struct Lease {
    pub queue: usize,
    pub kind: LeaseKind,
    /// The limit's key (its name in `Keys::concurrency` or `Keys::throttle`).
    pub key: String,
    /// The member renewed: the jid, or a start log's member.
    pub member: String,
    pub seconds: f64,
}

/// What a `Lease` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// A slot of a concurrency key, for as long as the job runs.
    Concurrency,
    /// A throttled job's hold in its throttle's start log, until it starts.
    ThrottleHold,
}

#[derive(Debug)]
pub struct HeldJob {
    pub id: u64,
    pub queue: usize,
    pub raw: String,
    pub parsed: Parsed,
    /// When it was handed out (None while buffered); once finished, how long it ran
    /// is in `ran_for`.
    pub started: Option<Instant>,
    pub ran_for: Option<Duration>,
    /// In the processing list rather than the held set (see `Keys::held`).
    pub listed: bool,
    /// A throttled job whose perform has not begun: it holds its place in its
    /// throttle's start log (renewed with the leases) until `begin` logs its start.
    pub holding: bool,
}

/// What an executor gets: plain data, converted to Ruby objects once the GVL is held.
#[derive(Debug)]
pub struct Taken {
    pub id: u64,
    pub queue: usize,
    pub class: ClassName,
    pub args: Args,
    pub jid: Jid,
    pub retry_count: u64,
    /// A unique job whose lock is freed when it starts: its digest.
    pub unlock_at_start: Option<String>,
    /// A throttled job: its start is logged when its perform begins (`begin`).
    pub throttled: bool,
}

struct QueueState {
    limit: usize,
    prefetch: Depth,
    buffer: VecDeque<HeldJob>,
    busy: usize,
    /// `Queue.pause`d: nothing is fetched or started (running jobs go on).
    paused: bool,
}

impl QueueState {
    /// How many jobs the fetcher should take now: the room left, once it is worth a
    /// round trip — half the prefetch depth at least (fetching each job as its slot
    /// freed cost 10 ms jobs a round trip each). An empty buffer always leaves that much
    /// room, so the buffer refills before it runs dry.
    fn to_fetch(&self) -> usize {
        if self.paused {
            return 0;
        }
        let extra = self.prefetch.extra(self.limit);
        let room = (self.limit + extra).saturating_sub(self.busy + self.buffer.len());
        if room >= extra.div_ceil(2) {
            room
        } else {
            0
        }
    }
}

/// The busy jobs by id, hashed cheaply (`hashers::Ids`).
type BusyJobs = HashMap<u64, HeldJob, crate::hashers::BuildIds>;

struct State {
    queues: Vec<QueueState>,
    busy_jobs: BusyJobs,
    next_id: u64,
    stopping: bool,
    quiet: bool,
    /// The fiber executor found nothing and waits for a byte on the wake socket.
    waiting: bool,
    /// Where the next `take` starts looking, so one busy queue cannot starve another.
    next_queue: usize,
}

pub struct Dispatcher {
    state: Mutex<State>,
    cond: Condvar,
    space: Vec<tokio::sync::Notify>,
    stop_notify: tokio::sync::Notify,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl Dispatcher {
    /// `queues` holds (limit, prefetch) per queue, in the worker's queue order.
    pub fn new(queues: &[(usize, Prefetch)]) -> std::io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Dispatcher {
            state: Mutex::new(State {
                queues: queues
                    .iter()
                    .map(|&(limit, prefetch)| QueueState {
                        limit,
                        prefetch: Depth::new(prefetch),
                        buffer: VecDeque::new(),
                        busy: 0,
                        paused: false,
                    })
                    .collect(),
                busy_jobs: BusyJobs::default(),
                next_id: 1,
                stopping: false,
                quiet: false,
                waiting: false,
                next_queue: 0,
            }),
            cond: Condvar::new(),
            space: queues.iter().map(|_| tokio::sync::Notify::new()).collect(),
            stop_notify: tokio::sync::Notify::new(),
            wake_tx,
            wake_rx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug elsewhere; the state itself stays
        // consistent (every mutation is a few field updates), so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The read end the fiber executor waits on.
    pub fn wake_socket(&self) -> &UnixStream {
        &self.wake_rx
    }

    fn wake(&self, st: &mut State) {
        if st.waiting {
            st.waiting = false;
            // A full socket already holds a pending wake-up, so WouldBlock is fine.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    /// How many more jobs of queue `q` a fetcher may take now; `None` once stopping.
    pub fn capacity(&self, q: usize) -> Option<usize> {
        let st = self.lock();
        if st.stopping {
            return None;
        }
        if st.quiet {
            return Some(0);
        }
        Some(st.queues[q].to_fetch())
    }

    /// A fetch of queue `q` took `took` from its issue to its jobs in the buffer (what
    /// `:auto` prefetch must cover; see `prefetch.rs`), its payloads `bytes` on average.
    pub fn fetched(&self, q: usize, took: std::time::Duration, bytes: usize) {
        self.lock().queues[q].prefetch.fetched(took, bytes);
    }

    /// Waits until queue `q` has room worth a fetch; `None` once stopping.
    pub async fn wait_capacity(&self, q: usize) -> Option<usize> {
        loop {
            let notified = self.space[q].notified();
            match self.capacity(q) {
                Some(0) => notified.await,
                other => return other,
            }
        }
    }

    /// Returns once the worker stops (for waits that must end on a stop).
    pub async fn stopped(&self) {
        let notified = self.stop_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.is_stopping() {
            notified.await;
        }
    }

    /// Adds fetched jobs to queue `q`'s buffer. Once stopping or quiet they are not
    /// buffered but returned, for the caller to give back to Redis.
    /// Each job comes with whether it is in the processing list (else the held set).
    pub fn buffer(&self, q: usize, jobs: Vec<(String, Parsed, bool)>) -> Vec<HeldJob> {
        let mut st = self.lock();
        let mut out = Vec::new();
        for (raw, parsed, listed) in jobs {
            let id = st.next_id;
            st.next_id += 1;
            let holding = parsed.throttle().is_some();
            let job = HeldJob {
                id,
                queue: q,
                raw,
                parsed,
                started: None,
                ran_for: None,
                listed,
                holding,
            };
            if st.stopping || st.quiet || st.queues[q].paused {
                out.push(job);
            } else {
                st.queues[q].buffer.push_back(job);
            }
        }
        self.cond.notify_all();
        self.wake(&mut st);
        out
    }

    /// The next job of queue `q` that may start now, handed out: counted busy, its
    /// arguments moved to the `Taken` (the in-flight job keeps its raw payload).
    fn take_from(st: &mut State, q: usize) -> Option<Taken> {
        let qs = &mut st.queues[q];
        if qs.busy >= qs.limit || qs.paused {
            return None;
        }
        let mut job = qs.buffer.pop_front()?;
        qs.busy += 1;
        job.started = Some(Instant::now());
        let taken = Taken {
            id: job.id,
            queue: q,
            class: job.parsed.class.clone(),
            args: std::mem::take(&mut job.parsed.args),
            jid: job.parsed.jid.clone(),
            retry_count: job.parsed.retry_count,
            unlock_at_start: job
                .parsed
                .unique
                .as_ref()
                .filter(|(_, at_start)| *at_start)
                .map(|(digest, _)| digest.clone()),
            throttled: job.holding,
        };
        st.busy_jobs.insert(job.id, job);
        Some(taken)
    }

    /// Up to `max` jobs that may start now, the queues taken in turn from `next_queue`
    /// (which moves on by one each call, so no queue is always first).
    fn take_locked(st: &mut State, max: usize) -> Vec<Taken> {
        let mut out = Vec::new();
        if st.stopping || st.quiet {
            return out;
        }
        let n = st.queues.len();
        let start = st.next_queue;
        for i in 0..n {
            let q = (start + i) % n;
            while out.len() < max {
                let Some(job) = Self::take_from(st, q) else {
                    break;
                };
                out.push(job);
            }
        }
        st.next_queue = (start + 1) % n.max(1);
        out
    }

    /// `take_locked` of one job, without a Vec.
    fn take_one_locked(st: &mut State) -> Option<Taken> {
        if st.stopping || st.quiet {
            return None;
        }
        let n = st.queues.len();
        let start = st.next_queue;
        st.next_queue = (start + 1) % n.max(1);
        (0..n).find_map(|i| Self::take_from(st, (start + i) % n))
    }

    /// Takes up to `max` jobs that may start now, without waiting. When there are none,
    /// records that the fiber executor waits, so the next change writes a wake byte.
    pub fn take(&self, max: usize) -> Vec<Taken> {
        let mut st = self.lock();
        let out = Self::take_locked(&mut st, max);
        if out.is_empty() && !st.stopping {
            st.waiting = true;
        }
        out
    }

    /// `take(1)`, without a Vec: a worker fiber going straight on to its next job.
    pub fn take_one(&self) -> Option<Taken> {
        let mut st = self.lock();
        let out = Self::take_one_locked(&mut st);
        if out.is_none() && !st.stopping {
            st.waiting = true;
        }
        out
    }

    /// Waits up to `timeout` for one job that may start (thread executor, without the
    /// GVL). Returns early with `None` when stopping or when `cancel` is set.
    pub fn take_blocking(&self, timeout: Duration, cancel: &AtomicBool) -> Option<Taken> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(h) = Self::take_one_locked(&mut st) {
                return Some(h);
            }
            let now = Instant::now();
            if st.stopping || cancel.load(Ordering::Acquire) || now >= deadline {
                return None;
            }
            st = self
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits up to `timeout` for the worker to stop; true once it has.
    pub fn wait_stopping(&self, timeout: Duration, cancel: &AtomicBool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            if st.stopping || cancel.load(Ordering::Acquire) || now >= deadline {
                return st.stopping;
            }
            st = self
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wakes every waiting taker (an unblock function calls this after setting its flag).
    pub fn interrupt(&self) {
        let _guard = self.lock();
        self.cond.notify_all();
    }

    /// A handed-out throttled job's perform begins: its throttle's key, window and
    /// start log member, for its start to be logged (once; None after).
    pub fn begin(&self, id: u64) -> Option<(usize, String, f64, String)> {
        let mut st = self.lock();
        let job = st.busy_jobs.get_mut(&id).filter(|job| job.holding)?;
        job.holding = false;
        let t = job.parsed.throttle()?;
        Some((
            job.queue,
            t.key.clone(),
            t.per,
            job.parsed.throttle_member(),
        ))
    }

    /// The stored payload of a job handed out and not yet finished (for server
    /// middleware, which sees every field, including ones client middleware added).
    pub fn payload(&self, id: u64) -> Option<String> {
        self.lock().busy_jobs.get(&id).map(|job| job.raw.clone())
    }

    /// What `read` reads of the busy job `jid`, if it is busy here.
    pub fn busy_by_jid<T>(&self, jid: &str, read: impl FnOnce(&HeldJob) -> T) -> Option<T> {
        let st = self.lock();
        st.busy_jobs
            .values()
            .find(|j| j.parsed.jid == jid)
            .map(read)
    }

    /// A handed-out job is over (acked, failed or to be given back): frees its slot.
    pub fn finish(&self, id: u64) -> Option<HeldJob> {
        let mut st = self.lock();
        let mut job = st.busy_jobs.remove(&id)?;
        let qs = &mut st.queues[job.queue];
        qs.busy -= 1;
        if let Some(at) = job.started {
            let ran_for = at.elapsed();
            qs.prefetch.finished(ran_for);
            job.ran_for = Some(ran_for);
        }
        if qs.to_fetch() > 0 {
            self.space[job.queue].notify_one();
        }
        self.cond.notify_all();
        self.wake(&mut st);
        Some(job)
    }

    /// Stops handing out and fetching; wakes everyone who waits.
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stopping = true;
        st.waiting = true;
        self.wake(&mut st);
        self.cond.notify_all();
        for s in &self.space {
            s.notify_one();
        }
        self.stop_notify.notify_waiters();
    }

    /// Quiet (TSTP): stop fetching and starting jobs, let busy ones finish. The
    /// caller gives buffered jobs back (`drain_buffers`).
    pub fn quiet(&self) {
        let mut st = self.lock();
        st.quiet = true;
        st.waiting = true;
        self.wake(&mut st);
    }

    /// Pauses or resumes queue `q`. `None` when that is its state already; else the
    /// buffered jobs a pause took out, for the caller to give back to Redis.
    pub fn set_paused(&self, q: usize, paused: bool) -> Option<Vec<HeldJob>> {
        let mut st = self.lock();
        let qs = &mut st.queues[q];
        if qs.paused == paused {
            return None;
        }
        qs.paused = paused;
        let drained = qs.buffer.drain(..).collect();
        if !paused {
            self.space[q].notify_one();
            self.cond.notify_all();
            self.wake(&mut st);
        }
        Some(drained)
    }

    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    pub fn is_quiet(&self) -> bool {
        self.lock().quiet
    }

    /// Takes every buffered, unstarted job out (at shutdown, to give back to Redis).
    pub fn drain_buffers(&self) -> Vec<HeldJob> {
        let mut st = self.lock();
        st.queues
            .iter_mut()
            .flat_map(|q| q.buffer.drain(..))
            .collect()
    }

    /// Payloads of queue `q` this process is processing (buffered or busy), each with
    /// how many copies it holds (the same job queued twice is two jobs).
    pub fn processing_payloads(&self, q: usize) -> std::collections::HashMap<Vec<u8>, usize> {
        let st = self.lock();
        let mut held = std::collections::HashMap::new();
        for job in st.queues[q]
            .buffer
            .iter()
            .chain(st.busy_jobs.values().filter(|j| j.queue == q))
        {
            *held.entry(job.raw.as_bytes().to_vec()).or_insert(0) += 1;
        }
        held
    }

    /// Busy jobs (handed out, running), per queue.
    pub fn busy(&self) -> Vec<usize> {
        self.lock().queues.iter().map(|q| q.busy).collect()
    }

    /// The concurrency leases this process holds: one per limited job it runs or has
    /// buffered (admitted, so holding a slot).
    pub fn leases(&self) -> Vec<Lease> {
        let state = self.lock();
        let buffered = || state.queues.iter().flat_map(|q| q.buffer.iter());
        let slots = buffered()
            .chain(state.busy_jobs.values())
            .filter_map(|job| {
                let c = job.parsed.concurrency()?;
                Some(Lease {
                    queue: job.queue,
                    kind: LeaseKind::Concurrency,
                    key: c.key.clone(),
                    member: job.parsed.jid.to_string(),
                    seconds: c.lease,
                })
            });
        // Jobs whose perform has not begun hold their throttle place (buffered, or
        // handed out behind a job that holds the CPU); a begun one's start is logged.
        let holds = buffered()
            .chain(state.busy_jobs.values())
            .filter(|job| job.holding)
            .filter_map(|job| {
                let t = job.parsed.throttle()?;
                Some(Lease {
                    queue: job.queue,
                    kind: LeaseKind::ThrottleHold,
                    key: t.key.clone(),
                    member: job.parsed.throttle_member(),
                    seconds: THROTTLE_HOLD_SECS,
                })
            });
        slots.chain(holds).collect()
    }
}

#[cfg(test)]
mod tests;
