//! Lua scripts: every multi-step change of one queue's keys is one atomic script.
//! Each script's keys share the queue's hash tag (see `keys.rs`). Redis 5.0 commands only.

use std::sync::LazyLock;

use redis::Script;

/// Reliable batch fetch: move up to ARGV[1] jobs from the queue's front into this
/// process's processing list, oldest first. KEYS: queue, processing.
pub static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
  if not v then break end
  out[i] = v
end
return out",
    )
});

/// Give taken, unstarted jobs back to the front of their queue, keeping their order
/// (ARGV oldest first ends with the oldest at the very front). KEYS: queue, processing.
pub static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = #ARGV, 1, -1 do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  redis.call('LREM', KEYS[2], -1, ARGV[i])
end
return #ARGV",
    )
});

/// Move everything left in a processing list back to the front of its queue, oldest
/// at the very front. KEYS: queue, processing. Returns how many moved.
pub static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
while true do
  local v = redis.call('LPOP', KEYS[2])
  if not v then break end
  redis.call('RPUSH', KEYS[1], v)
  n = n + 1
end
return n",
    )
});

/// Promote due jobs of one queue: scheduled ones to the back of the queue, retries to
/// the back, or to the front when the job asked for a priority retry. Removing each
/// member with ZREM inside the script makes promotion exactly once across processes.
/// KEYS: schedule, retry, queue. ARGV: now, limit. Returns {moved, next schedule
/// score or '', next retry score or ''}. Payloads are moved verbatim (no re-encoding,
/// which could change numbers in the arguments).
pub static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local moved = 0
for k = 1, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
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
local s = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local r = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {moved, s[2] or '', r[2] or ''}"#,
    )
});

/// Fire one cron tick at most once across processes: the tick's lock is taken with
/// SET NX, and only its taker enqueues. KEYS: tick lock, queue. ARGV: lock TTL, payload.
pub static CRON_FIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0",
    )
});

/// Move one dead-set member back to a queue, once even if two people click at once.
/// KEYS: dead, queue. ARGV: member, payload to enqueue.
pub static DEAD_RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0",
    )
});

/// Give one job of a dead process back to the front of its queue, unless its owner
/// finished it meanwhile. KEYS: processing, queue. ARGV: payload. Returns 1 if moved.
pub static RECOVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('LREM', KEYS[1], -1, ARGV[1]) > 0 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0",
    )
});

/// Find, delete or run now one job by jid in a list or sorted set. A cheap substring
/// test picks candidates, JSON decoding confirms them. Scans in chunks of 500; an
/// admin action, linear in the size of the key. KEYS: source, destination queue (for
/// 'run'). ARGV: jid, 'list' or 'zset', 'find' | 'delete' | 'run'. Returns
/// {payload, score or ''}, or nil when no job has that jid.
pub static JID_OP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local jid, kind, action = ARGV[1], ARGV[2], ARGV[3]
local start = 0
while true do
  local chunk
  if kind == 'list' then
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
          if action == 'run' then redis.call('RPUSH', KEYS[2], v) end
        end
        return {v, score}
      end
    end
  end
  start = start + 500
end"#,
    )
});
