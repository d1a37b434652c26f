//! Lua for limits per key (`limits_concurrency`, `throttle`): admitting a fetched job
//! (`ACQUIRE`), starting waiting jobs when a key has room (`FLOW_PROMOTE`, and the
//! `OUTCOMES` op `L`), one queue's keys per call (see `Keys::concurrency`).
//!
//! A job over a limit waits in its key's list, not in a worker: `ACQUIRE` moves it
//! there from the held set, in the script that found the key full. A waiting job is
//! started by the event that frees room: a finished job's lease (`L`, at its ack,
//! failure or burial) starts the next waiters at once; a lease that ran out, or a
//! throttle window that moves on, is a time, kept in the queue's `flow_due` set,
//! which the scheduler sleeps until. A started waiter goes to the front of its queue
//! with its room already taken (its lease, or its start in the log), so no newer job
//! overtakes it. Payload fields read here are only ever those of limited jobs.

use std::sync::LazyLock;

use redis::Script;

use super::lua::{releasing, waking};

/// Lua functions shared by the scripts that admit and start limited jobs. Needs
/// `wake` (`keys::WAKE_LUA`) defined before it.
///
/// - `flow_now()`: seconds on this Redis's clock (`TIME`, read once per call). Every
///   lease end, hold and start of a key is a time on its Redis's clock, whatever the
///   clock of the worker asking: a worker whose offset to Redis is off by the half
///   round trip of a loaded machine (`runtime::clock`) could otherwise let a window
///   hold more starts than its limit.
///
/// - `flow_due(D, m, at, chan, qname)`: member `m` of the due set `D` is next looked at
///   `at`; announced on the schedule channel when that makes it the queue's earliest
///   (schedulers sleep until their earliest).
/// - `c_wake(L, W, Q, D, m, now, chan, qname)`: drops ended leases of the key, starts
///   the oldest waiters of `W` while the key runs fewer than its `concurrency.to`
///   (each with a lease of its `concurrency.lease`), then records when to look again.
/// - `t_wake(T, W, Q, D, m, now, chan, qname)`: the same for a throttle: lets waiters
///   through while the start log `T` holds fewer than `throttle.limit` starts in the
///   last `t_window(throttle.per)` seconds (the window and a margin), each logged as a
///   hold (`t_hold`).
///
/// A throttle's start log holds one member per start: its score is when the job's
/// perform began (its executor reports it right before: the `OUTCOMES` op `S`), and
/// until then a *hold*, a time `THROTTLE_HOLD_SECS` ahead that the worker holding the
/// job renews every second (`RENEW`). A job admitted but not yet begun — buffered, or
/// handed to Ruby behind a job that holds the CPU — thus counts as starting now in
/// every window it could start in, so measured by the jobs' own start times no window
/// of `per` seconds holds more than the limit, however late a loaded machine starts
/// them; a hold whose worker died ends within `THROTTLE_HOLD_SECS`.
pub const FLOW_LUA: &str = r"
redis.replicate_commands() -- TIME then writes (Redis before 5 replicates scripts verbatim otherwise)
local flow_clock
local function flow_now()
  if not flow_clock then
    local t = redis.call('TIME')
    flow_clock = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return flow_clock
end
local function flow_job(raw)
  local ok, job = pcall(cjson.decode, raw)
  if ok and type(job) == 'table' then return job end
  return {}
end
local function flow_due(D, m, at, chan, qname)
  local old = tonumber(redis.call('ZSCORE', D, m))
  redis.call('ZADD', D, at, m)
  if (not old or at < old) and redis.call('ZRANGE', D, 0, 0)[1] == m then
    redis.call('PUBLISH', chan, qname)
  end
end
local function keep_for(key, secs)
  local ms = math.ceil(secs * 1000) + 1000
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
-- How long a start counts against a throttle of `per` seconds: a margin longer, for
-- the time between the engine handing a job over (the start it reports) and its
-- perform starting (5%, at least 50 ms).
local function t_window(per)
  return per + math.max(per * 0.05, 0.05)
end
local t_hold = 5
local function t_member(job)
  return tostring(job['jid']) .. ':' .. tostring(job['retry_count'] or 0)
end
-- After starting waiters of key `m`: its next look (`at()`) while some still wait in
-- `W`, else none.
local function settle(W, D, m, at, chan, qname)
  if redis.call('LLEN', W) > 0 then
    flow_due(D, m, at(), chan, qname)
  else
    redis.call('ZREM', D, m)
  end
end
-- A waiting job's limit of `kind` ('concurrency', 'throttle'): its fields, or {}.
local function flow_limit(job, kind)
  return type(job[kind]) == 'table' and job[kind] or {}
end
local function to_front(Q, raws)
  for i = #raws, 1, -1 do redis.call('RPUSH', Q, raws[i]) end
  wake(Q, #raws)
end
local function c_wake(L, W, Q, D, m, now, chan, qname)
  -- Nothing waits (the common case): nothing to do (a look still due finds nothing
  -- and drops itself).
  if redis.call('EXISTS', W) == 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', L, '-inf', now)
  local moved = {}
  while true do
    local raw = redis.call('LINDEX', W, 0)
    if not raw then break end
    local job = flow_job(raw)
    local limit = flow_limit(job, 'concurrency')
    if redis.call('ZCARD', L) >= (tonumber(limit['to']) or 1) then break end
    redis.call('LPOP', W)
    local lease = tonumber(limit['lease']) or 600
    redis.call('ZADD', L, now + lease, tostring(job['jid']))
    keep_for(L, lease)
    moved[#moved + 1] = raw
  end
  to_front(Q, moved)
  settle(W, D, m, function()
    return tonumber(redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')[2]) or now
  end, chan, qname)
  return #moved
end
local function t_wake(T, W, Q, D, m, now, chan, qname)
  local moved, per = {}, 1
  while true do
    local raw = redis.call('LINDEX', W, 0)
    if not raw then break end
    local job = flow_job(raw)
    local limit = flow_limit(job, 'throttle')
    per = t_window(tonumber(limit['per']) or 1)
    redis.call('ZREMRANGEBYSCORE', T, '-inf', now - per)
    if redis.call('ZCARD', T) >= (tonumber(limit['limit']) or 1) then break end
    redis.call('LPOP', W)
    redis.call('ZADD', T, now + t_hold, t_member(job))
    keep_for(T, per + t_hold)
    moved[#moved + 1] = raw
  end
  to_front(Q, moved)
  settle(W, D, m, function()
    return (tonumber(redis.call('ZRANGE', T, 0, 0, 'WITHSCORES')[2]) or now) + per
  end, chan, qname)
  return #moved
end
";

/// How many arguments `ACQUIRE` takes per job.
pub const ACQUIRE_WIDTH: usize = 11;

/// Admits the limited jobs of one fetch, in order: a job runs if its concurrency key
/// has a free lease (or one was kept for it) and its throttle's window has room (or a
/// start was logged for it); it then takes both. Otherwise it leaves this process's
/// held set (`release`) for the waiting list of the limit it is over, gives back what
/// was kept for it under the other, and its key's next look is recorded in the due
/// set. KEYS: 1 held, 2 processing, 3 queue, 4 due, then each job's lease set and
/// waiting list, start log and waiting list. ARGV: 1 schedule channel, 2 queue name,
/// then per job (`ACQUIRE_WIDTH`): payload, jid, index of its lease set (0:
/// none), concurrency to, lease seconds, due member, index of its start log (0: none),
/// throttle limit, per seconds, log member, due member. Returns per job 1 (run it) or 0
/// (it waits, or this process no longer holds it).
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    releasing(
        1,
        2,
        &format!(
            "{FLOW_LUA}{}",
            r"
local now, chan, qname, D = flow_now(), ARGV[1], ARGV[2], KEYS[4]
local out = {}
for a = 3, #ARGV, 11 do
  local raw, jid = ARGV[a], ARGV[a + 1]
  local c, to, lease, cm = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), ARGV[a + 5]
  local t, limit, per, tmem, tm = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), t_window(tonumber(ARGV[a + 8])), ARGV[a + 9], ARGV[a + 10]
  local c_ok, t_ok, t_mine = true, true, false
  -- Below the limit counting ended leases and old starts too, the job runs (the sets
  -- stay bounded by the limit); only a key at its limit is cleaned and looked into.
  if c > 0 and redis.call('ZCARD', KEYS[c]) >= to then
    redis.call('ZREMRANGEBYSCORE', KEYS[c], '-inf', now)
    c_ok = redis.call('ZSCORE', KEYS[c], jid) ~= false or redis.call('ZCARD', KEYS[c]) < to
  end
  if t > 0 and redis.call('ZCARD', KEYS[t]) >= limit then
    redis.call('ZREMRANGEBYSCORE', KEYS[t], '-inf', now - per)
    t_mine = redis.call('ZSCORE', KEYS[t], tmem) ~= false
    t_ok = t_mine or redis.call('ZCARD', KEYS[t]) < limit
  end
  if c_ok and t_ok then
    if c > 0 then
      redis.call('ZADD', KEYS[c], now + lease, jid)
      keep_for(KEYS[c], lease)
    end
    if t > 0 and not t_mine then
      redis.call('ZADD', KEYS[t], now + t_hold, tmem)
      keep_for(KEYS[t], per + t_hold)
    end
    out[#out + 1] = 1
  elseif not release(raw) then
    out[#out + 1] = 0
  elseif not c_ok then
    redis.call('RPUSH', KEYS[c + 1], raw)
    -- a start logged for it (it was let through its throttle) does not happen now:
    -- the next waiter of the throttle may have it
    if t > 0 and redis.call('ZREM', KEYS[t], tmem) == 1 and redis.call('LLEN', KEYS[t + 1]) > 0 then
      flow_due(D, tm, now, chan, qname)
    end
    local first = redis.call('ZRANGE', KEYS[c], 0, 0, 'WITHSCORES')
    flow_due(D, cm, tonumber(first[2]) or now, chan, qname)
    out[#out + 1] = 0
  else
    redis.call('RPUSH', KEYS[t + 1], raw)
    if c > 0 and redis.call('ZREM', KEYS[c], jid) == 1 then -- a lease kept for it: the next waiter's
      c_wake(KEYS[c], KEYS[c + 1], KEYS[3], D, cm, now, chan, qname)
    end
    local oldest = redis.call('ZRANGE', KEYS[t], 0, 0, 'WITHSCORES')
    flow_due(D, tm, (tonumber(oldest[2]) or now) + per, chan, qname)
    out[#out + 1] = 0
  end
end
return out"
        ),
    )
});

/// Starts what one due member of a queue's due set allows (`c_wake` or `t_wake`) and
/// records its next look, or drops it when nothing waits. Atomic, so schedulers of
/// many processes may run it at once. KEYS: due, lease set or start log, waiting
/// list, queue. ARGV: member, schedule channel, queue name. Returns how many
/// jobs went to the queue.
pub static FLOW_PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    waking(&format!(
        "{FLOW_LUA}{}",
        r"
local m = ARGV[1]
if redis.call('EXISTS', KEYS[3]) == 0 then -- nothing waits any more
  redis.call('ZREM', KEYS[1], m)
  return 0
end
if string.sub(m, 1, 2) == 'c:' then
  return c_wake(KEYS[2], KEYS[3], KEYS[4], KEYS[1], m, flow_now(), ARGV[2], ARGV[3])
end
return t_wake(KEYS[2], KEYS[3], KEYS[4], KEYS[1], m, flow_now(), ARGV[2], ARGV[3])"
    ))
});

/// Renews the leases a live worker holds (its heartbeat, every second), so a slot is
/// held for as long as its job runs, and `lease` bounds only how long a lost worker
/// keeps it. A lease that already ended is not brought back (another job may have
/// its slot). The same renews the throttle holds of jobs the worker holds and has not
/// started (a start log's member scored in the future; a start is in the past).
/// KEYS: lease sets and start logs, of one queue. ARGV: per lease: index of its set,
/// member (jid, or a start log's member), seconds.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    waking(&format!(
        "{FLOW_LUA}{}",
        r"
local now = flow_now()
for a = 1, #ARGV, 3 do
  local key, jid, lease = KEYS[tonumber(ARGV[a])], ARGV[a + 1], tonumber(ARGV[a + 2])
  local ends = tonumber(redis.call('ZSCORE', key, jid))
  if ends and ends > now then
    redis.call('ZADD', key, now + lease, jid)
    keep_for(key, lease)
  end
end
return 1"
    ))
});

/// How far ahead a throttled job admitted but not yet started is logged (`t_hold` in
/// `FLOW_LUA`); its worker renews the hold every second until the job starts.
pub const THROTTLE_HOLD_SECS: f64 = 5.0;

#[cfg(test)]
mod tests {
    #[test]
    fn the_hold_is_the_same_in_lua_and_rust() {
        let lua = format!("local t_hold = {}\n", super::THROTTLE_HOLD_SECS);
        assert!(super::FLOW_LUA.contains(&lua), "FLOW_LUA must say {lua:?}");
    }
}
