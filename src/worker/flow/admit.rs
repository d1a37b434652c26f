//! Admission of the limited jobs of a fetch (`limits_concurrency`, `throttle`): one
//! `ACQUIRE` call for all of them, before any is buffered. A job over a limit leaves
//! this process in that call (to its key's waiting list in Redis), so it never takes a
//! worker slot nor is looked at again until room frees (see `store::flow_scripts`).
//! Windows and leases are times on the Redis's own clock (`TIME`, read in the
//! script), whatever this process's clock says.

use crate::runtime::conn::Conn;
use crate::store::flow_scripts::{ACQUIRE, ACQUIRE_WIDTH};
use crate::store::payload::Parsed;
use crate::worker::state::WorkerState;

/// A fetched job: its payload, parsed, and whether it is in the processing list.
pub type Fetched = (String, Parsed, bool);

/// Keeps the jobs that may run now, in order; the others wait in Redis. On an error
/// the limited jobs are dropped from `jobs` too: they are in this process's held set,
/// and the caller gives them back (`reconcile`) before fetching again.
pub async fn admit(
    state: &WorkerState,
    q: usize,
    c: &mut Conn,
    jobs: Vec<Fetched>,
) -> (Vec<Fetched>, redis::RedisResult<()>) {
    if !jobs.iter().any(|(_, p, _)| p.is_limited()) {
        return (jobs, Ok(()));
    }
    let k = &state.keys;
    let queue = &state.queues[q];
    let mut inv = ACQUIRE.prepare_invoke();
    inv.key(state.held_key(q))
        .key(state.processing_key(q))
        .key(k.queue(queue))
        .key(k.flow_due(queue))
        .arg(k.schedule_channel())
        .arg(queue);
    let mut n_keys = 4;
    for (raw, job, _) in jobs.iter().filter(|(_, p, _)| p.is_limited()) {
        let mut args: Vec<String> = Vec::with_capacity(ACQUIRE_WIDTH);
        args.extend([raw.clone(), job.jid.to_string()]);
        match job.concurrency() {
            Some(c) => {
                inv.key(k.concurrency(queue, &c.key))
                    .key(k.concurrency_wait(queue, &c.key));
                args.extend([
                    (n_keys + 1).to_string(),
                    c.to.to_string(),
                    c.lease.to_string(),
                    format!("c:{}", c.key),
                ]);
                n_keys += 2;
            }
            None => args.extend(["0", "0", "0", ""].map(String::from)),
        }
        match job.throttle() {
            Some(t) => {
                inv.key(k.throttle(queue, &t.key))
                    .key(k.throttle_wait(queue, &t.key));
                args.extend([
                    (n_keys + 1).to_string(),
                    t.limit.to_string(),
                    t.per.to_string(),
                    job.throttle_member(),
                    format!("t:{}", t.key),
                ]);
                n_keys += 2;
            }
            None => args.extend(["0", "0", "0", "", ""].map(String::from)),
        }
        inv.arg(args);
    }
    match inv.invoke_async::<Vec<i64>>(c).await {
        Ok(flags) => {
            let mut flags = flags.into_iter();
            let kept = jobs
                .into_iter()
                .filter(|(_, p, _)| !p.is_limited() || flags.next() == Some(1))
                .collect();
            (kept, Ok(()))
        }
        Err(e) => {
            let kept = jobs
                .into_iter()
                .filter(|(_, p, _)| !p.is_limited())
                .collect();
            (kept, Err(e))
        }
    }
}
