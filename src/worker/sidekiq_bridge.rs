//! `config.sidekiq_compat`: a worker also works the jobs real Sidekiq clients push, so
//! web processes may keep pushing through Sidekiq while the workers are FiberJob's.
//!
//! Sidekiq keeps a queue's jobs in the list `queue:<name>` (LPUSH, oldest at the
//! right), jobs to run later in the sorted set `schedule` and retries in `retry`
//! (score = when). This task moves them into FiberJob's keys, where everything else —
//! reliable fetch, retries, the dead set, recovery — is FiberJob's own:
//! - each of the worker's queues, from Sidekiq's list to the back of FiberJob's queue,
//!   oldest first, by `RPOPLPUSH` in one script (`SIDEKIQ_TAKE`): a job is in exactly
//!   one of the two lists at every instant, so a kill -9 loses nothing;
//! - due entries of `schedule` and `retry`, one script each (`SIDEKIQ_DUE`: `ZREM`,
//!   which only one mover wins, then `LPUSH`), converted first: Sidekiq counts a
//!   retry's `retry_count` from 0 at the first failure, FiberJob counts failures;
//! - every entry of Sidekiq's `dead` set into FiberJob's dead set of its queue, with
//!   its time of death (`SIDEKIQ_BURY`: `ZREM`, then `ZADD`, trimmed to the dead set's
//!   bounds as every death is), where the Web UI shows it and can retry it.
//!
//! An entry of these sets that is not a job goes to the dead set of `default` with its
//! bytes kept, as any payload FiberJob cannot read does (not left there to be logged
//! at every look).
//!
//! Sidekiq's keys carry no Cluster hash tag, so this needs a single Redis (as Sidekiq
//! does); `Configuration#check!` refuses it with `redis_cluster`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::state::WorkerState;
use crate::runtime::clock;
use crate::runtime::conn::Conn;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::keys::{SIDEKIQ_DEAD, SIDEKIQ_RETRY, SIDEKIQ_SCHEDULE};
use crate::store::retention::{DEAD_CAP, DEAD_MAX_AGE_SECS};
use crate::store::sidekiq_scripts::{SIDEKIQ_BURY, SIDEKIQ_DUE, SIDEKIQ_TAKE};
use crate::store::{payload, records};

/// How often an idle bridge looks at Sidekiq's keys (a busy one goes on at once).
const POLL: Duration = Duration::from_millis(100);
/// Most jobs one script call moves.
const MOVE_MAX: usize = 500;

pub async fn run(state: Arc<WorkerState>) {
    let mut link = Link::new(None);
    let mut outage = Outage::new("sidekiq bridge".to_string());
    loop {
        let moved = async {
            let c = link.get(&state.redis).await?;
            pass(&state, c).await
        }
        .await;
        match moved {
            Ok(n) => {
                outage.recovered();
                if n == 0 {
                    tokio::time::sleep(POLL).await;
                }
            }
            Err(e) => {
                link.reset();
                outage.failed(&e).await;
            }
        }
    }
}

/// One look at every key; returns how many jobs moved.
async fn pass(state: &WorkerState, c: &mut Conn) -> redis::RedisResult<usize> {
    let mut moved = 0;
    for queue in &state.queues {
        let n: usize = SIDEKIQ_TAKE
            .key(state.keys.sidekiq_queue(queue))
            .key(state.keys.queue(queue))
            .arg(MOVE_MAX)
            .invoke_async(c)
            .await?;
        moved += n;
    }
    for set in [SIDEKIQ_SCHEDULE, SIDEKIQ_RETRY] {
        let due: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
            .arg(set)
            .arg("-inf")
            .arg(clock::now())
            .arg("LIMIT")
            .arg(0)
            .arg(MOVE_MAX)
            .query_async(c)
            .await?;
        for entry in due {
            let job = std::str::from_utf8(&entry)
                .ok()
                .and_then(|e| convert(e, set == SIDEKIQ_RETRY));
            moved += match job {
                Some((queue, job)) => {
                    SIDEKIQ_DUE
                        .key(set)
                        .key(state.keys.queue(&queue))
                        .key(state.keys.queues())
                        .arg(&entry)
                        .arg(&job)
                        .arg(&queue)
                        .invoke_async::<usize>(c)
                        .await?
                }
                None => unreadable(state, c, set, &entry).await?,
            };
        }
    }
    Ok(moved + bury(state, c).await?)
}

/// Moves entries of Sidekiq's dead set into FiberJob's; returns how many moved.
async fn bury(state: &WorkerState, c: &mut Conn) -> redis::RedisResult<usize> {
    let dead: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg(SIDEKIQ_DEAD)
        .arg(0)
        .arg(MOVE_MAX - 1)
        .arg("WITHSCORES")
        .query_async(c)
        .await?;
    let mut moved = 0;
    for (entry, died_at) in dead {
        let record = std::str::from_utf8(&entry)
            .ok()
            .and_then(|e| dead_record(e, died_at));
        moved += match record {
            Some((queue, record)) => {
                bury_one(state, c, SIDEKIQ_DEAD, &entry, &queue, &record, died_at).await?
            }
            None => unreadable(state, c, SIDEKIQ_DEAD, &entry).await?,
        };
    }
    Ok(moved)
}

/// An entry of Sidekiq's `set` that is not a job: to the dead set of `default`, its
/// bytes kept (as FiberJob keeps any payload it cannot read).
async fn unreadable(
    state: &WorkerState,
    c: &mut Conn,
    set: &str,
    entry: &[u8],
) -> redis::RedisResult<usize> {
    let reason = format!("Sidekiq's {set} set held an entry that is not a job");
    tracing::error!("{reason}; it is in the dead set of the default queue");
    let now = payload::now();
    let record = records::unreadable_entry(entry, &reason, DEFAULT_QUEUE, now);
    bury_one(state, c, set, entry, DEFAULT_QUEUE, &record, now).await
}

const DEFAULT_QUEUE: &str = "default";

/// Moves `entry` of Sidekiq's `set` to the dead set of `queue` as `record`.
async fn bury_one(
    state: &WorkerState,
    c: &mut Conn,
    set: &str,
    entry: &[u8],
    queue: &str,
    record: &str,
    died_at: f64,
) -> redis::RedisResult<usize> {
    SIDEKIQ_BURY
        .key(set)
        .key(state.keys.dead(queue))
        .key(state.keys.queues())
        .arg(entry)
        .arg(record)
        .arg(died_at)
        .arg(queue)
        .arg(clock::now())
        .arg(DEAD_CAP)
        .arg(DEAD_MAX_AGE_SECS)
        .invoke_async(c)
        .await
}

/// The queue and FiberJob's dead-set record of a Sidekiq `dead` entry: the job with
/// its error as FiberJob writes it (`error`, `died_at`).
fn dead_record(entry: &str, died_at: f64) -> Option<(String, String)> {
    let mut job: serde_json::Map<String, Value> = serde_json::from_str(entry).ok()?;
    job.get("class")?;
    let queue = job
        .get("queue")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let class = job
        .get("error_class")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let message = job
        .get("error_message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let error = format!("{class}: {message} (died under Sidekiq)");
    payload::times_in_seconds(&mut job);
    job.insert("error".into(), Value::from(error));
    job.insert("died_at".into(), Value::from(died_at));
    job.entry("failed_at").or_insert(Value::from(died_at));
    Some((queue, Value::Object(job).to_string()))
}

/// The queue and the FiberJob payload of a Sidekiq `schedule`/`retry` entry: `at` is
/// dropped (it is due), and a retry's `retry_count` becomes the failures so far.
fn convert(entry: &str, retry: bool) -> Option<(String, String)> {
    let mut job: serde_json::Map<String, Value> = serde_json::from_str(entry).ok()?;
    let queue = job
        .get("queue")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    job.remove("at");
    payload::times_in_seconds(&mut job);
    if retry {
        let failures = job
            .get("retry_count")
            .and_then(Value::as_u64)
            .map_or(1, |n| n + 1);
        job.insert("retry_count".into(), Value::from(failures));
    }
    job.insert("enqueued_at".into(), Value::from(payload::now()));
    Some((queue, Value::Object(job).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_sidekiq_entries() {
        let (q, job) = convert(
            r#"{"class":"A","args":[18446744073709551615,"x"],"queue":"low","retry_count":0,"at":1.5}"#,
            true,
        )
        .unwrap();
        assert_eq!(q, "low");
        let v: Value = serde_json::from_str(&job).unwrap();
        assert_eq!(v["retry_count"], Value::from(1));
        assert!(v.get("at").is_none());
        assert!(job.contains("18446744073709551615"));
        let (q, job) = convert(r#"{"class":"A","args":[]}"#, false).unwrap();
        assert_eq!(q, "default");
        assert!(!job.contains("retry_count"));
        assert!(convert("[1]", false).is_none());
    }

    #[test]
    fn converts_sidekiq_dead_entries() {
        let entry = r#"{"class":"A","args":[1],"queue":"low","jid":"j","retry_count":2,"error_class":"RuntimeError","error_message":"nope","failed_at":5.0}"#;
        let (q, record) = dead_record(entry, 7.5).unwrap();
        assert_eq!(q, "low");
        let v: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(v["error"], "RuntimeError: nope (died under Sidekiq)");
        assert_eq!(v["died_at"], 7.5);
        assert_eq!(v["failed_at"], 5.0);
        assert_eq!(v["retry_count"], 2);
        assert_eq!(
            dead_record(r#"{"class":"A","args":[]}"#, 1.0).unwrap().0,
            "default"
        );
        assert!(dead_record(r#"{"args":[]}"#, 1.0).is_none());
        assert!(dead_record("not json", 1.0).is_none());
    }
}
