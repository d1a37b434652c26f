//! The engine's ceiling (`bench/run CEILING`): the whole worker — fetchers, dispatcher,
//! acker, heartbeats, against a real Redis — with Rust threads in Ruby's place, each
//! taking a job and acking it at once. What W1 reaches beside this is how close the
//! Ruby path gets to what the engine and Redis allow on the machine.
//!
//! An ignored test, so it can drive the private engine: `cargo test --release --lib
//! ceiling -- --ignored --nocapture` with `CEILING_REDIS_URL` (jobs pre-enqueued on
//! `default` by the bench), `N` (100,000), `CONC` (10) and `PREFETCH` (100). Prints one
//! JSON line: jobs/s from the first take to the N-th ack.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Engine, QueueSettings, Settings};
use crate::runtime::cancel::Cancel;
use crate::runtime::settings::TargetSettings;
use crate::worker::prefetch::Prefetch;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a benchmark: bench/run CEILING runs it against a Redis of its own"]
fn engine_ceiling() {
    let Ok(url) = std::env::var("CEILING_REDIS_URL") else {
        eprintln!("engine_ceiling: skipped (set CEILING_REDIS_URL to a Redis with the jobs; bench/run CEILING does)");
        return;
    };
    let (n, conc) = (env_usize("N", 100_000), env_usize("CONC", 10));
    let engine = Arc::new(
        Engine::new(Settings {
            target: TargetSettings {
                url,
                timeout: Duration::from_secs(5),
                ..TargetSettings::default()
            },
            prefix: "fiber_job".into(),
            identity: format!("ceiling:{}:0", std::process::id()),
            queues: vec![QueueSettings {
                name: "default".into(),
                limit: conc,
                prefetch: Prefetch::Fixed(env_usize("PREFETCH", 100)),
            }],
            sidekiq_compat: false,
            health: None,
        })
        .expect("an engine"),
    );
    engine.start(Vec::new(), true).expect("started");
    let done = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(Mutex::new(None::<Instant>));
    let quit = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..conc)
        .map(|_| {
            let (engine, done, first, quit) =
                (engine.clone(), done.clone(), first.clone(), quit.clone());
            std::thread::spawn(move || {
                while !quit.load(Ordering::Relaxed) {
                    let Some(job) = engine.take_blocking(Duration::from_millis(100), &quit) else {
                        continue;
                    };
                    first.lock().unwrap().get_or_insert_with(Instant::now);
                    engine.ack(job.id);
                    if done.fetch_add(1, Ordering::AcqRel) + 1 >= n {
                        return Some(Instant::now());
                    }
                }
                None
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.load(Ordering::Acquire) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    quit.store(true, Ordering::Relaxed);
    let last = consumers
        .into_iter()
        .filter_map(|c| c.join().expect("a consumer"))
        .max()
        .expect("every job within 600 s");
    let took = last - first.lock().unwrap().expect("a first job");
    println!(
        "{{\"jobs\": {n}, \"concurrency\": {conc}, \"jobs_per_s\": {:.0}}}",
        n as f64 / took.as_secs_f64()
    );
    engine.request_stop();
    engine
        .shutdown(&Cancel::default())
        .expect("a clean shutdown");
}
