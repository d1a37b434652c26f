//! Lua for `config.sidekiq_compat` (`worker/sidekiq_bridge.rs`): moving the jobs real
//! Sidekiq clients push into FiberJob's queues. Sidekiq's keys have no hash tag: these
//! run on a single Redis only.

use std::sync::LazyLock;

use redis::Script;

use super::lua::waking;

/// KEYS: Sidekiq's list, FiberJob's queue. ARGV: most to move. Returns how many moved.
pub static SIDEKIQ_TAKE: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
local n = 0
while n < tonumber(ARGV[1]) do
  if not redis.call('RPOPLPUSH', KEYS[1], KEYS[2]) then break end
  n = n + 1
end
if n > 0 then wake(KEYS[2], n) end
return n
",
    )
});

/// KEYS: Sidekiq's sorted set, FiberJob's queue, FiberJob's queue set. ARGV: the entry
/// as Sidekiq stored it, the payload to push, the queue's name. Returns 1 if it moved.
pub static SIDEKIQ_DUE: LazyLock<Script> = LazyLock::new(|| {
    waking(
        r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
wake(KEYS[2], 1)
return 1
",
    )
});

/// KEYS: Sidekiq's sorted set (`dead`; `schedule` or `retry` for an entry that is not
/// a job), FiberJob's dead set of the queue, FiberJob's queue set. ARGV: the entry as
/// Sidekiq stored it, FiberJob's record of it, when it died, the queue's name, then
/// the dead set's bounds (now, most entries, most age). Trims as every death does.
/// Returns 1 if it moved.
pub static SIDEKIQ_BURY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[5]) - tonumber(ARGV[7]))
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[6]) + 1))
return 1
",
    )
});
