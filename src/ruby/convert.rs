//! JSON values (parsed in Rust) to Ruby objects, with the GVL held.

use magnus::rb_sys::AsRawValue;
use magnus::{IntoValue, Ruby, Value};
use serde_json::Value as Json;

use crate::store::payload::{Arg, Scalar};

pub fn to_ruby(ruby: &Ruby, v: &Json) -> Result<Value, magnus::Error> {
    Ok(match v {
        Json::Null => ruby.qnil().into_value_with(ruby),
        Json::Bool(b) => b.into_value_with(ruby),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ruby.integer_from_i64(i).into_value_with(ruby)
            } else if let Some(u) = n.as_u64() {
                ruby.integer_from_u64(u).into_value_with(ruby)
            } else {
                ruby.float_from_f64(n.as_f64().unwrap_or(f64::NAN))
                    .into_value_with(ruby)
            }
        }
        Json::String(s) => ruby.str_new(s).into_value_with(ruby),
        Json::Array(items) => {
            let ary = ruby.ary_new_capa(items.len());
            for item in items {
                ary.push(to_ruby(ruby, item)?)?;
            }
            ary.into_value_with(ruby)
        }
        Json::Object(map) => {
            let hash = ruby.hash_new();
            for (k, item) in map {
                let item = to_ruby(ruby, item)?;
                // SAFETY: the GVL is held; `hash` is a new unfrozen Hash and the key a
                // frozen String, so storing cannot raise (no `rb_protect` needed).
                unsafe { rb_sys::rb_hash_aset(hash.as_raw(), key(k), item.as_raw()) };
            }
            hash.into_value_with(ruby)
        }
    })
}

/// A Hash key as Ruby's interned String (frozen, one per distinct text): a Hash copies
/// and freezes a new String key, so a fresh one costs two objects per key, and the keys
/// of an ActiveJob job's data (a dozen) repeat in every job. The Hash is the same to
/// Ruby code: its String keys are frozen either way.
fn key(k: &str) -> rb_sys::VALUE {
    // SAFETY: the GVL is held (all of this module runs with it); the bytes are UTF-8.
    unsafe {
        rb_sys::rb_enc_interned_str(
            k.as_ptr() as *const std::os::raw::c_char,
            k.len() as _,
            rb_sys::rb_utf8_encoding(),
        )
    }
}

/// A job's argument as a Ruby object (`to_ruby` for those kept as JSON values).
pub fn arg_to_ruby(ruby: &Ruby, arg: Arg<'_>) -> Result<Value, magnus::Error> {
    Ok(match arg {
        Arg::Scalar(Scalar::Null) => ruby.qnil().into_value_with(ruby),
        Arg::Scalar(Scalar::Bool(b)) => b.into_value_with(ruby),
        Arg::Scalar(Scalar::Int(i)) => ruby.integer_from_i64(*i).into_value_with(ruby),
        Arg::Scalar(Scalar::Str(s)) => ruby.str_new(s).into_value_with(ruby),
        Arg::Json(v) => to_ruby(ruby, v)?,
    })
}

/// A symbol-keyed Hash: how a record crosses to Ruby, named field by field, never as a
/// positional tuple (two swapped counts would pass unnoticed).
pub fn record<const N: usize>(
    ruby: &Ruby,
    fields: [(&str, Value); N],
) -> Result<magnus::RHash, magnus::Error> {
    let hash = ruby.hash_new();
    for (name, value) in fields {
        hash.aset(ruby.to_symbol(name), value)?;
    }
    Ok(hash)
}
