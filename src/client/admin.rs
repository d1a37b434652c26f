//! What dashboards read: per-queue metrics, totals, live processes and the jobs each
//! is processing, throughput windows, Redis's INFO, and the Web UI's signing secret.
//! Every Web UI page and the Prometheus endpoint go through these calls and the ones
//! in `jobs.rs`, `dead.rs`, `cron.rs` (through `FiberJob::Queue`), never through Redis
//! commands of their own.
//!
//! Reads are forgiving: what another program (or a corrupted restore) wrote under our
//! keys — bytes that are not UTF-8, a counter that is not a number, a key of the wrong
//! type — shows up as that row's bad data, never as an error for the whole page.

use std::sync::Arc;

use redis::{FromRedisValue, RedisResult, Value};

use super::{DeadSet, Flow, Handle, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;

/// A count read leniently: missing, unreadable or refused (a key of the wrong type) is 0.
fn count(r: Option<RedisResult<Value>>) -> u64 {
    match r {
        Some(Ok(v)) => match Lossy::from_redis_value(v) {
            Ok(Lossy(text)) => text.trim().parse().unwrap_or(0),
            Err(_) => 0,
        },
        _ => 0,
    }
}

/// A string read leniently: missing or unreadable is `None`.
fn text(r: Option<RedisResult<Value>>) -> Option<String> {
    match r {
        Some(Ok(Value::Nil)) | None | Some(Err(_)) => None,
        Some(Ok(v)) => Lossy::from_redis_value(v).ok().map(String::from),
    }
}

/// Counters and sizes of one queue.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    pub name: String,
    /// Jobs finished successfully, ever (`stat:processed:{q}`).
    pub processed: u64,
    /// Failed runs, ever (each retry that fails counts).
    pub failed: u64,
    /// Jobs not started by their `expires_at`, ever (in the dead set as expired).
    pub expired: u64,
    /// Jobs ready to run.
    pub size: u64,
    pub scheduled: u64,
    pub retries: u64,
    /// Jobs workers hold: taken and not finished (running, or prefetched and waiting
    /// for a slot), from their held sets and processing lists.
    pub held: u64,
    /// Jobs running now (each uses a worker slot), from the workers' heartbeats.
    pub running: u64,
    /// Jobs waiting in Redis for a concurrency slot or a throttle's window.
    pub limited: u64,
    /// Its limited keys with waiting jobs (`Keys::flow_due` members).
    pub flow_due: Vec<String>,
    /// Whether `Queue.pause` holds the queue.
    pub paused: bool,
    /// `enqueued_at` of the oldest ready job (epoch seconds), if any.
    pub oldest_enqueued_at: Option<f64>,
}

/// Process-wide totals.
#[derive(Debug, Default)]
pub struct Totals {
    pub processed: u64,
    pub failed: u64,
    pub dead: u64,
    pub failure_records: u64,
}

pub struct Admin {
    handle: Arc<Handle>,
}

impl Admin {
    pub fn new(handle: Arc<Handle>) -> Admin {
        Admin { handle }
    }

    /// Every queue enqueued to or worked, sorted.
    pub fn queue_names(&self, cancel: &Cancel) -> Result<Vec<String>> {
        self.handle.queue_names(cancel)
    }

    /// Metrics of `queues`, in the order given.
    pub fn metrics(&self, cancel: &Cancel, queues: &[String]) -> Result<Vec<QueueMetrics>> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.handle.keys;
        // One pipeline for the process set, the paused set and every queue's counters and
        // sizes, then one for the held sets and processing lists it names.
        let (ids, paused, rows) = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("SMEMBERS").arg(k.processes());
            pipe.cmd("SMEMBERS").arg(k.paused());
            for q in queues {
                pipe.cmd("GET").arg(k.stat_queue("processed", q));
                pipe.cmd("GET").arg(k.stat_queue("failed", q));
                pipe.cmd("LLEN").arg(k.queue(q));
                pipe.cmd("ZCARD").arg(k.schedule(q));
                pipe.cmd("ZCARD").arg(k.retry(q));
                pipe.cmd("LINDEX").arg(k.queue(q)).arg(-1);
                pipe.cmd("GET").arg(k.stat_queue("expired", q));
                pipe.cmd("ZRANGE").arg(k.flow_due(q)).arg(0).arg(-1);
            }
            async move {
                let mut flat: Vec<RedisResult<Value>> = pipe.query_async(&mut c).await?;
                let mut names = flat.drain(..2).map(|r| match r {
                    Ok(v) => Vec::<Lossy>::from_redis_value(v)
                        .unwrap_or_default()
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    Err(_) => Vec::new(),
                });
                let ids: Vec<String> = names.next().unwrap_or_default();
                let paused: Vec<String> = names.next().unwrap_or_default();
                drop(names);
                Ok((ids, paused, flat))
            }
        })?;
        // Per process: its processing lists' lengths, then its heartbeat's queues and
        // busy counts (a heartbeat without them, from an older FiberJob, counts its
        // held jobs as running).
        let mut held = vec![0u64; queues.len()];
        let mut running = vec![0u64; queues.len()];
        if !ids.is_empty() {
            let replies: Vec<RedisResult<Value>> = self.handle.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for id in &ids {
                    for q in queues {
                        pipe.cmd("LLEN").arg(k.processing(q, id));
                        pipe.cmd("SCARD").arg(k.held(q, id));
                    }
                    pipe.cmd("HMGET")
                        .arg(k.process(id))
                        .arg("queues")
                        .arg("busy_by_queue");
                }
                async move { pipe.query_async(&mut c).await }
            })?;
            let mut replies = replies.into_iter();
            for _ in &ids {
                let lens: Vec<u64> = queues
                    .iter()
                    .map(|_| count(replies.next()) + count(replies.next()))
                    .collect();
                let beat: (Option<Lossy>, Option<Lossy>) = replies
                    .next()
                    .and_then(|r| r.ok())
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or((None, None));
                let by_queue = busy_by_queue(beat);
                for (i, q) in queues.iter().enumerate() {
                    held[i] += lens[i];
                    running[i] += match &by_queue {
                        Some(map) => map.get(q.as_str()).copied().unwrap_or(0),
                        None => lens[i],
                    };
                }
            }
        }
        let mut rows = rows.into_iter();
        let mut metrics: Vec<QueueMetrics> = queues
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut next = || rows.next();
                QueueMetrics {
                    name: name.clone(),
                    processed: count(next()),
                    failed: count(next()),
                    size: count(next()),
                    scheduled: count(next()),
                    retries: count(next()),
                    oldest_enqueued_at: text(next()).as_deref().and_then(enqueued_at),
                    expired: count(next()),
                    limited: 0,
                    flow_due: next()
                        .and_then(|r| r.ok())
                        .and_then(|v| Vec::<Lossy>::from_redis_value(v).ok())
                        .map(|ms| ms.into_iter().map(String::from).collect())
                        .unwrap_or_default(),
                    paused: paused.contains(name),
                    held: held[i],
                    running: running[i],
                }
            })
            .collect();
        Flow::new(self.handle.clone()).count_limited(cancel, &mut metrics)?;
        Ok(metrics)
    }

    /// Process-wide counters.
    pub fn totals(&self, cancel: &Cancel) -> Result<Totals> {
        let k = &self.handle.keys;
        let values: Vec<RedisResult<Value>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("GET").arg(k.stat("processed"));
            pipe.cmd("GET").arg(k.stat("failed"));
            async move { pipe.query_async(&mut c).await }
        })?;
        let (dead, failure_records) =
            DeadSet::new(self.handle.clone()).dead_and_failed_counts(cancel)?;
        let mut values = values.into_iter();
        Ok(Totals {
            processed: count(values.next()),
            failed: count(values.next()),
            dead,
            failure_records,
        })
    }

    /// Heartbeat hashes of live processes (field/value pairs), sorted by identity. A
    /// heartbeat key that is not a hash reads as `identity` and `error` only.
    pub fn processes(&self, cancel: &Cancel) -> Result<Vec<Vec<(String, String)>>> {
        let mut ids = self.handle.process_ids(cancel)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let k = &self.handle.keys;
        let beats: Vec<RedisResult<Vec<(Lossy, Lossy)>>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for id in &ids {
                pipe.cmd("HGETALL").arg(k.process(id));
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        Ok(ids
            .into_iter()
            .zip(beats)
            .filter_map(|(id, beat)| match beat {
                Ok(pairs) if pairs.is_empty() => None,
                Ok(pairs) => Some(pairs.into_iter().map(|(f, v)| (f.0, v.0)).collect()),
                Err(e) => Some(vec![
                    ("identity".to_string(), id),
                    (
                        "error".to_string(),
                        format!("its heartbeat is not a FiberJob heartbeat ({e})"),
                    ),
                ]),
            })
            .collect())
    }

    /// Payloads a process has taken from `queues` and not finished (running, or
    /// buffered by prefetch), as (queue, payload): its held set's (in no order), then
    /// its processing list's, oldest first.
    pub fn processing_jobs(
        &self,
        cancel: &Cancel,
        identity: &str,
        queues: &[String],
    ) -> Result<Vec<(String, String)>> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.handle.keys;
        let lists: Vec<RedisResult<Vec<Lossy>>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for q in queues {
                pipe.cmd("SMEMBERS").arg(k.held(q, identity));
                pipe.cmd("LRANGE")
                    .arg(k.processing(q, identity))
                    .arg(0)
                    .arg(-1);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let mut lists = lists.into_iter();
        let mut out = Vec::new();
        for q in queues {
            let held = lists.next().and_then(|r| r.ok()).unwrap_or_default();
            let listed = lists.next().and_then(|r| r.ok()).unwrap_or_default();
            out.extend(
                held.into_iter()
                    .chain(listed.into_iter().rev())
                    .map(|p| (q.clone(), p.0)),
            );
        }
        Ok(out)
    }

    /// Jobs processed and failed per 10-second window, for the last `windows` windows
    /// ending with the current one: (window start, epoch seconds; processed; failed).
    pub fn throughput(&self, cancel: &Cancel, windows: i64) -> Result<Vec<(i64, u64, u64)>> {
        let step = crate::store::retention::STAT_WINDOW_SECS;
        let last = (crate::store::payload::now() as i64) / step;
        let buckets: Vec<i64> = (last - windows + 1..=last).collect();
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.handle.keys;
        // One GET per window (each key is in a slot of its own in a Cluster).
        let counts: Vec<Option<u64>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            for name in ["processed", "failed"] {
                for b in &buckets {
                    pipe.cmd("GET").arg(k.stat_window(name, *b));
                }
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let (processed, failed) = counts.split_at(buckets.len());
        Ok(buckets
            .iter()
            .zip(processed.iter().zip(failed))
            .map(|(b, (p, f))| (b * step, p.unwrap_or(0), f.unwrap_or(0)))
            .collect())
    }

    /// `INFO` of the Redis server, as Redis prints it.
    pub fn redis_info(&self, cancel: &Cancel) -> Result<String> {
        let reply: Value = self.handle.call(cancel, |mut c| async move {
            redis::cmd("INFO").query_async(&mut c).await
        })?;
        Ok(match reply {
            // A Cluster answers per master: one summary over them.
            Value::Map(nodes) => cluster_info(
                nodes
                    .into_iter()
                    .filter_map(|(_, info)| redis::from_redis_value::<String>(info).ok())
                    .collect(),
            ),
            other => redis::from_redis_value::<Lossy>(other)
                .map(String::from)
                .unwrap_or_default(),
        })
    }

    /// The Web UI's signing secret: `candidate` if none is stored yet, else the stored
    /// one, so every web process signs with the same.
    pub fn web_secret(&self, cancel: &Cancel, candidate: &str) -> Result<String> {
        let key = self.handle.keys.web_secret();
        self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&key).arg(candidate).arg("NX").ignore();
            pipe.cmd("GET").arg(&key);
            async move {
                let (secret,): (String,) = pipe.query_async(&mut c).await?;
                Ok(secret)
            }
        })
    }
}

/// INFO lines for a Cluster's masters together: the lowest version and uptime, the
/// sums of memory and clients.
fn cluster_info(infos: Vec<String>) -> String {
    let field = |info: &str, key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::to_string))
    };
    let sum = |key: &str| -> u64 {
        infos
            .iter()
            .filter_map(|i| field(i, key)?.trim().parse::<u64>().ok())
            .sum()
    };
    let mib = |bytes: u64| format!("{:.2}M", bytes as f64 / 1_048_576.0);
    let version = infos
        .iter()
        .filter_map(|i| field(i, "redis_version"))
        .min()
        .unwrap_or_default();
    let uptime = infos
        .iter()
        .filter_map(|i| field(i, "uptime_in_days")?.trim().parse::<u64>().ok())
        .min()
        .unwrap_or(0);
    format!(
        "redis_version:{version}\r\nused_memory_human:{}\r\nused_memory_peak_human:{}\r\n\
         connected_clients:{}\r\nuptime_in_days:{uptime}\r\ncluster_masters:{}\r\n",
        mib(sum("used_memory")),
        mib(sum("used_memory_peak")),
        sum("connected_clients"),
        infos.len()
    )
}

/// A heartbeat's busy count per queue name, from its `queues` and `busy_by_queue`
/// lists; `None` when it has no readable `busy_by_queue`.
fn busy_by_queue(
    beat: (Option<Lossy>, Option<Lossy>),
) -> Option<std::collections::HashMap<String, u64>> {
    let names: Vec<String> = serde_json::from_str(&beat.0?.0).ok()?;
    let counts: Vec<u64> = serde_json::from_str(&beat.1?.0).ok()?;
    Some(names.into_iter().zip(counts).collect())
}

fn enqueued_at(raw: &str) -> Option<f64> {
    let job = serde_json::from_str::<serde_json::Value>(raw).ok()?;
    crate::store::payload::epoch_seconds(job.get("enqueued_at")?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_enqueued_at_of_a_payload() {
        assert_eq!(
            super::enqueued_at(r#"{"class":"A","enqueued_at":12.5}"#),
            Some(12.5)
        );
        assert_eq!(super::enqueued_at("not json"), None);
        assert_eq!(super::enqueued_at(r#"{"class":"A"}"#), None);
    }
}
