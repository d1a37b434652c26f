//! One queue's outcomes of an acker batch (`acker/mod.rs`): built from the messages,
//! turned into commands (plain ones for acks, the `OUTCOMES` script for the rest), and
//! updated from Redis's replies.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::metrics::{next_number, Metrics};
use crate::batch::End;
use crate::runtime::clock;
use crate::store::retention::{
    COUNTED_TTL_SECS, DEAD_CAP, DEAD_MAX_AGE_SECS, FAILED_CAP, STAT_WINDOW_SECS,
    STAT_WINDOW_TTL_SECS,
};
use crate::store::scripts;
use crate::worker::outcome::{AfterFailure, Outcome};
use crate::worker::state::WorkerState;

/// One queue's key names and fixed arguments for its groups, made once per queue and
/// stats window (`KeyCache`) rather than for every acker wake-up.
pub(super) struct QueueKeys {
    /// The stats window `counters` name.
    bucket: i64,
    /// `OUTCOMES`'s keys, all in the queue's Cluster slot.
    keys: [String; 10],
    /// `OUTCOMES`'s arguments after the time and before the outcomes.
    fixed: [String; 5],
    /// The counters a group adds to (see `Counter`), each in a slot of its own, and
    /// each one's guard against adding twice (`scripts::COUNT_ONCE`).
    counters: [String; 5],
    guards: [String; 5],
}

/// `QueueKeys` by queue index, kept by the acker across wake-ups.
#[derive(Default)]
pub(super) struct KeyCache(Vec<Option<Arc<QueueKeys>>>);

impl KeyCache {
    fn get(&mut self, state: &WorkerState, q: usize, now: f64) -> Arc<QueueKeys> {
        let bucket = (now as i64) / STAT_WINDOW_SECS;
        if self.0.len() <= q {
            self.0.resize(q + 1, None);
        }
        match &self.0[q] {
            Some(k) if k.bucket == bucket => k.clone(),
            _ => {
                let k = Arc::new(QueueKeys::new(state, q, bucket));
                self.0[q] = Some(k.clone());
                k
            }
        }
    }
}

impl QueueKeys {
    fn new(state: &WorkerState, q: usize, bucket: i64) -> QueueKeys {
        let k = &state.keys;
        let queue = &state.queues[q];
        let counters = [
            k.stat("processed"),
            k.stat_queue("processed", queue),
            k.stat_window("processed", bucket),
            k.stat("failed"),
            k.stat_window("failed", bucket),
        ];
        let guards = counters
            .each_ref()
            .map(|counter| k.counted(counter, &state.identity, q));
        QueueKeys {
            bucket,
            keys: [
                state.processing_key(q).to_string(),
                k.queue(queue),
                k.retry(queue),
                k.dead(queue),
                k.failed(queue),
                k.stat_queue("processed", queue),
                k.stat_queue("failed", queue),
                state.held_key(q).to_string(),
                k.stat_queue("expired", queue),
                k.flow_due(queue),
            ],
            fixed: [
                FAILED_CAP.to_string(),
                DEAD_CAP.to_string(),
                DEAD_MAX_AGE_SECS.to_string(),
                k.schedule_channel(),
                queue.clone(),
            ],
            counters,
            guards,
        }
    }
}

/// One queue's outcomes of a batch.
pub(super) struct Group {
    /// The queue's key names and fixed arguments.
    k: Arc<QueueKeys>,
    /// The batch's time (Redis's clock), `OUTCOMES`'s first fixed argument.
    now: f64,
    /// Unique jobs' locks to free, and leases' sets and waiting lists (after `keys`;
    /// the `U` and `L` outcomes name them).
    lock_keys: Vec<String>,
    /// Payloads of the acked jobs in the held set (an ack changes only its own job, so
    /// acks may go first whatever their order among other outcomes).
    acks: Vec<Vec<u8>>,
    /// Payloads of the acked jobs in the processing list.
    listed_acks: Vec<Vec<u8>>,
    /// The other outcomes, as `OUTCOMES` takes them; with none, the group is sent as
    /// plain commands instead of the script.
    others: Vec<Vec<u8>>,
    /// What is not yet added to each counter.
    uncounted: [usize; 5],
    /// This worker's number for the group's counts: the same each time they are sent.
    number: u64,
}

/// The counters of `Group::counters`, by index. The queue's processed counter is in
/// the queue's slot, so the script adds to it itself; the process-wide ones are
/// `COUNT_ONCE` calls next to the script, by what the group's outcomes should add (a
/// job a reaper already gave back is still counted: bookkeeping, not a decision), once
/// however often they are sent.
#[derive(Clone, Copy)]
pub(super) enum Counter {
    Processed = 0,
    QueueProcessed = 1,
    ProcessedWindow = 2,
    Failed = 3,
    FailedWindow = 4,
}

impl Counter {
    pub(super) fn is_window(self) -> bool {
        matches!(self, Counter::ProcessedWindow | Counter::FailedWindow)
    }
}

pub(super) const COUNTERS: [Counter; 5] = [
    Counter::Processed,
    Counter::QueueProcessed,
    Counter::ProcessedWindow,
    Counter::Failed,
    Counter::FailedWindow,
];

/// What one reply of a group's commands answers.
pub(super) enum Reply {
    /// The script (every outcome but the process-wide counts).
    Script,
    /// The `SREM` of every job in `acks`.
    Acks,
    /// The `LREM` of `listed_acks[i]`.
    ListedAck(usize),
    /// The `COUNT_ONCE` of a counter.
    Count(Counter),
}

/// Batch members that ended, by batch: (jid, how).
pub(super) type BatchEnds = BTreeMap<Box<str>, Vec<(String, End)>>;

/// What one acker wake-up sends: each queue's group, batch members' ends, and the
/// flushes to answer once all is applied. (Runs are counted into `metrics`.)
pub(super) struct Built {
    pub groups: BTreeMap<usize, Group>,
    pub flushes: Vec<oneshot::Sender<()>>,
    pub batch_ends: BatchEnds,
}

pub(super) fn build(
    state: &WorkerState,
    msgs: impl Iterator<Item = Outcome>,
    metrics: &mut Metrics,
    cache: &mut KeyCache,
) -> Built {
    // Redis's time: start logs, lease ends and the dead set's age are compared with
    // times other processes wrote (`runtime::clock`).
    let now = clock::now();
    let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
    let mut flushes = Vec::new();
    let mut batch_ends = BatchEnds::new();
    for msg in msgs {
        let q = match &msg {
            Outcome::Acked { q, .. }
            | Outcome::Failed { q, .. }
            | Outcome::GivenBack { q, .. }
            | Outcome::Buried { q, .. }
            | Outcome::Unlock { q, .. }
            | Outcome::EndLease { q, .. }
            | Outcome::Started { q, .. }
            | Outcome::Requeued { q, .. } => *q,
            Outcome::Flush(_) | Outcome::BatchEnd { .. } => usize::MAX,
        };
        match msg {
            Outcome::Flush(tx) => {
                flushes.push(tx);
                continue;
            }
            Outcome::BatchEnd { bid, jid, end } => {
                batch_ends.entry(bid).or_default().push((jid, end));
                continue;
            }
            _ => {}
        }
        let group = groups
            .entry(q)
            .or_insert_with(|| Group::new(cache.get(state, q, now), now));
        let args = &mut group.others;
        match msg {
            Outcome::Acked {
                raw, listed, ran, ..
            } => {
                metrics.add(ran, false, now);
                if listed {
                    group.listed_acks.push(raw);
                } else {
                    group.acks.push(raw);
                }
                group.count(&[
                    Counter::Processed,
                    Counter::QueueProcessed,
                    Counter::ProcessedWindow,
                ]);
            }
            Outcome::Failed {
                raw,
                record,
                then,
                ran,
                ..
            } => {
                metrics.add(ran, true, now);
                match then {
                    AfterFailure::Retry { at, payload } => args.extend([
                        b"R".to_vec(),
                        raw,
                        record.into_bytes(),
                        at.to_string().into_bytes(),
                        payload.into_bytes(),
                    ]),
                    AfterFailure::Dead { payload } => args.extend([
                        b"D".to_vec(),
                        raw,
                        record.into_bytes(),
                        payload.into_bytes(),
                    ]),
                }
                group.count(&[Counter::Failed, Counter::FailedWindow]);
            }
            Outcome::Buried {
                raw,
                entry,
                expired,
                ..
            } => {
                let op = if expired {
                    b"E".to_vec()
                } else {
                    b"X".to_vec()
                };
                args.extend([op, raw, entry.into_bytes()])
            }
            // Each RPUSH goes to the front: the newest first, so the oldest ends first.
            Outcome::GivenBack { raws, .. } => {
                for raw in raws.into_iter().rev() {
                    args.extend([b"Q".to_vec(), raw]);
                }
            }
            Outcome::Unlock { digest, jid, .. } => {
                group
                    .lock_keys
                    .push(state.keys.unique(&state.queues[q], &digest));
                let k = group.k.keys.len() + group.lock_keys.len();
                group
                    .others
                    .extend([b"U".to_vec(), k.to_string().into_bytes(), jid.into_bytes()]);
            }
            Outcome::Requeued { raw, .. } => args.extend([b"B".to_vec(), raw]),
            Outcome::EndLease { key, jid, .. } => {
                let queue = &state.queues[q];
                let k = group.k.keys.len() + group.lock_keys.len() + 1;
                group.lock_keys.extend([
                    state.keys.concurrency(queue, &key),
                    state.keys.concurrency_wait(queue, &key),
                ]);
                group.others.extend([
                    b"L".to_vec(),
                    k.to_string().into_bytes(),
                    format!("c:{key}").into_bytes(),
                    jid.into_bytes(),
                ]);
            }
            Outcome::Started { key, log, per, .. } => {
                let queue = &state.queues[q];
                let k = group.k.keys.len() + group.lock_keys.len() + 1;
                group.lock_keys.extend([
                    state.keys.throttle(queue, &key),
                    state.keys.throttle_wait(queue, &key),
                ]);
                group.others.extend([
                    b"S".to_vec(),
                    k.to_string().into_bytes(),
                    format!("t:{key}").into_bytes(),
                    log.into_bytes(),
                    per.to_string().into_bytes(),
                ]);
            }
            Outcome::Flush(_) | Outcome::BatchEnd { .. } => unreachable!("handled above"),
        }
    }
    Built {
        groups,
        flushes,
        batch_ends,
    }
}

impl Group {
    pub(super) fn new(k: Arc<QueueKeys>, now: f64) -> Group {
        Group {
            k,
            now,
            lock_keys: Vec::new(),
            acks: Vec::new(),
            listed_acks: Vec::new(),
            others: Vec::new(),
            uncounted: [0; 5],
            number: next_number(),
        }
    }

    pub(super) fn count(&mut self, counters: &[Counter]) {
        for c in counters {
            self.uncounted[*c as usize] += 1;
        }
    }

    /// Adds the group's commands to `pipe`; returns what each of their replies answers.
    pub(super) fn add_to(&self, pipe: &mut redis::Pipeline) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(self.listed_acks.len() + 7);
        let scripted = !self.others.is_empty();
        if scripted {
            let outcomes = self.acks.iter().chain(&self.listed_acks);
            let mut cmd = command(
                "EVALSHA",
                8 + self.k.keys.len()
                    + self.lock_keys.len()
                    + 2 * outcomes.clone().count()
                    + self.others.len(),
                64 + bytes(&self.k.keys)
                    + bytes(&self.lock_keys)
                    + bytes(&self.k.fixed)
                    + outcomes.map(|raw| 1 + raw.len()).sum::<usize>()
                    + bytes(&self.others),
            );
            cmd.arg(scripts::OUTCOMES.get_hash())
                .arg(self.k.keys.len() + self.lock_keys.len())
                .arg(&self.k.keys[..])
                .arg(&self.lock_keys)
                .arg(self.now.to_string())
                .arg(&self.k.fixed[..]);
            for raw in self.acks.iter().chain(&self.listed_acks) {
                cmd.arg(&b"A"[..]).arg(raw);
            }
            cmd.arg(&self.others);
            pipe.add_command(cmd);
            replies.push(Reply::Script);
        } else {
            if !self.acks.is_empty() {
                let mut cmd = command(
                    "SREM",
                    2 + self.acks.len(),
                    4 + self.k.keys[7].len() + bytes(&self.acks),
                );
                cmd.arg(&self.k.keys[7]).arg(&self.acks);
                pipe.add_command(cmd);
                replies.push(Reply::Acks);
            }
            for (i, raw) in self.listed_acks.iter().enumerate() {
                pipe.cmd("LREM").arg(&self.k.keys[0]).arg(-1).arg(raw);
                replies.push(Reply::ListedAck(i));
            }
        }
        for counter in COUNTERS {
            let (key, n) = (
                &self.k.counters[counter as usize],
                self.uncounted[counter as usize],
            );
            if n == 0 || (scripted && matches!(counter, Counter::QueueProcessed)) {
                continue;
            }
            let ttl = if counter.is_window() {
                STAT_WINDOW_TTL_SECS
            } else {
                0
            };
            let mut cmd = command(
                "EVALSHA",
                10,
                128 + key.len() + self.k.guards[counter as usize].len(),
            );
            cmd.arg(scripts::COUNT_ONCE.get_hash())
                .arg(2)
                .arg(key)
                .arg(&self.k.guards[counter as usize])
                .arg(self.number)
                .arg(COUNTED_TTL_SECS)
                .arg(ttl)
                .arg("")
                .arg(n);
            pipe.add_command(cmd);
            replies.push(Reply::Count(counter));
        }
        replies
    }

    /// Takes the replies to `add_to`'s commands: forgets what Redis applied. Returns
    /// the first refusal (what is left is sent again).
    pub(super) fn applied(
        &mut self,
        plan: Vec<Reply>,
        replies: impl Iterator<Item = redis::RedisResult<redis::Value>>,
    ) -> Option<redis::RedisError> {
        let mut refused = None;
        let mut done = vec![false; self.listed_acks.len()];
        for (what, reply) in plan.into_iter().zip(replies) {
            match (what, reply) {
                (Reply::Script, Ok(v)) => {
                    if let Ok((_, _, problems @ 1..)) =
                        redis::from_redis_value::<(i64, i64, i64)>(v)
                    {
                        tracing::warn!(
                            "{problems} FiberJob counter(s) in Redis are not integers and were not updated"
                        );
                    }
                    // The script counted the queue's processed jobs itself.
                    done.iter_mut().for_each(|d| *d = true);
                    self.acks.clear();
                    self.others.clear();
                    self.lock_keys.clear();
                    self.uncounted[Counter::QueueProcessed as usize] = 0;
                }
                (Reply::Acks, Ok(_)) => self.acks.clear(),
                (Reply::ListedAck(i), Ok(_)) => done[i] = true,
                (Reply::Count(c), Ok(v)) => {
                    if let Ok(1..) = redis::from_redis_value::<i64>(v) {
                        tracing::warn!(
                            "a FiberJob counter in Redis is not an integer and was not updated"
                        );
                    }
                    self.uncounted[c as usize] = 0;
                }
                (Reply::Count(c), Err(e)) if matches!(e.code(), Some("ERR" | "WRONGTYPE")) => {
                    // Not a number (another program wrote it): counting is bookkeeping.
                    tracing::warn!("a FiberJob counter in Redis was not updated: {e}");
                    self.uncounted[c as usize] = 0;
                }
                (_, Err(e)) => {
                    refused.get_or_insert(e);
                }
            }
        }
        let mut done = done.into_iter();
        self.listed_acks.retain(|_| !done.next().unwrap_or(false));
        refused
    }

    pub(super) fn is_done(&self) -> bool {
        self.acks.is_empty()
            && self.listed_acks.is_empty()
            && self.others.is_empty()
            && self.uncounted == [0; 5]
    }
}

/// A command sized for its arguments up front: an ack batch's payloads are copied into
/// it once, rather than into a buffer that grows (and is copied again) as it fills.
fn command(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// The bytes of some arguments.
fn bytes<T: AsRef<[u8]>>(args: &[T]) -> usize {
    args.iter().map(|a| a.as_ref().len()).sum()
}

#[cfg(test)]
mod tests;
