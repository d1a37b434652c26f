//! Tests of `group.rs`: the two forms of a group and what each reply means.

use super::*;

fn bytes(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|a| a.as_bytes().to_vec()).collect()
}

/// A group with `acks` in the held set, `listed` in the processing list.
fn group_of(acks: &[&str], listed: &[&str], others: &[&str]) -> Group {
    let n = acks.len() + listed.len();
    Group {
        k: Arc::new(QueueKeys {
            bucket: 0,
            keys: std::array::from_fn(|i| format!("k{i}")),
            fixed: std::array::from_fn(|i| format!("a{i}")),
            counters: std::array::from_fn(|i| format!("c{i}")),
            guards: std::array::from_fn(|i| format!("{{c{i}}}:counted")),
        }),
        now: 0.0,
        lock_keys: Vec::new(),
        acks: bytes(acks),
        listed_acks: bytes(listed),
        others: bytes(others),
        uncounted: [n, n, n, 0, 0],
        number: 7,
    }
}

fn group(acks: &[&str], others: &[&str]) -> Group {
    group_of(acks, &[], others)
}

fn server_error(line: &str) -> redis::RedisError {
    match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap() {
        redis::Value::ServerError(e) => e.into(),
        other => panic!("{other:?}"),
    }
}

fn send_plan(g: &Group) -> Vec<Reply> {
    g.add_to(&mut redis::pipe())
}

#[test]
fn acks_are_plain_commands_and_the_script_takes_the_rest() {
    let g = group_of(&["j1", "j2", "j3"], &["j4", "j5"], &[]);
    let mut pipe = redis::pipe();
    // One SREM for the held jobs, an LREM per listed one, a COUNT_ONCE per counter.
    assert!(matches!(
        g.add_to(&mut pipe)[..],
        [
            Reply::Acks,
            Reply::ListedAck(0),
            Reply::ListedAck(1),
            Reply::Count(Counter::Processed),
            Reply::Count(Counter::QueueProcessed),
            Reply::Count(Counter::ProcessedWindow),
        ]
    ));
    assert_eq!(pipe.len(), 6);
    // Each with the counter, its guard and the group's number, the same when sent again.
    let count: Vec<Vec<u8>> = pipe
        .cmd_iter()
        .nth(3)
        .unwrap()
        .args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b.to_vec(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(count[2..6], bytes(&["2", "c0", "{c0}:counted", "7"])[..]);
    let srem = pipe.cmd_iter().next().unwrap().args_iter().count();
    assert_eq!(srem, 2 + 3, "SREM key j1 j2 j3");
    let g = group(&["j1"], &["R", "j2", "rec", "1.0", "p"]);
    // The script adds to the queue's counter; the process-wide ones are beside it.
    assert!(matches!(
        send_plan(&g)[..],
        [
            Reply::Script,
            Reply::Count(Counter::Processed),
            Reply::Count(Counter::ProcessedWindow),
        ]
    ));
}

#[test]
fn what_redis_refused_is_kept_and_what_it_took_is_not_sent_again() {
    let mut g = group_of(&["j1"], &["j2"], &[]);
    let plan = send_plan(&g);
    let oom = || Err(server_error("OOM command not allowed"));
    // Full Redis: the SREM and LREM apply, the counts do not.
    let replies = vec![
        Ok(redis::Value::Int(1)),
        Ok(redis::Value::Int(1)),
        oom(),
        oom(),
        oom(),
    ];
    let refused = g.applied(plan, replies.into_iter());
    assert!(refused.is_some_and(|e| e.code() == Some("OOM")));
    assert!(g.acks.is_empty() && g.listed_acks.is_empty());
    assert_eq!(g.uncounted, [2, 2, 2, 0, 0]);
    assert!(!g.is_done());
    // Next time: only the counts, by the acks not yet counted.
    let plan = send_plan(&g);
    assert_eq!(plan.len(), 3);
    let ok = vec![Ok(redis::Value::Int(0)); 3];
    assert!(g.applied(plan, ok.into_iter()).is_none());
    assert!(g.is_done());
}

#[test]
fn a_refused_listed_ack_alone_is_sent_again() {
    let mut g = group_of(&["j1"], &["j2", "j3"], &[]);
    let plan = send_plan(&g);
    let wrong = || Err(server_error("WRONGTYPE Operation against a key"));
    let ok = || Ok(redis::Value::Int(1));
    let replies = vec![ok(), wrong(), ok(), ok(), ok(), ok(), ok()];
    assert!(g.applied(plan, replies.into_iter()).is_some());
    assert!(g.acks.is_empty());
    assert_eq!(g.listed_acks, bytes(&["j2"]));
}

#[test]
fn a_script_group_counts_its_acks_itself() {
    let mut g = group(&["j1"], &["X", "j2", "entry"]);
    let plan = send_plan(&g);
    let reply = redis::Value::Array(vec![
        redis::Value::Int(1),
        redis::Value::Int(0),
        redis::Value::Int(0),
    ]);
    let counted = || Ok(redis::Value::Int(1));
    let replies = vec![Ok(reply), counted(), counted(), counted()];
    assert!(g.applied(plan, replies.into_iter()).is_none());
    assert!(g.is_done(), "nothing is left to count twice");
}

#[test]
fn a_counter_another_program_broke_does_not_hold_acks_back() {
    let mut g = group(&["j1"], &[]);
    let plan = send_plan(&g);
    let not_int = || Err(server_error("ERR value is not an integer or out of range"));
    let replies = vec![
        Ok(redis::Value::Int(1)),
        not_int(),
        not_int(),
        not_int(),
        Ok(redis::Value::Int(1)),
    ];
    assert!(g.applied(plan, replies.into_iter()).is_none());
    assert!(g.is_done());
}
