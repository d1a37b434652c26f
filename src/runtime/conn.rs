//! A connection to a single Redis or to a Redis Cluster, used the same way by every
//! task: `Conn` implements the redis crate's `ConnectionLike`, so commands, scripts and
//! pipelines run on it unchanged.
//!
//! A Cluster connection (the redis crate's) routes each command to the master of its
//! key's slot and follows MOVED and ASK while slots move; a pipeline it sends whole to
//! one node, so one whose commands touch other slots would fail with CROSSSLOT. Our
//! pipelines mix keys freely (an enqueue records the queue's name beside the job; the
//! acker counts beside the acks), so here a Cluster pipeline is split by key: the
//! commands of each key go as one pipeline, all of them at once, and the replies come
//! back in the caller's order. Per key, not per slot: during a slot's migration the
//! old node answers ASK for each key it no longer has, and the crate sends the whole
//! pipeline again to the new node — with one key per pipeline none of it had run.
//! WAIT goes with the command before it, to the node that command went to, so it
//! counts the replicas of that write. PUBLISH (no key; every node delivers it) is sent
//! on its own once the rest has been answered: a subscriber woken by it finds the
//! write it announces.
//! A transaction (`MULTI`) is sent as it is: FiberJob's touch one slot.

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => {
                let (parts, publishes) = split_by_key(pipeline);
                if pipeline.is_transaction() || (parts.len() < 2 && publishes.is_empty()) {
                    return c.req_packed_commands(pipeline, offset, count);
                }
                let c = c.clone();
                Box::pin(async move {
                    let sent = parts.iter().map(|(_, part)| {
                        let mut c = c.clone();
                        async move { c.req_packed_commands(part, 0, part.len()).await }
                    });
                    let replies = join_all(sent).await;
                    let mut ordered: Vec<Option<Value>> = vec![None; pipeline.len()];
                    for ((positions, _), reply) in parts.iter().zip(replies) {
                        for (at, value) in positions.iter().zip(reply?) {
                            ordered[*at] = Some(value);
                        }
                    }
                    let mut c = c;
                    for (at, cmd) in publishes {
                        ordered[at] = Some(c.req_packed_command(cmd).await?);
                    }
                    Ok(ordered
                        .into_iter()
                        .map(|v| v.unwrap_or(Value::Nil))
                        .collect())
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

/// The key a command is routed by (its first), or `None` for a command without one.
fn key_of(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(bytes) => bytes,
        _ => &b""[..],
    });
    let name = args.next()?.to_ascii_uppercase();
    match &name[..] {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" => {
            let _script = args.next();
            let keys = args.next()?;
            (keys != b"0").then(|| args.next()).flatten()
        }
        b"PUBLISH" | b"WAIT" | b"PING" | b"INFO" | b"SCRIPT" | b"ROLE" | b"CLUSTER" | b"CONFIG"
        | b"CLIENT" | b"DBSIZE" | b"TIME" => None,
        _ => args.next(),
    }
}

/// A pipeline split for a Cluster: its keyed commands grouped by key, in first-seen
/// order, each group with the positions of its commands; and its PUBLISHes, to send
/// after them.
type Split<'a> = (Vec<(Vec<usize>, Pipeline)>, Vec<(usize, &'a Cmd)>);

fn split_by_key(pipeline: &Pipeline) -> Split<'_> {
    let mut parts: Vec<(Vec<usize>, Pipeline)> = Vec::new();
    let mut publishes = Vec::new();
    let mut part_of: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    let mut last: Option<usize> = None;
    for (at, cmd) in pipeline.cmd_iter().enumerate() {
        if is_publish(cmd) {
            publishes.push((at, cmd));
            continue;
        }
        let part = match key_of(cmd) {
            Some(key) => *part_of.entry(key).or_insert_with(|| {
                parts.push((Vec::new(), redis::pipe()));
                parts.len() - 1
            }),
            None => match last {
                Some(part) => part,
                None => {
                    parts.push((Vec::new(), redis::pipe()));
                    parts.len() - 1
                }
            },
        };
        parts[part].0.push(at);
        parts[part].1.add_command(cmd.clone());
        last = Some(part);
    }
    (parts, publishes)
}

fn is_publish(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"PUBLISH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(pipe: &Pipeline) -> Vec<Vec<usize>> {
        split_by_key(pipe).0.into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn a_pipeline_splits_by_key_wait_follows_the_write_and_publish_goes_last() {
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg("queues").arg("q");
        pipe.cmd("ZADD").arg("schedule:{q}").arg(1).arg("job");
        pipe.cmd("PUBLISH").arg("channel").arg("q");
        pipe.cmd("WAIT").arg(1).arg(100);
        pipe.cmd("SADD").arg("queues").arg("r");
        assert_eq!(positions(&pipe), vec![vec![0, 4], vec![1, 3]]);
        let publishes: Vec<usize> = split_by_key(&pipe).1.iter().map(|(at, _)| *at).collect();
        assert_eq!(publishes, vec![2]);
    }

    #[test]
    fn a_script_is_routed_by_its_first_key() {
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg("abc")
            .arg(2)
            .arg("processing:{q}:w")
            .arg("queue:{q}");
        pipe.cmd("LREM").arg("processing:{q}:w").arg(-1).arg("job");
        pipe.cmd("EVALSHA").arg("abc").arg(0).arg("x");
        assert_eq!(positions(&pipe), vec![vec![0, 1, 2]]);
    }
}
