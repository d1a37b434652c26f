//! A worker process's engine: the tasks on the tokio runtime and the state they share.
//!
//! Lifecycle: `new` (plain values, no I/O) → `start` (spawns the acker, one fetcher per
//! queue and the heartbeat; never waits on Redis, so a worker starts while Redis is
//! down) → executors `take`/`finish` jobs → `request_stop` (from a signal: stops
//! handing out and fetching, gives buffered jobs back at once) → `shutdown` (after the
//! executors are done: waits for the fetchers, flushes outcomes, sweeps whatever is
//! left in this process's processing lists back to the queues, unregisters).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::ack::{self, Msg, Next};
use crate::cancel::Cancel;
use crate::cron::{ticker, CronDef};
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::outage::Outage;
use crate::payload::{self, Failure};
use crate::runtime::{self, Runtime};
use crate::{reaper, schedule, scripts};

/// How often a worker refreshes its heartbeat. Beats come from tokio, so a job that
/// holds the GVL for a long time does not delay them.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a heartbeat lives: five missed beats mean the process is gone, and its
/// jobs are recovered by another worker (so recovery takes about this long).
pub const HEARTBEAT_TTL_SECS: u64 = 5;

/// One queue a worker serves.
pub struct QueueSpec {
    pub name: String,
    pub limit: usize,
    pub prefetch: usize,
}

pub struct Shared {
    pub keys: Keys,
    pub identity: String,
    pub queues: Vec<String>,
    pub limits: Vec<usize>,
    pub dispatcher: Dispatcher,
    pub client: redis::Client,
    pub timeout: Duration,
    processing: Vec<String>,
    acks: mpsc::UnboundedSender<Msg>,
    /// Set once the first heartbeat registered this process: fetchers wait for it, so
    /// no processing list exists that the reaper could not find.
    registered: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub fn send(&self, m: Msg) {
        // Fails only after shutdown closed the acker; nothing is sent then.
        let _ = self.acks.send(m);
    }

    pub fn processing_key(&self, q: usize) -> &str {
        &self.processing[q]
    }

    pub async fn wait_registered(&self) {
        let mut rx = self.registered.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

pub struct Engine {
    pub shared: Arc<Shared>,
    rt: Arc<Runtime>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Msg>>>,
    fetchers: Mutex<Vec<JoinHandle<()>>>,
    /// Heartbeat, scheduler, schedule listener, cron ticker: aborted at shutdown.
    background: Mutex<Vec<JoinHandle<()>>>,
    acker: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        identity: String,
        queues: Vec<QueueSpec>,
    ) -> Result<Engine> {
        if queues.is_empty() {
            return Err(Error::Config("a worker needs at least one queue".into()));
        }
        let client = runtime::open(url)?;
        let rt = runtime::get()?;
        let keys = Keys::new(prefix);
        let dispatcher = Dispatcher::new(
            &queues
                .iter()
                .map(|q| (q.limit, q.prefetch))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| Error::Other(format!("cannot create the wake-up socket: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            processing: queues
                .iter()
                .map(|q| keys.processing(&q.name, &identity))
                .collect(),
            keys,
            identity,
            limits: queues.iter().map(|q| q.limit).collect(),
            queues: queues.into_iter().map(|q| q.name).collect(),
            dispatcher,
            client,
            timeout,
            acks: tx,
            registered: tokio::sync::watch::channel(false).0,
        };
        Ok(Engine {
            shared: Arc::new(shared),
            rt,
            rx: Mutex::new(Some(rx)),
            fetchers: Mutex::new(Vec::new()),
            background: Mutex::new(Vec::new()),
            acker: Mutex::new(None),
        })
    }

    /// Starts the tasks; `cron` lists the cron jobs this worker ticks for (times in
    /// UTC when `utc`, else in the process's local time zone).
    pub fn start(&self, cron: Vec<CronDef>, utc: bool) -> Result<()> {
        let rx = lock(&self.rx)
            .take()
            .ok_or_else(|| Error::Other("this worker was already started".into()))?;
        let h = self.rt.tokio.handle();
        *lock(&self.acker) = Some(h.spawn(ack::run(self.shared.clone(), rx)));
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut background = lock(&self.background);
        background.push(h.spawn(heartbeat(self.shared.clone())));
        background.push(h.spawn(schedule::run(self.shared.clone(), wake.clone())));
        background.push(h.spawn(schedule::listen(self.shared.clone(), wake)));
        background.push(h.spawn(reaper::run(self.shared.clone())));
        if !cron.is_empty() {
            background.push(h.spawn(ticker::run(self.shared.clone(), cron, utc)));
        }
        let mut fetchers = lock(&self.fetchers);
        for q in 0..self.shared.queues.len() {
            fetchers.push(h.spawn(crate::fetch::run(self.shared.clone(), q)));
        }
        Ok(())
    }

    /// Stop handing out and fetching; give buffered, unstarted jobs back now. Safe to
    /// call from a signal trap: it only takes a short lock and queues a message.
    pub fn request_stop(&self) {
        self.shared.dispatcher.stop();
        self.requeue_buffered();
    }

    /// Quiet (TSTP): no more fetching or starting; buffered jobs go back now.
    pub fn quiet(&self) {
        self.shared.dispatcher.quiet();
        self.requeue_buffered();
    }

    fn requeue_buffered(&self) {
        let mut by_queue: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.shared.queues.len()];
        for job in self.shared.dispatcher.drain_buffers() {
            by_queue[job.queue].push(job.raw.into_bytes());
        }
        for (q, raws) in by_queue.into_iter().enumerate() {
            if !raws.is_empty() {
                self.shared.send(Msg::Requeue { q, raws });
            }
        }
    }

    pub fn ack(&self, id: u64) {
        if let Some(job) = self.shared.dispatcher.finish(id) {
            self.shared.send(Msg::Ack {
                q: job.queue,
                raw: job.raw.into_bytes(),
            });
        }
    }

    /// Gives a taken job back to the front of its queue (interrupted by shutdown).
    pub fn requeue(&self, id: u64) {
        if let Some(job) = self.shared.dispatcher.finish(id) {
            self.shared.send(Msg::Requeue {
                q: job.queue,
                raws: vec![job.raw.into_bytes()],
            });
        }
    }

    /// A job that must not run (its class is unknown or not a job): to the dead set.
    pub fn reject(&self, id: u64, error_class: &str, reason: &str) {
        if let Some(job) = self.shared.dispatcher.finish(id) {
            tracing::warn!(jid = %job.parsed.jid, "{reason}; moved to the dead set");
            let record = payload::dead_record(
                &payload::fields(&job.raw),
                error_class,
                reason,
                payload::now(),
            );
            self.shared.send(Msg::Dead {
                q: job.queue,
                raw: job.raw.into_bytes(),
                record,
            });
        }
    }

    /// A failed attempt. `retry_at` (epoch seconds) schedules a retry; `None` buries it.
    pub fn fail(&self, id: u64, failure: Failure, retry_at: Option<f64>, priority: bool) {
        let Some(job) = self.shared.dispatcher.finish(id) else {
            return;
        };
        let queue = &self.shared.queues[job.queue];
        let mut fields = payload::with_failure(&payload::fields(&job.raw), &failure);
        let record = payload::failure_record(&fields, &failure, queue);
        let next = match retry_at {
            Some(at) => {
                if priority {
                    fields.insert("retry_priority".into(), true.into());
                }
                Next::Retry {
                    at,
                    payload: serde_json::Value::Object(fields).to_string(),
                }
            }
            None => {
                fields.insert("died_at".into(), failure.failed_at.into());
                fields.insert(
                    "error".into(),
                    format!("{}: {}", failure.error_class, failure.error_message).into(),
                );
                Next::Dead {
                    payload: serde_json::Value::Object(fields).to_string(),
                }
            }
        };
        self.shared.send(Msg::Fail {
            q: job.queue,
            raw: job.raw.into_bytes(),
            record,
            next,
        });
    }

    /// Finishes a stopped worker (blocking; call without the GVL once no job runs).
    pub fn shutdown(&self, cancel: &Cancel) -> Result<()> {
        self.request_stop();
        let shared = self.shared.clone();
        let fetchers: Vec<_> = lock(&self.fetchers).drain(..).collect();
        let background: Vec<_> = lock(&self.background).drain(..).collect();
        let acker = lock(&self.acker).take();
        let work = async move {
            for f in fetchers {
                let _ = f.await;
            }
            // Anything a fetcher delivered while stopping was sent back by `push`;
            // this catches a buffer filled between the stop and the fetcher's end.
            let (tx, rx) = oneshot::channel();
            shared.send(Msg::Flush(tx));
            // Bounded: with Redis down, what is left stays in the processing list for
            // another worker to recover.
            let flushed = tokio::time::timeout(shared.timeout * 2, rx).await.is_ok();
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
            let mut conn = shared.client.get_multiplexed_async_connection().await?;
            for (q, queue) in shared.queues.iter().enumerate() {
                let moved: i64 = scripts::SWEEP
                    .key(shared.keys.queue(queue))
                    .key(shared.processing_key(q))
                    .invoke_async(&mut conn)
                    .await?;
                if moved > 0 {
                    tracing::info!("put {moved} unfinished job(s) back on queue {queue:?}");
                }
            }
            redis::pipe()
                .cmd("SREM")
                .arg(shared.keys.processes())
                .arg(&shared.identity)
                .ignore()
                .cmd("DEL")
                .arg(shared.keys.process(&shared.identity))
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            Ok(())
        };
        self.rt.tokio.block_on(cancel.run(work)).unwrap_or_else(|| {
            Err(Error::Other(
                "shutdown interrupted; unfinished jobs stay in this worker's processing list and are recovered by another worker".into(),
            ))
        })
    }
}

/// Registers this process and keeps its heartbeat alive.
async fn heartbeat(shared: Arc<Shared>) {
    let mut outage = Outage::new("heartbeat".to_string());
    let started_at = payload::now();
    let queues = serde_json::to_string(&shared.queues).unwrap_or_default();
    let concurrency = serde_json::to_string(&shared.limits).unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut conn = None;
    loop {
        let busy: usize = shared.dispatcher.running().iter().sum();
        let key = shared.keys.process(&shared.identity);
        let mut beat = scripts::HEARTBEAT.prepare_invoke();
        beat.key(&key)
            .key(shared.keys.processes())
            .key(shared.keys.queues())
            .arg(HEARTBEAT_TTL_SECS)
            .arg(&shared.identity)
            .arg(shared.queues.len())
            .arg(shared.queues.as_slice())
            .arg("identity")
            .arg(&shared.identity)
            .arg("hostname")
            .arg(&hostname)
            .arg("pid")
            .arg(std::process::id())
            .arg("queues")
            .arg(&queues)
            .arg("concurrency")
            .arg(&concurrency)
            .arg("busy")
            .arg(busy)
            .arg("quiet")
            .arg(if shared.dispatcher.is_quiet() {
                "true"
            } else {
                "false"
            })
            .arg("rss")
            .arg(rss_kb())
            .arg("started_at")
            .arg(started_at)
            .arg("beat")
            .arg(payload::now());
        let result = async {
            if conn.is_none() {
                conn = Some(shared.client.get_multiplexed_async_connection().await?);
            }
            beat.invoke_async::<()>(conn.as_mut().expect("connected above"))
                .await
        }
        .await;
        match result {
            Ok(()) => {
                outage.recovered();
                if !shared.registered.send_replace(true) {
                    if let Some(c) = conn.as_mut() {
                        warn_if_evicting(c).await;
                    }
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
            Err(e) => {
                conn = None;
                outage.failed(&e).await;
            }
        }
    }
}

/// Logs, once per worker start, when Redis may evict keys to make room: with any
/// `maxmemory-policy` but `noeviction`, a full Redis deletes keys — queued jobs,
/// heartbeats — instead of refusing writes that FiberJob would retry or report.
async fn warn_if_evicting(c: &mut redis::aio::MultiplexedConnection) {
    let Ok(info) = redis::cmd("INFO")
        .arg("memory")
        .query_async::<String>(c)
        .await
    else {
        return;
    };
    let policy = info
        .lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(str::trim);
    if let Some(policy) = policy.filter(|p| *p != "noeviction") {
        tracing::warn!(
            "Redis has maxmemory-policy {policy}: when it is full it deletes keys, which may be queued \
             jobs or worker heartbeats. Set maxmemory-policy noeviction (FiberJob then reports a full Redis \
             instead of losing data)"
        );
    }
}

/// Resident set size of this process in KiB (Linux), 0 where unknown.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
