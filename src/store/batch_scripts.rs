//! Lua for batches (`FiberJob::Batch`). Every script but the last two takes one
//! batch's seven keys (`Keys::batch`, one Cluster slot) in that order: `M` the hash,
//! `P` pending, `F` failed, `X` dead, `J` the member list, `O` the open `jobs { }`
//! blocks, `B` the outbox.
//!
//! Why each callback is enqueued exactly once:
//! 1. An event fires in `BATCH_SETTLE` only, and only if `HSETNX M <event>_at`
//!    sets the field: one script run fires it, whatever runs at the same instant
//!    elsewhere. That run pushes the callbacks' payloads — each with a jid fixed when
//!    the batch was opened — to the outbox `B`, in the same script.
//! 2. An outbox entry leaves `B` only after `CALLBACK_PUSH` put it in its queue, and
//!    that script pushes a payload only if it sets the marker `batch-cb:{q}:<jid>`
//!    (`SET NX`, in the queue's slot): delivering an entry twice enqueues it once.
//! 3. Every `BATCH_SETTLE` returns the outbox, and whoever ran it delivers it before
//!    it goes on: the acker before it acknowledges the jobs whose end it reported (so
//!    a worker killed in between leaves those jobs held; they are recovered, run
//!    again, and their end delivers the outbox), a `jobs { }` block's end before it
//!    returns (with `batch-sweep` naming the batch meanwhile, which the reaper
//!    re-drives if that process died).

use std::sync::LazyLock;

use redis::Script;

use super::lua::waking;

/// `keep(ttl)`: every key of the batch lives the batch's own `ttl` (`expires_in:`),
/// else `ttl`, seconds from now.
const KEEP_LUA: &str = r"
local function keep(ttl)
  ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl')) or ttl
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end
";

/// Opens a `jobs { }` block. ARGV: now, ttl, token, abandoned-at, reopen (`1`/`0`),
/// bid, description, then (field, value) pairs: `ttl` (the batch's own expiry), and
/// callbacks (`cb:<event>`, a JSON
/// array of `[queue, jid, payload template, marker]`: the marker, a JSON string in
/// the template's arguments, becomes the batch's status when the event fires). A new batch is made; a reopened one
/// must exist and not have succeeded. Returns `ok`, `exists` (a new bid taken),
/// `unknown` or `succeeded`.
pub static BATCH_OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{KEEP_LUA}
local M = KEYS[1]
if ARGV[5] == '1' then
  if redis.call('EXISTS', M) == 0 then return 'unknown' end
  if redis.call('HEXISTS', M, 'success_at') == 1 then return 'succeeded' end
else
  if redis.call('EXISTS', M) == 1 then return 'exists' end
  redis.call('HSET', M, 'bid', ARGV[6], 'description', ARGV[7], 'created_at', ARGV[1], 'total', 0)
  for i = 8, #ARGV, 2 do redis.call('HSET', M, ARGV[i], ARGV[i + 1]) end
end
redis.call('ZADD', KEYS[6], ARGV[4], ARGV[3])
keep(tonumber(ARGV[2]))
return 'ok'
"
    ))
});

/// Records jobs about to be enqueued in an open block. ARGV: ttl, token, abandoned-at,
/// then (jid, class) pairs. Renews the block's deadline. Returns how many were new.
pub static BATCH_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{KEEP_LUA}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('ERR FiberJob batch is gone (expired or never opened)')
end
local added = 0
for i = 4, #ARGV, 2 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[5], ARGV[i] .. ' ' .. ARGV[i + 1])
    added = added + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'total', added)
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[2])
keep(tonumber(ARGV[1]))
return added
"
    ))
});

/// Forgets recorded jobs whose enqueue failed or was a unique duplicate. ARGV: (jid,
/// class) pairs. Returns how many it removed.
pub static BATCH_UNDO: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('SREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('LREM', KEYS[5], 1, ARGV[i] .. ' ' .. ARGV[i + 1])
    removed = removed + 1
  end
end
if removed > 0 then redis.call('HINCRBY', KEYS[1], 'total', -removed) end
return removed
",
    )
});

/// Records members' ends and fires what they complete. ARGV: now, ttl, the token of a
/// block that ends (or ``), then (op, jid) pairs: `S` succeeded, `F` failed (a retry
/// follows), `D` died. Blocks past their deadline count as ended. Then, with no block
/// open: `complete` when every pending member failed at least once, `success` when
/// none is pending; `death` at the first dead member. Returns the earliest open
/// block's deadline (`0`: none), then every outbox entry (`[queue, jid, payload]`).
pub static BATCH_SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{KEEP_LUA}
local M, P, F, X, O, B = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7]
if redis.call('EXISTS', M) == 0 then return {{'0'}} end
local now = ARGV[1]
if ARGV[3] ~= '' then redis.call('ZREM', O, ARGV[3]) end
local succeeded = {{}}
for i = 4, #ARGV, 2 do
  if ARGV[i] == 'S' then succeeded[#succeeded + 1] = ARGV[i + 1] end
end
if redis.call('SCARD', F) == 0 then
  -- No member ever failed: a success only leaves the pending set, in one call per 500.
  for i = 1, #succeeded, 500 do
    redis.call('SREM', P, unpack(succeeded, i, math.min(i + 499, #succeeded)))
  end
else
  for _, jid in ipairs(succeeded) do
    if redis.call('SREM', P, jid) == 1 then
      redis.call('SREM', F, jid)
      redis.call('SREM', X, jid)
    end
  end
end
for i = 4, #ARGV, 2 do
  local op, jid = ARGV[i], ARGV[i + 1]
  if op ~= 'S' and redis.call('SISMEMBER', P, jid) == 1 then
    redis.call('SADD', F, jid)
    if op == 'D' then redis.call('SADD', X, jid) end
  end
end
redis.call('ZREMRANGEBYSCORE', O, '-inf', now)
local pending, failed, dead = redis.call('SCARD', P), redis.call('SCARD', F), redis.call('SCARD', X)
local function fire(event)
  if redis.call('HSETNX', M, event .. '_at', now) == 0 then return end
  local callbacks = redis.call('HGET', M, 'cb:' .. event)
  if not callbacks then return end
  local status = cjson.encode({{
    bid = redis.call('HGET', M, 'bid'), event = event,
    description = redis.call('HGET', M, 'description'),
    total = tonumber(redis.call('HGET', M, 'total')), pending = pending,
    failures = failed, dead = dead, created_at = tonumber(redis.call('HGET', M, 'created_at'))
  }})
  for _, cb in ipairs(cjson.decode(callbacks)) do
    local tpl = cb[3]
    local s, e = string.find(tpl, cb[4], 1, true)
    if s then tpl = string.sub(tpl, 1, s - 1) .. status .. string.sub(tpl, e + 1) end
    redis.call('RPUSH', B, cjson.encode({{cb[1], cb[2], tpl}}))
  end
end
if dead > 0 then fire('death') end
if redis.call('ZCARD', O) == 0 then
  if failed == pending then fire('complete') end
  if pending == 0 then fire('success') end
end
keep(tonumber(ARGV[2]))
local first = redis.call('ZRANGE', O, 0, 0, 'WITHSCORES')
local reply = {{first[2] or '0'}}
for _, entry in ipairs(redis.call('LRANGE', B, 0, -1)) do reply[#reply + 1] = entry end
return reply
"
    ))
});

/// Puts a fired callback in its queue once. KEYS: the queue, its marker
/// (`Keys::batch_callback`). ARGV: payload, the marker's ttl. Returns 1 if it pushed.
pub static CALLBACK_PUSH: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  wake(KEYS[1], 1)
  return 1
end
return 0
",
    )
});

/// `batch-sweep`: look at batch ARGV[2] by ARGV[1] (keeps an earlier time).
pub static SWEEP_BY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not old or tonumber(old) > tonumber(ARGV[1]) then redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) end
return 0
",
    )
});

/// `batch-sweep`: batch ARGV[2], looked at when its entry said ARGV[1], next at
/// ARGV[3] (`0`: not again) — unless someone moved its entry meanwhile.
pub static SWEEP_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not old or tonumber(old) ~= tonumber(ARGV[1]) then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) else redis.call('ZREM', KEYS[1], ARGV[2]) end
return 1
",
    )
});
