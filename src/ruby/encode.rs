//! Job arguments straight from Ruby objects to JSON text, with the GVL held, for the
//! enqueue fast path. Covers JSON-native values only (nil, true, false, a Fixnum,
//! finite Float, String convertible to UTF-8, Array, Hash with String keys, nested
//! at most `MAX_DEPTH`); anything else returns `false` and Ruby takes its own path
//! (`Arguments.check!`), which raises the precise ArgumentError or writes what only
//! it handles (an Integer beyond a Fixnum but within 64 bits). The rules here must
//! never accept what that check refuses. Values stay on this thread's stack, where
//! Ruby's GC sees them, while a String in another encoding is converted.

use std::fmt::Write;

use magnus::r_hash::ForEach;
use magnus::value::{Qfalse, Qnil, Qtrue};
use magnus::{Fixnum, Float, RArray, RHash, RString, Value};

/// Arrays and Hashes nested deeper inside one argument go to the Ruby path, which
/// refuses them: `Arguments::MAX_DEPTH`.
const MAX_DEPTH: u32 = 64;

/// Writes `v`; `depth` is how many Arrays and Hashes enclose it inside its argument
/// (call with the argument list itself at 0, so each argument's own container is 1).
pub fn write(v: Value, out: &mut String, depth: u32) -> bool {
    if Qnil::from_value(v).is_some() {
        out.push_str("null");
        return true;
    }
    if Qtrue::from_value(v).is_some() {
        out.push_str("true");
        return true;
    }
    if Qfalse::from_value(v).is_some() {
        out.push_str("false");
        return true;
    }
    if let Some(n) = Fixnum::from_value(v) {
        let _ = write!(out, "{}", n.to_i64());
        return true;
    }
    if let Some(f) = Float::from_value(v) {
        let f = f.to_f64();
        if !f.is_finite() {
            return false;
        }
        // Debug keeps the decimal point (1.0, 1e20), so the value comes back a Float.
        let _ = write!(out, "{f:?}");
        return true;
    }
    if let Some(s) = RString::from_value(v) {
        return string(s, out);
    }
    if let Some(a) = RArray::from_value(v) {
        if depth > MAX_DEPTH {
            return false;
        }
        out.push('[');
        for (i, item) in a.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if !write(item, out, depth + 1) {
                return false;
            }
        }
        out.push(']');
        return true;
    }
    if let Some(h) = RHash::from_value(v) {
        if depth > MAX_DEPTH {
            return false;
        }
        out.push('{');
        let mut first = true;
        let mut ok = true;
        let _ = h.foreach(|k: Value, item: Value| {
            let Some(key) = RString::from_value(k) else {
                ok = false;
                return Ok(ForEach::Stop);
            };
            if !first {
                out.push(',');
            }
            first = false;
            ok = string(key, out) && {
                out.push(':');
                write(item, out, depth + 1)
            };
            Ok(if ok { ForEach::Continue } else { ForEach::Stop })
        });
        out.push('}');
        return ok;
    }
    false
}

fn string(s: RString, out: &mut String) -> bool {
    match s.to_string() {
        Ok(text) => match serde_json::to_string(&text) {
            Ok(quoted) => {
                out.push_str(&quoted);
                true
            }
            Err(_) => false,
        },
        Err(_) => false,
    }
}
