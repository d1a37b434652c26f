//! Tests of the dispatcher (`mod.rs`): limits, prefetch room, order, waking.

use super::*;
use crate::store::payload::parse;

fn jobs(n: usize) -> Vec<(String, Parsed, bool)> {
    (0..n)
        .map(|i| {
            let raw = format!(r#"{{"class":"A","args":[{i}],"jid":"j{i}"}}"#);
            let p = parse(&raw).unwrap();
            (raw, p, false)
        })
        .collect()
}

#[test]
fn hands_out_no_more_than_the_limit() {
    let d = Dispatcher::new(&[(3, Prefetch::Fixed(0))]).unwrap();
    assert_eq!(d.capacity(0), Some(3));
    d.buffer(0, jobs(5));
    assert_eq!(d.capacity(0), Some(0));
    let taken = d.take(10);
    assert_eq!(taken.len(), 3);
    assert!(d.take(10).is_empty());
    d.finish(taken[0].id).unwrap();
    let more = d.take(10);
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].args, vec![serde_json::Value::from(3)], "FIFO order");
}

#[test]
fn a_fetch_waits_for_room_for_half_the_prefetch() {
    let d = Dispatcher::new(&[(2, Prefetch::Fixed(4))]).unwrap();
    assert_eq!(d.capacity(0), Some(6));
    d.buffer(0, jobs(6));
    let taken = d.take(2);
    assert_eq!(d.capacity(0), Some(0), "full");
    d.finish(taken[0].id);
    d.take(1);
    assert_eq!(
        d.capacity(0),
        Some(0),
        "1 of room, 3 buffered: not worth a fetch"
    );
    d.finish(taken[1].id);
    d.take(1);
    assert_eq!(d.capacity(0), Some(2), "half the prefetch");
    let d = Dispatcher::new(&[(2, Prefetch::Fixed(0))]).unwrap();
    d.buffer(0, jobs(2));
    let taken = d.take(2);
    d.finish(taken[0].id);
    assert_eq!(d.capacity(0), Some(1), "no prefetch: every free slot");
}

#[test]
fn queues_are_served_round_robin() {
    let d = Dispatcher::new(&[(1, Prefetch::Fixed(0)), (1, Prefetch::Fixed(0))]).unwrap();
    d.buffer(0, jobs(1));
    d.buffer(1, jobs(1));
    let taken = d.take(10);
    assert_eq!(
        taken.iter().map(|h| h.queue).collect::<Vec<_>>(),
        vec![0, 1]
    );
}

#[test]
fn one_at_a_time_the_queues_take_turns_too() {
    let d = Dispatcher::new(&[(5, Prefetch::Fixed(0)), (5, Prefetch::Fixed(0))]).unwrap();
    d.buffer(0, jobs(3));
    d.buffer(1, jobs(1));
    let order: Vec<usize> = std::iter::from_fn(|| d.take_one().map(|t| t.queue)).collect();
    assert_eq!(order, vec![0, 1, 0, 0]);
    assert!(d.take_one().is_none());
    d.stop();
    d.buffer(0, jobs(1));
    assert!(
        d.take_one().is_none(),
        "nothing is handed out once stopping"
    );
}

#[test]
fn stop_returns_pushes_and_drains_buffers() {
    let d = Dispatcher::new(&[(1, Prefetch::Fixed(1))]).unwrap();
    d.buffer(0, jobs(2));
    d.stop();
    assert_eq!(d.capacity(0), None);
    assert!(d.take(1).is_empty());
    assert_eq!(d.buffer(0, jobs(1)).len(), 1);
    assert_eq!(d.drain_buffers().len(), 2);
}

#[test]
fn take_blocking_wakes_on_push_from_another_thread() {
    let d = std::sync::Arc::new(Dispatcher::new(&[(1, Prefetch::Fixed(0))]).unwrap());
    let d2 = d.clone();
    let t = std::thread::spawn(move || {
        d2.take_blocking(Duration::from_secs(5), &AtomicBool::new(false))
    });
    std::thread::sleep(Duration::from_millis(20));
    d.buffer(0, jobs(1));
    assert!(t.join().unwrap().is_some());
}

#[test]
fn wake_byte_is_written_only_when_waiting() {
    use std::io::Read;
    let d = Dispatcher::new(&[(1, Prefetch::Fixed(0))]).unwrap();
    let mut buf = [0u8; 8];
    d.buffer(0, jobs(1));
    assert!((&d.wake_rx).read(&mut buf).is_err(), "nobody waited yet");
    let taken = d.take(1);
    assert!(d.take(1).is_empty()); // now waiting
    d.finish(taken[0].id);
    assert_eq!((&d.wake_rx).read(&mut buf).unwrap(), 1);
}

#[test]
fn a_paused_queue_hands_out_and_fetches_nothing_and_gives_its_buffer_back() {
    let d = Dispatcher::new(&[(2, Prefetch::Fixed(2)), (1, Prefetch::Fixed(0))]).unwrap();
    d.buffer(0, jobs(3));
    d.buffer(1, jobs(1));
    let running = d.take(1);
    assert_eq!(running[0].queue, 0);
    let drained = d.set_paused(0, true).expect("it was running");
    assert_eq!(drained.len(), 2, "its buffered jobs, to give back");
    assert!(d.set_paused(0, true).is_none(), "paused already");
    assert_eq!(d.capacity(0), Some(0));
    assert_eq!(d.buffer(0, jobs(1)).len(), 1, "fetched meanwhile: back");
    let other = d.take(10);
    assert_eq!(other.iter().map(|t| t.queue).collect::<Vec<_>>(), vec![1]);
    d.finish(running[0].id); // a running job finishes as usual
    assert!(d.set_paused(0, false).unwrap().is_empty());
    assert_eq!(d.capacity(0), Some(4));
}

#[test]
fn a_throttled_job_holds_its_throttle_until_its_perform_begins_and_a_limited_one_its_slot_throughout(
) {
    let raw = r#"{"class":"A","args":[],"jid":"j1","retry_count":2,
        "throttle":{"key":"A/7","limit":5,"per":1.0},"concurrency":{"key":"A","to":1,"lease":30}}"#;
    let d = Dispatcher::new(&[(1, Prefetch::Fixed(0))]).unwrap();
    d.buffer(0, vec![(raw.to_string(), parse(raw).unwrap(), false)]);
    let held = |d: &Dispatcher| {
        let mut l: Vec<_> = d
            .leases()
            .into_iter()
            .map(|l| (l.kind, l.key, l.member))
            .collect();
        l.sort_by_key(|(kind, ..)| *kind as u8);
        l
    };
    assert_eq!(
        held(&d),
        [
            (LeaseKind::Concurrency, "A".into(), "j1".into()),
            (LeaseKind::ThrottleHold, "A/7".into(), "j1:2".into())
        ]
    );
    // Handed out, not begun (behind a job that holds the CPU): still held.
    let taken = d.take(1);
    assert!(taken[0].throttled);
    assert_eq!(held(&d).len(), 2);
    assert_eq!(
        d.begin(taken[0].id),
        Some((0, "A/7".into(), 1.0, "j1:2".into()))
    );
    assert_eq!(d.begin(taken[0].id), None); // logged once
    assert_eq!(
        held(&d),
        [(LeaseKind::Concurrency, "A".into(), "j1".into())]
    );
}
