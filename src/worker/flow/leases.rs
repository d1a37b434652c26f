//! Lease renewal: a job admitted under `limits_concurrency` holds a lease on its key,
//! and one admitted under `throttle` a hold in its start log until it starts; both
//! expire unless renewed, so a crashed process's slots free themselves. The heartbeat
//! calls `renew` on every beat for the leases this process holds. Lease ends and holds
//! are times on the Redis's own clock (`TIME`, read in the script): other processes
//! compare them.

use crate::runtime::conn::Conn;
use crate::store::flow_scripts;
use crate::worker::dispatch::LeaseKind;
use crate::worker::state::WorkerState;

/// Renews the concurrency leases of the limited jobs this process runs or holds, and
/// the throttle holds of those not started (`flow_scripts::RENEW`): one call per queue
/// that has any.
pub async fn renew(state: &WorkerState, c: &mut Conn) -> redis::RedisResult<()> {
    let mut leases = state.dispatcher.leases();
    if leases.is_empty() {
        return Ok(());
    }
    leases.sort_by_key(|l| l.queue);
    for one_queue in leases.chunk_by(|a, b| a.queue == b.queue) {
        let queue = &state.queues[one_queue[0].queue];
        let mut renew = flow_scripts::RENEW.prepare_invoke();
        for (i, lease) in one_queue.iter().enumerate() {
            let key = match lease.kind {
                LeaseKind::Concurrency => state.keys.concurrency(queue, &lease.key),
                LeaseKind::ThrottleHold => state.keys.throttle(queue, &lease.key),
            };
            renew
                .key(key)
                .arg(i + 1)
                .arg(&lease.member)
                .arg(lease.seconds);
        }
        renew.invoke_async::<()>(c).await?;
    }
    Ok(())
}
