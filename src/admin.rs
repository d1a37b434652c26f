//! What dashboards and operators read and change: per-queue metrics, the jobs in each
//! queue and sorted set, live processes, and actions on single jobs by jid. Every Web UI
//! page and the Prometheus endpoint go through these calls (through `FiberJob::Queue`),
//! never through Redis commands of their own.
//!
//! Changes of one job are one Lua script (`scripts::JID_OP`), so a job clicked twice,
//! or promoted by a scheduler at the same moment, moves exactly once.

use crate::cancel::Cancel;
use crate::client::Client;
use crate::error::Result;

/// Counters and sizes of one queue.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    pub name: String,
    /// Jobs finished successfully, ever (`stat:processed:{q}`).
    pub processed: u64,
    /// Failed runs, ever (each retry that fails counts).
    pub failed: u64,
    /// Jobs ready to run.
    pub size: u64,
    pub scheduled: u64,
    pub retries: u64,
    /// Jobs workers have taken and not finished.
    pub busy: u64,
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

/// The sorted sets of one queue that hold jobs waiting for a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Scheduled,
    Retry,
}

/// Where `find` saw a job.
#[derive(Debug)]
pub struct Found {
    pub state: &'static str,
    pub queue: String,
    pub raw: String,
    /// Run-at for scheduled and retry jobs.
    pub score: Option<f64>,
}

impl Client {
    /// Every queue enqueued to or worked, sorted.
    pub fn queue_names(&self, cancel: &Cancel) -> Result<Vec<String>> {
        let key = self.keys.queues();
        let mut names: Vec<String> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
        })?;
        names.sort();
        Ok(names)
    }

    /// Metrics of `queues`, in the order given.
    pub fn metrics(&self, cancel: &Cancel, queues: &[String]) -> Result<Vec<QueueMetrics>> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        type Row = (Option<u64>, Option<u64>, u64, u64, u64, Option<String>);
        // One pipeline for the process set and every queue's counters and sizes, then one
        // for the processing lists it names.
        let (ids, rows): (Vec<String>, Vec<Row>) = self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("SMEMBERS").arg(k.processes());
            for q in queues {
                pipe.cmd("GET").arg(k.stat_queue("processed", q));
                pipe.cmd("GET").arg(k.stat_queue("failed", q));
                pipe.cmd("LLEN").arg(k.queue(q));
                pipe.cmd("ZCARD").arg(k.schedule(q));
                pipe.cmd("ZCARD").arg(k.retry(q));
                pipe.cmd("LINDEX").arg(k.queue(q)).arg(-1);
            }
            async move {
                let flat: Vec<redis::Value> = pipe.query_async(&mut c).await?;
                let (ids, rest) = flat.split_first().ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Parse, "empty pipeline reply"))
                })?;
                let ids: Vec<String> =
                    redis::from_redis_value(ids.clone()).map_err(redis::RedisError::from)?;
                let rows = rest
                    .chunks(6)
                    .map(|r| {
                        redis::from_redis_value::<Row>(redis::Value::Array(r.to_vec()))
                            .map_err(redis::RedisError::from)
                    })
                    .collect::<redis::RedisResult<Vec<Row>>>()?;
                Ok((ids, rows))
            }
        })?;
        let busy: Vec<u64> = if ids.is_empty() {
            Vec::new()
        } else {
            self.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                for q in queues {
                    for id in &ids {
                        pipe.cmd("LLEN").arg(k.processing(q, id));
                    }
                }
                async move { pipe.query_async(&mut c).await }
            })?
        };
        Ok(queues
            .iter()
            .zip(rows)
            .enumerate()
            .map(|(i, (name, row))| QueueMetrics {
                name: name.clone(),
                processed: row.0.unwrap_or(0),
                failed: row.1.unwrap_or(0),
                size: row.2,
                scheduled: row.3,
                retries: row.4,
                busy: busy
                    .get(i * ids.len()..(i + 1) * ids.len())
                    .map(|s| s.iter().sum())
                    .unwrap_or(0),
                oldest_enqueued_at: row.5.as_deref().and_then(enqueued_at),
            })
            .collect())
    }

    /// Process-wide counters.
    pub fn totals(&self, cancel: &Cancel) -> Result<Totals> {
        let k = &self.keys;
        let (processed, failed, dead, records): (Option<u64>, Option<u64>, u64, u64) =
            self.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.cmd("GET").arg(k.stat("processed"));
                pipe.cmd("GET").arg(k.stat("failed"));
                pipe.cmd("ZCARD").arg(k.dead());
                pipe.cmd("LLEN").arg(k.failed());
                async move { pipe.query_async(&mut c).await }
            })?;
        Ok(Totals {
            processed: processed.unwrap_or(0),
            failed: failed.unwrap_or(0),
            dead,
            failure_records: records,
        })
    }

    /// Identities in the process set (live, or dead and not yet reaped).
    fn process_ids(&self, cancel: &Cancel) -> Result<Vec<String>> {
        let key = self.keys.processes();
        self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
        })
    }

    /// Heartbeat hashes of live processes (field/value pairs), sorted by identity.
    pub fn processes(&self, cancel: &Cancel) -> Result<Vec<Vec<(String, String)>>> {
        let mut ids = self.process_ids(cancel)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let k = &self.keys;
        let beats: Vec<Vec<(String, String)>> = self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HGETALL").arg(k.process(id));
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        Ok(beats.into_iter().filter(|b| !b.is_empty()).collect())
    }

    /// Payloads a process has taken from `queues` and not finished (running, or
    /// buffered by prefetch), oldest first, as (queue, payload).
    pub fn taken(
        &self,
        cancel: &Cancel,
        identity: &str,
        queues: &[String],
    ) -> Result<Vec<(String, String)>> {
        let k = &self.keys;
        let lists: Vec<Vec<String>> = self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            for q in queues {
                pipe.cmd("LRANGE")
                    .arg(k.processing(q, identity))
                    .arg(0)
                    .arg(-1);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        Ok(queues
            .iter()
            .zip(lists)
            .flat_map(|(q, list)| list.into_iter().rev().map(move |p| (q.clone(), p)))
            .collect())
    }

    /// Ready jobs of a queue, oldest first, `offset..offset+limit`.
    pub fn queue_jobs(
        &self,
        cancel: &Cancel,
        queue: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        // The oldest job is at the right end (LPUSH enqueues, the right end is taken).
        let key = self.keys.queue(queue);
        let mut jobs: Vec<String> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                redis::cmd("LRANGE")
                    .arg(key)
                    .arg(-offset - limit)
                    .arg(-offset - 1)
                    .query_async(&mut c)
                    .await
            }
        })?;
        jobs.reverse();
        Ok(jobs)
    }

    /// Jobs of one queue's scheduled or retry set, soonest first, with run-at times.
    pub fn waiting_jobs(
        &self,
        cancel: &Cancel,
        set: Waiting,
        queue: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<(String, f64)>> {
        let key = self.waiting_key(set, queue);
        self.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(offset)
                    .arg(offset + limit - 1)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            }
        })
    }

    fn waiting_key(&self, set: Waiting, queue: &str) -> String {
        match set {
            Waiting::Scheduled => self.keys.schedule(queue),
            Waiting::Retry => self.keys.retry(queue),
        }
    }

    /// Deletes the ready job `jid` from `queue`. Returns whether it was there.
    pub fn delete_queued(&self, cancel: &Cancel, queue: &str, jid: &str) -> Result<bool> {
        let key = self.keys.queue(queue);
        Ok(self
            .jid_op(cancel, &key, &key, "list", "delete", jid)?
            .is_some())
    }

    /// Deletes a scheduled or retry job. Returns whether it was there.
    pub fn delete_waiting(
        &self,
        cancel: &Cancel,
        set: Waiting,
        queue: &str,
        jid: &str,
    ) -> Result<bool> {
        let key = self.waiting_key(set, queue);
        Ok(self
            .jid_op(cancel, &key, &key, "zset", "delete", jid)?
            .is_some())
    }

    /// Moves a scheduled or retry job to the front of its queue (it runs next).
    /// Returns whether it was there (a scheduler may have promoted it meanwhile).
    pub fn run_waiting_now(
        &self,
        cancel: &Cancel,
        set: Waiting,
        queue: &str,
        jid: &str,
    ) -> Result<bool> {
        let key = self.waiting_key(set, queue);
        let qkey = self.keys.queue(queue);
        Ok(self
            .jid_op(cancel, &key, &qkey, "zset", "run", jid)?
            .is_some())
    }

    /// Empties a queue's ready jobs. Returns how many were deleted.
    pub fn clear_queue(&self, cancel: &Cancel, queue: &str) -> Result<u64> {
        let key = self.keys.queue(queue);
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("LLEN").arg(&key);
            pipe.cmd("DEL").arg(&key).ignore();
            async move {
                let (n,): (u64,) = pipe.query_async(&mut c).await?;
                Ok(n)
            }
        })
    }

    /// Looks for `jid` among the ready, scheduled, retry and taken jobs of `queues`,
    /// then in the dead set.
    pub fn find(&self, cancel: &Cancel, queues: &[String], jid: &str) -> Result<Option<Found>> {
        let ids = self.process_ids(cancel)?;
        for q in queues {
            let places = [
                ("enqueued", self.keys.queue(q), "list"),
                ("scheduled", self.keys.schedule(q), "zset"),
                ("retry", self.keys.retry(q), "zset"),
            ];
            let taken = ids
                .iter()
                .map(|id| ("busy", self.keys.processing(q, id), "list"));
            for (state, key, kind) in places.into_iter().chain(taken) {
                if let Some((raw, score)) = self.jid_op(cancel, &key, &key, kind, "find", jid)? {
                    return Ok(Some(Found {
                        state,
                        queue: q.clone(),
                        raw,
                        score,
                    }));
                }
            }
        }
        Ok(self
            .dead_members(cancel, Some(jid))?
            .into_iter()
            .next()
            .map(|raw| {
                let queue = serde_json::from_str::<serde_json::Value>(&raw)
                    .ok()
                    .and_then(|v| v.get("queue").and_then(|q| q.as_str()).map(String::from))
                    .unwrap_or_default();
                Found {
                    state: "dead",
                    queue,
                    raw,
                    score: None,
                }
            }))
    }

    /// Jobs processed and failed per 10-second window, for the last `windows` windows
    /// ending with the current one: (window start, epoch seconds; processed; failed).
    pub fn throughput(&self, cancel: &Cancel, windows: i64) -> Result<Vec<(i64, u64, u64)>> {
        let step = crate::ack::STAT_WINDOW_SECS;
        let last = (crate::payload::now() as i64) / step;
        let buckets: Vec<i64> = (last - windows + 1..=last).collect();
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let (processed, failed): (Vec<Option<u64>>, Vec<Option<u64>>) =
            self.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.cmd("MGET").arg(
                    buckets
                        .iter()
                        .map(|b| k.stat_window("processed", *b))
                        .collect::<Vec<_>>(),
                );
                pipe.cmd("MGET").arg(
                    buckets
                        .iter()
                        .map(|b| k.stat_window("failed", *b))
                        .collect::<Vec<_>>(),
                );
                async move { pipe.query_async(&mut c).await }
            })?;
        Ok(buckets
            .iter()
            .zip(processed.into_iter().zip(failed))
            .map(|(b, (p, f))| (b * step, p.unwrap_or(0), f.unwrap_or(0)))
            .collect())
    }

    /// Cron definitions workers registered: (class, JSON {class, cron, queue, time_zone}).
    pub fn cron_defs(&self, cancel: &Cancel) -> Result<Vec<(String, String)>> {
        let key = self.keys.cron();
        let mut defs: Vec<(String, String)> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
        })?;
        defs.sort();
        Ok(defs)
    }

    /// `INFO` of the Redis server, as Redis prints it.
    pub fn redis_info(&self, cancel: &Cancel) -> Result<String> {
        self.call(cancel, |mut c| async move {
            redis::cmd("INFO").query_async(&mut c).await
        })
    }

    fn jid_op(
        &self,
        cancel: &Cancel,
        key: &str,
        dest: &str,
        kind: &str,
        action: &str,
        jid: &str,
    ) -> Result<Option<(String, Option<f64>)>> {
        let found: Option<(String, String)> = self.call(cancel, |mut c| {
            let mut inv = crate::scripts::JID_OP.prepare_invoke();
            inv.key(key).key(dest).arg(jid).arg(kind).arg(action);
            async move { inv.invoke_async(&mut c).await }
        })?;
        Ok(found.map(|(raw, score)| (raw, score.parse().ok())))
    }
}

fn enqueued_at(raw: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()?
        .get("enqueued_at")?
        .as_f64()
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
