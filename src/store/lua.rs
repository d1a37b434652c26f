//! Building blocks of the Lua scripts (`scripts.rs`, `flow_scripts.rs`).

use redis::Script;

use super::keys::WAKE_LUA;

/// A script that may move jobs into a queue: `wake` (see `keys::WAKE_LUA`) is defined
/// before its body.
pub(super) fn waking(body: &str) -> Script {
    Script::new(&format!("{WAKE_LUA}{body}"))
}

/// Lua: `release(raw)` takes one copy of `raw` out of what this process holds (KEYS
/// `HELD` and `LISTED`: its held set and processing list); true if it held one.
/// Its first write is an SREM or LREM, which Redis allows when full.
pub(super) fn releasing(held: usize, listed: usize, body: &str) -> Script {
    waking(&format!(
        r"
local function release(raw)
  return redis.call('SREM', KEYS[{held}], raw) == 1 or redis.call('LREM', KEYS[{listed}], -1, raw) > 0
end
{body}"
    ))
}
