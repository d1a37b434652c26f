//! Lua scripts: every multi-step change of one queue's keys is one atomic script.
//! Each script's keys share the queue's hash tag (see `keys.rs`). Redis 5.0 commands only.
//!
//! Redis over `maxmemory` refuses a command that may grow memory (LPUSH, ZADD, …) when
//! it is a script's first write, and then nothing of the script runs; once a script has
//! written, Redis runs it to its end. So each script either starts with a write Redis
//! always allows (LREM, ZREM, EXPIRE, LPOP: what records work already done, or moves a
//! job without growing memory) and then runs whole even when Redis is full, or starts
//! with a growing write (taking new work, enqueueing) and is refused whole. Never half.

use std::sync::LazyLock;

use redis::Script;

use super::flow_scripts::FLOW_LUA;
use super::lua::{releasing, waking};

/// Reliable batch fetch: move up to ARGV[1] jobs from the queue's front into this
/// process's held set, oldest first; a payload whose bytes the set already holds (the
/// same job pushed twice) goes to the processing list instead, so each copy is held
/// once. The first write is a SADD, which Redis refuses whole when full. KEYS: queue,
/// held, processing. Returns {payloads, 1-based positions of the ones listed}.
pub static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local got = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local out, listed = {}, {}
for i = #got, 1, -1 do
  out[#out + 1] = got[i]
  if redis.call('SADD', KEYS[2], got[i]) == 0 then
    redis.call('LPUSH', KEYS[3], got[i])
    listed[#listed + 1] = #out
  end
end
if #got > 0 then redis.call('LTRIM', KEYS[1], 0, -#got - 1) end
return {out, listed}",
    )
});

/// Move everything left in a processing list and held set back to the front of its
/// queue (the list's oldest at the very front; a set has no order). KEYS: queue,
/// processing, held. Returns how many moved.
pub static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
redis.replicate_commands() -- SMEMBERS then writes (Redis 5 replicates scripts verbatim otherwise)
local n = 0
while true do
  local v = redis.call('LPOP', KEYS[2])
  if not v then break end
  redis.call('RPUSH', KEYS[1], v)
  n = n + 1
end
local held = redis.call('SMEMBERS', KEYS[3])
for _, v in ipairs(held) do redis.call('RPUSH', KEYS[1], v) end
redis.call('DEL', KEYS[3])
n = n + #held
wake(KEYS[1], n)
return n",
    )
});

/// Promote due jobs of one queue: scheduled ones to the back of the queue, retries to
/// the back, or to the front when the job asked for a priority retry. Removing each
/// member with ZREM inside the script makes promotion exactly once across processes.
/// What is due is decided on Redis's clock (`TIME`), never the caller's, so a worker
/// whose clock is ahead does not promote early. KEYS: schedule, retry, queue, flow due.
/// ARGV: limit. Returns {moved, next schedule score or '', next retry score or '', next
/// flow look or ''} (the last for limited keys with waiting jobs: `flow_scripts`).
/// Payloads are moved verbatim (no re-encoding, which could change numbers in the
/// arguments).
pub static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r#"
redis.replicate_commands() -- TIME then writes (Redis before 5 replicates scripts verbatim otherwise)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local moved = 0
for k = 1, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
  for _, job in ipairs(due) do
    redis.call('ZREM', KEYS[k], job)
    local front = false
    if k == 2 and string.find(job, '"retry_priority":true', 1, true) then
      local ok, decoded = pcall(cjson.decode, job)
      front = ok and type(decoded) == 'table' and decoded['retry_priority'] == true
    end
    if front then redis.call('RPUSH', KEYS[3], job) else redis.call('LPUSH', KEYS[3], job) end
    moved = moved + 1
  end
end
wake(KEYS[3], moved)
local s = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local r = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local f = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
return {moved, s[2] or '', r[2] or '', f[2] or ''}"#,
    )
});

/// Fire one cron tick at most once across processes, and never before its time on
/// Redis's clock: a tick not later than the class's last fired one is refused (the
/// last-run hash, which `FiberJob::Queue.cron_jobs` shows), so a worker whose clock is
/// behind cannot fire a tick again however long ago it ran; a tick still ahead of
/// Redis's `TIME` is refused with how early it came, so a worker whose clock is ahead
/// cannot fire it early. The tick's lock (SET NX) is kept for workers of earlier
/// versions during a rolling deploy. KEYS (the queue's slot): tick lock, queue, the
/// queue's cron last. ARGV: lock TTL, payload, class, tick. Returns 1 fired, 0
/// already fired, or minus the milliseconds until the tick (too early).
pub static CRON_FIRE: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
redis.replicate_commands() -- TIME then writes (Redis before 5 replicates scripts verbatim otherwise)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tick = tonumber(ARGV[4])
if tick * 1000 > now_ms then return now_ms - tick * 1000 end
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[3]))
if last and tick <= last then return 0 end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  wake(KEYS[2], 1)
  return 1
end
return 0",
    )
});

/// Move one member of a queue's dead set back to the queue, once even if two people
/// click at once; a unique job takes its lock again (KEYS[3], for ARGV[3] = jid and
/// ARGV[4] = TTL ms; a person's retry wins over a lock another job holds). KEYS (the
/// queue's slot): dead, queue[, lock]. ARGV: member, payload[, jid, TTL ms].
pub static DEAD_RETRY: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  if KEYS[3] then redis.call('SET', KEYS[3], ARGV[3], 'PX', tonumber(ARGV[4])) end
  redis.call('LPUSH', KEYS[2], ARGV[2])
  wake(KEYS[2], 1)
  return 1
end
return 0",
    )
});

/// Enqueue unique jobs: each only if it takes its lock (`SET NX` with the job's TTL),
/// to the queue (ARGV[1] '') or the schedule set (ARGV[1] = run-at). The first write is
/// the `SET`, which Redis refuses whole when full. KEYS: queue or schedule, then one
/// lock per job (all in the queue's slot). ARGV: run-at or '', schedule channel, queue
/// name, then per job: jid, TTL in ms, payload. Returns 1 (enqueued) or 0 (a
/// duplicate) per job.
pub static UNIQUE_ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
local out, pushed = {}, 0
for i = 2, #KEYS do
  local a = 4 + (i - 2) * 3
  if redis.call('SET', KEYS[i], ARGV[a], 'NX', 'PX', tonumber(ARGV[a + 1])) then
    if ARGV[1] == '' then
      redis.call('LPUSH', KEYS[1], ARGV[a + 2])
    else
      redis.call('ZADD', KEYS[1], ARGV[1], ARGV[a + 2])
    end
    pushed = pushed + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if pushed > 0 then
  if ARGV[1] == '' then wake(KEYS[1], pushed) else redis.call('PUBLISH', ARGV[2], ARGV[3]) end
end
return out",
    )
});

/// Give one job back to the front of its queue, unless this process no longer holds
/// it (its owner finished it meanwhile). KEYS: processing, queue, held.
/// ARGV: payload. Returns 1 if moved.
pub static RECOVER: LazyLock<Script> = LazyLock::new(|| {
    releasing(
        3,
        1,
        r"
if release(ARGV[1]) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  wake(KEYS[2], 1)
  return 1
end
return 0",
    )
});

/// Recover one job of a dead process and count it: below ARGV[2] recoveries it goes
/// back to the front of its queue; at ARGV[2] to the dead set (a job that keeps killing
/// its worker). Nothing happens to a job the process no longer holds.
/// KEYS: processing, queue, dead, recovery counter, held. ARGV: payload, most
/// recoveries, counter TTL, now, dead-set entry. Returns 0 gone, 1 requeued, 2 buried.
pub static RECOVER_COUNTED: LazyLock<Script> = LazyLock::new(|| {
    releasing(
        5,
        1,
        r"
if not release(ARGV[1]) then return 0 end
local n = redis.call('INCR', KEYS[4])
if n >= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  redis.call('DEL', KEYS[4])
  return 2
end
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[1])
wake(KEYS[2], 1)
return 1",
    )
});

const OUTCOMES_LUA: &str = r"
local width = {A = 2, Q = 2, B = 2, X = 3, E = 3, U = 3, L = 4, D = 4, R = 5, S = 5}
local kinds = {}
local i = 7
while i <= #ARGV do
  local w = width[ARGV[i]]
  if not w then return redis.error_reply('ERR unknown outcome ' .. tostring(ARGV[i])) end
  kinds[ARGV[i]] = true
  i = i + w
end
if i ~= #ARGV + 1 then return redis.error_reply('ERR truncated outcome list') end
-- Keys written after the first write must hold the right type, or the script would stop
-- halfway. (The held set and processing list need none: the first write is an SREM or
-- LREM of them, and an error there stops the script before anything is written; a
-- wrong-typed processing list after a good SREM cannot be: FiberJob alone writes it.)
local function expect(k, want)
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= want then
    return 'WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. t .. ', FiberJob needs a ' .. want
  end
end
local bad = ((kinds.Q or kinds.B) and expect(2, 'list'))
  or (kinds.R and (expect(3, 'zset') or expect(5, 'list')))
  or (kinds.D and (expect(4, 'zset') or expect(5, 'list')))
  or ((kinds.X or kinds.E) and expect(4, 'zset'))
if bad then return redis.error_reply(bad) end

local processed, failed, dead, retried, back, expired = 0, 0, false, false, 0, 0
i = 7
while i <= #ARGV do
  local op, raw = ARGV[i], ARGV[i + 1]
  if op == 'U' then
    -- a unique job's lock, freed only if its job still holds it (pcall: a key of
    -- another type must not stop the script halfway)
    local lock = KEYS[tonumber(raw)]
    if redis.pcall('GET', lock) == ARGV[i + 2] then redis.call('DEL', lock) end
  end
  if op == 'L' then
    -- a finished job's lease: the key's next waiters start now
    local k = tonumber(raw)
    redis.call('ZREM', KEYS[k], ARGV[i + 3])
    c_wake(KEYS[k], KEYS[k + 1], KEYS[2], KEYS[10], ARGV[i + 2], flow_now(), ARGV[5], ARGV[6])
  end
  if op == 'S' then
    -- a throttled job started (its perform began): its member of the start log
    -- KEYS[k] (a hold since its admission) counts from now, on Redis's clock; logged
    -- even if its hold ran out (its worker could not renew it), since it did start.
    -- Waiters of KEYS[k + 1] are looked at again when the oldest start leaves the window
    local k, per = tonumber(raw), t_window(tonumber(ARGV[i + 4]))
    local at = flow_now()
    if redis.call('ZADD', KEYS[k], 'CH', at, ARGV[i + 3]) == 1 then
      keep_for(KEYS[k], per)
      if redis.call('LLEN', KEYS[k + 1]) > 0 then
        local oldest = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
        flow_due(KEYS[10], ARGV[i + 2], (tonumber(oldest[2]) or at) + per, ARGV[5], ARGV[6])
      end
    end
  end
  local mine = op ~= 'U' and op ~= 'L' and op ~= 'S' and release(raw)
  if mine then
    if op == 'A' then
      processed = processed + 1
    elseif op == 'R' then
      redis.call('LPUSH', KEYS[5], ARGV[i + 2])
      redis.call('ZADD', KEYS[3], ARGV[i + 3], ARGV[i + 4])
      failed = failed + 1
      retried = true
    elseif op == 'D' then
      redis.call('LPUSH', KEYS[5], ARGV[i + 2])
      redis.call('ZADD', KEYS[4], ARGV[1], ARGV[i + 3])
      failed = failed + 1
      dead = true
    elseif op == 'X' or op == 'E' then
      redis.call('ZADD', KEYS[4], ARGV[1], ARGV[i + 2])
      dead = true
      if op == 'E' then expired = expired + 1 end
    elseif op == 'Q' then
      redis.call('RPUSH', KEYS[2], raw)
      back = back + 1
    elseif op == 'B' then
      redis.call('LPUSH', KEYS[2], raw)
      back = back + 1
    end
  end
  i = i + width[op]
end

if failed > 0 then redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[2]) - 1) end
if dead then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[4]))
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[3]) + 1))
end
if retried then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
wake(KEYS[2], back)
-- Counters are bookkeeping: a corrupted one must not hold the jobs back.
local problems = 0
local function bump(key, n)
  if n == 0 then return end
  local r = redis.pcall('INCRBY', key, n)
  if type(r) == 'table' and r.err then problems = problems + 1 end
end
bump(KEYS[6], processed)
bump(KEYS[7], failed)
bump(KEYS[9], expired)
return {processed, failed, problems}";

/// Records a batch of one queue's job outcomes (see `worker/acker/`): acks, failures (with a
/// retry or to the dead set), burials of jobs that cannot run, and give-backs to the
/// queue's front. Each outcome applies only if this process still holds its job, which
/// the script's first write (SREM or LREM, `release`) checks: a batch sent twice
/// (its reply lost) applies once, and a job a reaper already gave back is not also
/// recorded. Key types are checked before any write, so the script never stops halfway.
/// Every key is the queue's (one Cluster slot); the process-wide totals are the
/// caller's to add. KEYS: 1 processing, 2 queue, 3 retry, 4 dead, 5 failed, 6 the
/// queue's processed counter, 7 its failed counter, 8 held, 9 its expired counter, 10
/// its flow due set. ARGV: 1 now, 2 failure records
/// kept, 3 dead-set cap, 4 dead-set max age, 5 schedule channel, 6 queue name, then
/// outcomes: `A raw` (ack), `R raw record at payload` (retry), `D raw record payload`
/// (dead after a failure), `X raw entry` (dead, cannot run), `E raw entry` (dead,
/// expired: counted), `Q raw` (give back), `B raw` (requeue at the back), `U k jid` (free the unique lock KEYS[k] if
/// `jid` holds it), `L k member jid` (the lease of `jid` in KEYS[k] ends; waiters of
/// KEYS[k + 1] start: `flow_scripts`), `S k member log-member per` (a throttled job
/// started: its member of the start log KEYS[k] now scores `now`; waiting list KEYS[k +
/// 1]). Lock, lease, start-log and waiting keys follow the ten fixed ones.
/// Returns {processed, failed, counters that could not be updated}.
pub static OUTCOMES: LazyLock<Script> =
    LazyLock::new(|| releasing(8, 1, &format!("{FLOW_LUA}{OUTCOMES_LUA}")));

/// A worker's heartbeat hash. Its first write (EXPIRE) is one Redis allows over
/// maxmemory, so a worker keeps beating, and is not reaped as dead, while Redis is
/// full. (Its registration in the process set is a command of its own: another slot.)
/// KEYS: process hash. ARGV: TTL, then field/value pairs.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2)) -- every pair in one command (Redis 4.0+)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1",
    )
});

/// A worker's busy counts between heartbeats: written only into a heartbeat that
/// exists, and without extending its life — only the heartbeat proves the process
/// alive. The first write (PEXPIRE to the time left) is one Redis takes when full, so
/// the script runs to the end then too. KEYS: the process hash. ARGV: field, value, ….
pub static BUSY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = redis.call('PTTL', KEYS[1])
if left <= 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], left)
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1",
    )
});

/// Find, delete or run now one job by jid in a list or sorted set (or find one in a
/// set: a held set, at most a worker's concurrency and prefetch). A cheap substring
/// test picks candidates, JSON decoding confirms them. Scans in chunks of 500; an
/// admin action, linear in the size of the key. KEYS: source, destination queue (for
/// 'run'). ARGV: jid, 'list', 'zset' or 'set' (find only), 'find' | 'delete' | 'run'. Returns
/// {payload, score or ''}, or nil when no job has that jid.
pub static JID_OP: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r#"
local jid, kind, action = ARGV[1], ARGV[2], ARGV[3]
local start = 0
while true do
  local chunk
  if kind == 'set' then
    if action ~= 'find' or start > 0 then return false end
    chunk = redis.call('SMEMBERS', KEYS[1])
  elseif kind == 'list' then
    chunk = redis.call('LRANGE', KEYS[1], start, start + 499)
  else
    chunk = redis.call('ZRANGE', KEYS[1], start, start + 499)
  end
  if #chunk == 0 then return false end
  for _, v in ipairs(chunk) do
    if string.find(v, jid, 1, true) then
      local ok, job = pcall(cjson.decode, v)
      if ok and type(job) == 'table' and job['jid'] == jid then
        local score = ''
        if kind == 'zset' then score = redis.call('ZSCORE', KEYS[1], v) end
        if action ~= 'find' then
          if kind == 'list' then redis.call('LREM', KEYS[1], 1, v) else redis.call('ZREM', KEYS[1], v) end
          if action == 'run' then
            redis.call('RPUSH', KEYS[2], v)
            wake(KEYS[2], 1)
          end
        end
        return {v, score}
      end
    end
  end
  start = start + 500
end"#,
    )
});

/// Adds a worker's counts to one counter (a string) or to fields of one hash, once:
/// `number` is this worker's number for the counts (increasing), and the guard keeps
/// the last number applied, so counts sent again because a reply was lost (a dropped
/// connection) are not added twice. A counter of the wrong type is skipped
/// (bookkeeping: counted in the reply), not an error. KEYS: the counter, its guard (in
/// the counter's slot: `Keys::counted`). ARGV: number, guard TTL, counter TTL (0:
/// leave it), then pairs (field, or "" for a string counter; amount). Returns how many
/// adds failed.
pub static COUNT_ONCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(ARGV[1]) <= tonumber(redis.call('GET', KEYS[2]) or 0) then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
local bad = 0
for i = 4, #ARGV, 2 do
  local r
  if ARGV[i] == '' then
    r = redis.pcall('INCRBY', KEYS[1], ARGV[i + 1])
  else
    r = redis.pcall('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  if type(r) == 'table' and r.err then bad = bad + 1 end
end
if ARGV[3] ~= '0' then redis.pcall('EXPIRE', KEYS[1], ARGV[3]) end
return bad",
    )
});
