//! The cron ticker of a worker: sleeps until the next tick of the cron classes it
//! loaded and fires it, once across every process (`CRON_FIRE`: the check against the
//! class's last fired tick, the tick's lock and the enqueue in one script). Ticks are
//! the expression's exact times, so every process names the same tick; a tick missed
//! while no worker ran is not replayed. Time is Redis's (`runtime::clock`, and `TIME`
//! in the script), so workers whose clocks disagree by minutes fire each tick once, on
//! time.

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
/// How long a tick that cannot reach Redis is retried before it is given up (and
/// logged): past this the next tick is near for frequent jobs, and a stale daily
/// report is better skipped than run late.
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
            fire(&state, def, tick.timestamp()).await;
            *slot = next(def, &tick.max(now), utc);
        }
    }
}

async fn fire(state: &WorkerState, def: &CronDef, tick: i64) {
    let mut outage = Outage::new(format!("cron {}", def.class));
    let give_up = tokio::time::Instant::now() + FIRE_PATIENCE;
    let payload = payload::cron_payload(&def.class, &def.queue, tick, payload::now(), &def.extra);
    loop {
        let result: redis::RedisResult<i64> = async {
            let mut c = state.redis.connect(None).await?;
            let fired: i64 = scripts::CRON_FIRE
                .key(state.keys.cron_tick(&def.queue, &def.class, tick))
                .key(state.keys.queue(&def.queue))
                .key(state.keys.cron_last(&def.queue))
                .arg(TICK_LOCK_SECS)
                .arg(&payload)
                .arg(&def.class)
                .arg(tick)
                .invoke_async(&mut c)
                .await?;
            Ok(fired)
        }
        .await;
        match result {
            // Early on Redis's clock (this process's offset is a few ms off): wait for it.
            Ok(early_ms) if early_ms < 0 && tokio::time::Instant::now() < give_up => {
                let wait = early_ms
                    .unsigned_abs()
                    .min(FIRE_PATIENCE.as_millis() as u64);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            Ok(fired) => {
                if fired == 1 {
                    tracing::debug!("cron {} fired tick {tick}", def.class);
                }
                outage.recovered();
                return;
            }
            Err(e) if tokio::time::Instant::now() < give_up => {
                if crate::error::is_connection_problem(&e) {
                    outage.failed(&e).await
                } else {
                    outage.refused(&e).await
                }
            }
            Err(e) => {
                tracing::error!(
                    "cron {}: tick {tick} skipped after {}s: {}",
                    def.class,
                    FIRE_PATIENCE.as_secs(),
                    crate::error::Error::from(e)
                );
                return;
            }
        }
    }
}
