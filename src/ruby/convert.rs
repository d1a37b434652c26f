//! JSON values (parsed in Rust) to Ruby objects, with the GVL held.

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
                hash.aset(ruby.str_new(k), to_ruby(ruby, item)?)?;
            }
            hash.into_value_with(ruby)
        }
    })
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
