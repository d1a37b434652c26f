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
