//! Every Redis key FiberJob uses, built in one place from a configurable prefix.
//!
//! Keys that one Lua script touches together carry the queue name as a Redis Cluster
//! hash tag (`{default}`), so a script's keys always live in one slot: everything of
//! a queue — its list, sets, processing lists, dead set, failure records, counters,
//! cron ticks — is in the queue's slot. The few process-wide keys (`queues`,
//! `processes`, `process:<id>`, the total counters and throughput windows, `cron`,
//! the reaper lock, the web secret) are only ever touched by single-key commands, so
//! they may live anywhere. docs/ARCHITECTURE.md lists each key with its slot.

/// Builds key names for one prefix (default `fiber_job`).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// Ready jobs of a queue: LPUSH to enqueue, taken from the right (FIFO).
    pub fn queue(&self, queue: &str) -> String {
        format!("{}:queue:{{{}}}", self.prefix, queue)
    }

    /// Jobs scheduled with `perform_in`/`perform_at`, score = run-at epoch seconds.
    pub fn schedule(&self, queue: &str) -> String {
        format!("{}:schedule:{{{}}}", self.prefix, queue)
    }

    /// Jobs waiting for a retry, score = run-at epoch seconds.
    pub fn retry(&self, queue: &str) -> String {
        format!("{}:retry:{{{}}}", self.prefix, queue)
    }

    /// Jobs one process has taken from a queue and not yet acknowledged, as a list:
    /// the ones its blocking fetch (`BRPOPLPUSH`) took, and a payload taken while the
    /// same bytes were already held. The rest are in `held`.
    pub fn processing(&self, queue: &str, identity: &str) -> String {
        format!("{}:processing:{{{}}}:{}", self.prefix, queue, identity)
    }

    /// Jobs one process has taken from a queue and not yet acknowledged, as a set of
    /// payloads: what the batch fetch takes goes here, so an ack is an O(1) `SREM`
    /// (the list's `LREM` scans past every older job still running).
    pub fn held(&self, queue: &str, identity: &str) -> String {
        format!("{}:held:{{{}}}:{}", self.prefix, queue, identity)
    }

    /// Set of every queue name ever enqueued to.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// Set of worker identities that have registered (live or not yet reaped).
    pub fn processes(&self) -> String {
        format!("{}:processes", self.prefix)
    }

    /// Heartbeat hash of one worker process (expires when the process stops beating).
    pub fn process(&self, identity: &str) -> String {
        format!("{}:process:{}", self.prefix, identity)
    }

    /// A queue's capped list of failure records, newest first.
    pub fn failed(&self, queue: &str) -> String {
        format!("{}:failed:{{{}}}", self.prefix, queue)
    }

    /// A queue's dead set: jobs that exhausted their retries or could not be run,
    /// score = died at.
    pub fn dead(&self, queue: &str) -> String {
        format!("{}:dead:{{{}}}", self.prefix, queue)
    }

    /// Pub/sub channel that tells schedulers a job was scheduled (payload: the queue).
    pub fn schedule_channel(&self) -> String {
        format!("{}:scheduled", self.prefix)
    }

    /// Pub/sub channel that wakes idle fetchers (payload: the queue). Published when a
    /// queue's list goes from empty to not empty: by the client after an enqueue, and by
    /// the scripts that move jobs into a queue (`WAKE_LUA` derives the same name).
    pub fn ready_channel(&self) -> String {
        format!("{}:ready", self.prefix)
    }

    /// Names of the paused queues (`Queue.pause`): workers start none of their jobs.
    pub fn paused(&self) -> String {
        format!("{}:paused", self.prefix)
    }

    /// Pub/sub channel on which a pause or resume is announced (payload: the queue),
    /// so workers apply it at once; each heartbeat re-reads `paused` as the backstop.
    pub fn pause_channel(&self) -> String {
        format!("{}:pause", self.prefix)
    }

    /// Counters: `stat:processed`, `stat:failed`, and per queue `stat:processed:{q}`.
    pub fn stat(&self, name: &str) -> String {
        format!("{}:stat:{}", self.prefix, name)
    }

    /// Count of one 10-second window (`bucket` = epoch seconds / 10), kept an hour, for
    /// the dashboard's throughput chart.
    pub fn stat_window(&self, name: &str, bucket: i64) -> String {
        format!("{}:stat:{}:at:{}", self.prefix, name, bucket)
    }

    pub fn stat_queue(&self, name: &str, queue: &str) -> String {
        format!("{}:stat:{}:{{{}}}", self.prefix, name, queue)
    }

    /// The guard of worker `identity`'s adds to `counter` (`scripts::COUNT_ONCE`), `part`
    /// telling apart the adds of one batch (one per queue): in the counter's Cluster
    /// slot (its hash tag, or the counter's whole name as one), kept `COUNTED_TTL_SECS`.
    pub fn counted(&self, counter: &str, identity: &str, part: usize) -> String {
        if counter.contains('{') {
            format!("{counter}:counted:{identity}:{part}")
        } else {
            format!("{{{counter}}}:counted:{identity}:{part}")
        }
    }

    /// Cron definitions (hash: class name → JSON definition).
    pub fn cron(&self) -> String {
        format!("{}:cron", self.prefix)
    }

    /// Last tick each cron class of a queue fired (hash: class name → epoch seconds).
    pub fn cron_last(&self, queue: &str) -> String {
        format!("{}:cron:last:{{{}}}", self.prefix, queue)
    }

    /// The lock that makes one cron tick run once across processes (tagged with the
    /// queue, so the firing script's keys share a slot).
    pub fn cron_tick(&self, queue: &str, class: &str, tick: i64) -> String {
        format!("{}:cron:tick:{{{}}}:{}:{}", self.prefix, queue, class, tick)
    }

    /// A unique job's lock (`unique_for`): holds the jid of the job that took it, with
    /// the TTL `unique_for`; `digest` names the class, queue and arguments.
    pub fn unique(&self, queue: &str, digest: &str) -> String {
        format!("{}:unique:{{{}}}:{}", self.prefix, queue, digest)
    }

    /// A concurrency-limited key's leases (`limits_concurrency`): a sorted set of the
    /// jids allowed to run, score = when the lease ends (epoch seconds). `key` is the
    /// job's `concurrency.key` (its scope and key).
    pub fn concurrency(&self, queue: &str, key: &str) -> String {
        format!("{}:climit:{{{}}}:{}", self.prefix, queue, key)
    }

    /// Jobs waiting for a lease of `concurrency(queue, key)`, oldest first.
    pub fn concurrency_wait(&self, queue: &str, key: &str) -> String {
        format!("{}:cwait:{{{}}}:{}", self.prefix, queue, key)
    }

    /// A throttled key's recent starts (`throttle`): a sorted set, score = when each
    /// was let through; the window is the job's `throttle.per`.
    pub fn throttle(&self, queue: &str, key: &str) -> String {
        format!("{}:throttle:{{{}}}:{}", self.prefix, queue, key)
    }

    /// Jobs waiting for room in `throttle(queue, key)`, oldest first.
    pub fn throttle_wait(&self, queue: &str, key: &str) -> String {
        format!("{}:twait:{{{}}}:{}", self.prefix, queue, key)
    }

    /// When to look at a queue's limited keys that have waiting jobs: a sorted set of
    /// members `c:<key>` (concurrency: its earliest lease end) and `t:<key>` (throttle:
    /// when its window next has room); the scheduler starts what is due.
    pub fn flow_due(&self, queue: &str) -> String {
        format!("{}:flow-due:{{{}}}", self.prefix, queue)
    }

    /// The keys of a `flow_due` member: (its lease set or start log, its waiting
    /// list), or None for a member that is neither.
    pub fn flow_member(&self, queue: &str, member: &str) -> Option<(String, String)> {
        if let Some(key) = member.strip_prefix("c:") {
            Some((
                self.concurrency(queue, key),
                self.concurrency_wait(queue, key),
            ))
        } else {
            member
                .strip_prefix("t:")
                .map(|key| (self.throttle(queue, key), self.throttle_wait(queue, key)))
        }
    }

    /// An iterable job's checkpoint (`IterableJob`), by jid: a hash of its cursor
    /// (JSON), iterations done, seconds run, and `cancelled` once cancelled. Expires a
    /// while after its last write.
    pub fn iteration(&self, queue: &str, jid: &str) -> String {
        format!("{}:iter:{{{}}}:{}", self.prefix, queue, jid)
    }

    /// Lock that lets one live process at a time reap dead processes' jobs.
    pub fn reaper_lock(&self) -> String {
        format!("{}:reaper:lock", self.prefix)
    }

    /// The key the Web UI signs its CSRF tokens with, shared by every web process.
    pub fn web_secret(&self) -> String {
        format!("{}:web:secret", self.prefix)
    }

    /// One batch's keys (`FiberJob::Batch`), all in the batch's own Cluster slot
    /// (`{b:<bid>}`), in the order the batch scripts take them (`batch_scripts.rs`):
    /// - `batch`: a hash of its description, `created_at`, `total`, the callbacks of
    ///   each event (`cb:<event>`), and when each event fired (`<event>_at`);
    /// - `batch-pending`, `batch-failed`, `batch-dead`: sets of jids — not yet
    ///   succeeded; of those, failed at least once; of those, dead;
    /// - `batch-jobs`: a list of every member, `<jid> <class>`, oldest last;
    /// - `batch-opens`: a sorted set of the `jobs { }` blocks running now (a token
    ///   each, score = when it counts as abandoned);
    /// - `batch-outbox`: callbacks fired and not yet in their queue.
    ///
    /// All expire `Batch::TTL` after the batch's last change.
    pub fn batch(&self, bid: &str) -> [String; 7] {
        [
            "batch",
            "batch-pending",
            "batch-failed",
            "batch-dead",
            "batch-jobs",
            "batch-opens",
            "batch-outbox",
        ]
        .map(|kind| format!("{}:{kind}:{{b:{bid}}}", self.prefix))
    }

    /// Every batch, score = when it was created (the Web UI's list; entries whose
    /// batch expired are dropped when read).
    pub fn batches(&self) -> String {
        format!("{}:batches", self.prefix)
    }

    /// Batches to look at again, score = when: a `jobs { }` block's abandonment
    /// deadline, or callbacks fired by a block's end that its process may not have
    /// delivered. The reaper looks (`worker/batches.rs`).
    pub fn batch_sweep(&self) -> String {
        format!("{}:batch-sweep", self.prefix)
    }

    /// Marks that batch callback `jid` was put in its queue (in the queue's slot), so
    /// a delivery repeated after a crash enqueues it once.
    pub fn batch_callback(&self, queue: &str, jid: &str) -> String {
        format!("{}:batch-cb:{{{}}}:{}", self.prefix, queue, jid)
    }

    /// A queue as Sidekiq keeps it (`config.sidekiq_compat`): a list, `LPUSH`ed by
    /// Sidekiq's client. Sidekiq's keys take no prefix (and no hash tag).
    pub fn sidekiq_queue(&self, queue: &str) -> String {
        format!("queue:{queue}")
    }

    /// Per-class metrics of one minute (`epoch seconds / 60`): a hash of `<class>|p`
    /// (processed), `<class>|f` (failed), `<class>|s` (microseconds run) and
    /// `<class>|b<i>` (runs in the execution-time histogram's bin i). Expires after
    /// `METRICS_MINUTE_TTL_SECS`.
    pub fn metrics_minute(&self, minute: i64) -> String {
        format!("{}:metrics:{minute}", self.prefix)
    }

    /// The same fields since the metrics began (Prometheus's counters), never expiring:
    /// a field per class and bin.
    pub fn metrics_total(&self) -> String {
        format!("{}:metrics:total", self.prefix)
    }

    /// How many times a job (by jid) was recovered from a dead process.
    pub fn recoveries(&self, queue: &str, jid: &str) -> String {
        format!("{}:recoveries:{{{}}}:{}", self.prefix, queue, jid)
    }
}

/// Sidekiq's sorted sets of jobs to run later and of retries (score = when).
pub const SIDEKIQ_SCHEDULE: &str = "schedule";
pub const SIDEKIQ_RETRY: &str = "retry";
/// Sidekiq's dead set (score = when the job died).
pub const SIDEKIQ_DEAD: &str = "dead";

/// A Lua function for the scripts that move jobs into a queue: `wake(queue key, n)`
/// publishes the queue's name on the ready channel when the `n` jobs just pushed are
/// all the list holds (it was empty, so fetchers may be idle). The channel and the
/// name are read back from the queue key's format above (`prefix:queue:{name}`).
pub const WAKE_LUA: &str = r"
local function wake(qkey, n)
  if n > 0 and redis.call('LLEN', qkey) == n then
    local prefix, name = string.match(qkey, '^(.*):queue:{(.*)}$')
    if prefix then redis.call('PUBLISH', prefix .. ':ready', name) end
  end
end
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_share_a_hash_tag() {
        let k = Keys::new("fj");
        assert_eq!(k.queue("default"), "fj:queue:{default}");
        assert_eq!(
            k.processing("default", "h:1:a"),
            "fj:processing:{default}:h:1:a"
        );
        assert_eq!(k.held("default", "h:1:a"), "fj:held:{default}:h:1:a");
        assert_eq!(k.schedule("high"), "fj:schedule:{high}");
        assert_eq!(k.retry("high"), "fj:retry:{high}");
    }
}
