//! The cron ticker of a worker: sleeps until the next tick of the cron classes it
//! loaded and fires it, once across every process (`CRON_FIRE`: the check against the
//! class's last fired tick, the tick's lock and the enqueue in one script). Ticks are
//! the expression's exact times, so every process names the same tick; a tick missed
//! while no worker ran is not replayed. Time is Redis's (`runtime::clock`, and `TIME`
//! in the script), so workers whose clocks disagree by minutes fire each tick once, on
//! time.
//!
//! Every tick is tried until `FIRE_PATIENCE` after its time, in order: a tick that
//! comes due while an earlier one waits for Redis (full, failing over) is fired after
//! it, not skipped. With `redis_wait_replicas`, a fire is followed by `WAIT`; a
//! connection lost before the replicas confirmed it (a master killed) fires it again
//! — a no-op where the tick is stored, a new fire on a promoted replica that never got
//! it — so a failover does not lose a tick; so is, for a few seconds, one that fewer
//! replicas confirmed than asked (a master being demoted takes writes it then drops).

use std::sync::Arc;

use chrono::{DateTime, Local, Utc};

use super::state::WorkerState;
use crate::cron_expr::CronSpec;
use crate::runtime::clock;
use crate::runtime::outage::Outage;
use crate::store::{payload, scripts};

/// One cron job a worker ticks for.
pub struct CronDef {
    pub class: String,
    pub queue: String,
    pub spec: CronSpec,
    /// Fields every tick's payload gets (see `payload::cron_payload`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// How long a tick's lock lives. Ticks are exact schedule times, not process clocks,
/// so processes agree on which tick it is; the lock only has to outlive the few
/// milliseconds in which every process tries to fire the same tick (the class's last
/// fired tick, which `CRON_FIRE` also checks, guards it for good).
const TICK_LOCK_SECS: u64 = 600;
/// How long a tick fewer replicas confirmed than `redis_wait_replicas` asks is fired
/// again (longer than Sentinel takes to demote an old master), and how often.
const CONFIRM_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
const CONFIRM_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);
/// How long after its time a tick that Redis cannot take yet is tried before it is
/// given up (and logged): a stale daily report is better skipped than run late, and
/// a frequent job's missed ticks are not fired in a burst after a long outage.
const FIRE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Now on Redis's clock (`runtime::clock`).
fn redis_now() -> DateTime<Utc> {
    let micros = (clock::now() * 1e6) as i64;
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_else(Utc::now)
}

fn next(def: &CronDef, after: &DateTime<Utc>, utc: bool) -> Option<DateTime<Utc>> {
    if utc {
        def.spec.next_after(after)
    } else {
        def.spec
            .next_after(&after.with_timezone(&Local))
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Fires each definition's ticks, from the first one after the worker started: a
/// tick missed while no worker ran is not replayed.
pub async fn run(state: Arc<WorkerState>, defs: Vec<CronDef>, utc: bool) {
    // The first heartbeat learned Redis's clock.
    state.wait_registered().await;
    let now = redis_now();
    let mut upcoming: Vec<Option<DateTime<Utc>>> =
        defs.iter().map(|d| next(d, &now, utc)).collect();
    while let Some(earliest) = upcoming.iter().flatten().min().copied() {
        let wait = (earliest - redis_now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let now = redis_now();
        for (def, slot) in defs.iter().zip(upcoming.iter_mut()) {
            let Some(tick) = *slot else { continue };
            if tick > now {
                continue;
            }
            if patience_left(tick.timestamp()).is_zero() {
                // The process was stopped or starved past the tick's patience: the
                // stale ticks are not fired in a burst; the first still in time is.
                tracing::error!(
                    "cron {}: tick {} skipped: not fired within {}s of its time",
                    def.class,
                    tick.timestamp(),
                    FIRE_PATIENCE.as_secs()
                );
                *slot = next(def, &(now - FIRE_PATIENCE).max(tick), utc);
                continue;
            }
            fire(&state, def, tick.timestamp()).await;
            // The next tick after this one, even if it is due already (this one waited
            // for Redis): the loop fires it next, or gives it up past its patience.
            *slot = next(def, &tick, utc);
        }
    }
}

/// How long from now until `FIRE_PATIENCE` after `tick` (seconds on Redis's clock).
fn patience_left(tick: i64) -> std::time::Duration {
    let ends = tick as f64 + FIRE_PATIENCE.as_secs_f64();
    std::time::Duration::from_secs_f64((ends - clock::now()).max(0.0))
}

/// One attempt: the fire (1 fired, 0 fired already, negative: that many ms early on
/// Redis's clock), then, when fires wait for replicas and this process fired it
/// (`again`: an earlier attempt did), how many replicas confirmed the writes.
async fn attempt(
    state: &WorkerState,
    def: &CronDef,
    tick: i64,
    payload: &str,
    again: bool,
) -> redis::RedisResult<(i64, Option<usize>)> {
    let mut c = state.redis.connect(None).await?;
    let fired: i64 = scripts::CRON_FIRE
        .key(state.keys.cron_tick(&def.queue, &def.class, tick))
        .key(state.keys.queue(&def.queue))
        .key(state.keys.cron_last(&def.queue))
        .arg(TICK_LOCK_SECS)
        .arg(payload)
        .arg(&def.class)
        .arg(tick)
        .invoke_async(&mut c)
        .await?;
    let replicas = state.redis.wait_replicas();
    // Another process fired it (0): that one waits for its replicas.
    if fired < 0 || replicas == 0 || (fired == 0 && !again) {
        return Ok((fired, None));
    }
    // Not the enqueues' half of `network_timeout`: with replicas down, a tick is fired
    // again for `CONFIRM_PATIENCE`, not longer.
    let confirmed: usize = redis::cmd("WAIT")
        .arg(replicas)
        .arg((state.timeout.as_millis() / 2).clamp(1, 1000) as u64)
        .query_async(&mut c)
        .await?;
    Ok((fired, Some(confirmed)))
}

async fn fire(state: &WorkerState, def: &CronDef, tick: i64) {
    let mut outage = Outage::new(format!("cron {}", def.class));
    let give_up = tokio::time::Instant::now() + patience_left(tick);
    let payload = payload::cron_payload(&def.class, &def.queue, tick, payload::now(), &def.extra);
    // Until when a fire fewer replicas confirmed than asked is fired again.
    let mut confirming: Option<tokio::time::Instant> = None;
    loop {
        let patient = tokio::time::Instant::now() < give_up;
        match attempt(state, def, tick, &payload, confirming.is_some()).await {
            // Early on Redis's clock (this process's offset is a few ms off): wait for it.
            Ok((early_ms, _)) if early_ms < 0 && patient => {
                let wait = early_ms
                    .unsigned_abs()
                    .min(FIRE_PATIENCE.as_millis() as u64);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            // Fewer replicas than asked have this process's fire: a master being
            // demoted by a failover (it takes writes until Sentinel turns it into a
            // replica, and then drops them), or replicas resyncing. Fired again for a
            // few seconds: a no-op where the tick is stored, a fire on the new master
            // where it was lost. Only by the process that fired it: the others go on
            // to the next tick on time (a ticker behind the others would find the
            // ticks it is late for refused as older than the last fired).
            Ok((fired, Some(confirmed)))
                if confirmed < state.redis.wait_replicas()
                    && patient
                    && (fired == 1 || confirming.is_some())
                    && *confirming
                        .get_or_insert_with(|| tokio::time::Instant::now() + CONFIRM_PATIENCE)
                        > tokio::time::Instant::now() =>
            {
                tokio::time::sleep(CONFIRM_PAUSE).await;
            }
            Ok((fired, confirmed)) => {
                if fired == 1 {
                    tracing::debug!("cron {} fired tick {tick}", def.class);
                }
                if let Some(confirmed) = confirmed
                    .filter(|&n| n < state.redis.wait_replicas())
                    .filter(|_| fired == 1 || confirming.is_some())
                {
                    tracing::warn!(
                        "cron {}: tick {tick} fired, but only {confirmed} replica(s) confirmed it (redis_wait_replicas {}): a failover now may lose it",
                        def.class,
                        state.redis.wait_replicas()
                    );
                }
                outage.recovered();
                return;
            }
            Err(e) if patient => {
                if crate::error::is_connection_problem(&e) {
                    outage.failed(&e).await
                } else {
                    outage.refused(&e).await
                }
            }
            Err(e) => {
                tracing::error!(
                    "cron {}: tick {tick} skipped: Redis did not take it within {}s of its time: {}",
                    def.class,
                    FIRE_PATIENCE.as_secs(),
                    crate::error::Error::from(e)
                );
                return;
            }
        }
    }
}
