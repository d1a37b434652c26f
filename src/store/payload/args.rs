//! A job's arguments as parsed: up to two inline, more in a Vec. Most jobs take an id or
//! two, and their arguments go from the parse to Ruby and are dropped; a Vec for them
//! was an allocation and a free per job (~400 instructions).

use std::ops::Deref;

use serde_json::Value;

/// Arguments kept inline.
const INLINE: usize = 2;

#[derive(Clone)]
pub enum Args {
    /// The first `len` of `values` (the rest are `Null`, which owns nothing).
    Inline {
        len: u8,
        values: [Value; INLINE],
    },
    Heap(Vec<Value>),
}

impl Args {
    pub const fn new() -> Args {
        Args::Inline {
            len: 0,
            values: [Value::Null, Value::Null],
        }
    }

    pub fn push(&mut self, value: Value) {
        match self {
            Args::Inline { len, values } if usize::from(*len) < INLINE => {
                values[usize::from(*len)] = value;
                *len += 1;
            }
            Args::Inline { values, .. } => {
                let mut all = Vec::with_capacity(INLINE * 2);
                all.extend(values.iter_mut().map(std::mem::take));
                all.push(value);
                *self = Args::Heap(all);
            }
            Args::Heap(all) => all.push(value),
        }
    }
}

impl Default for Args {
    fn default() -> Args {
        Args::new()
    }
}

impl Deref for Args {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        match self {
            Args::Inline { len, values } => &values[..usize::from(*len)],
            Args::Heap(all) => all,
        }
    }
}

impl From<Vec<Value>> for Args {
    fn from(all: Vec<Value>) -> Args {
        Args::Heap(all)
    }
}

/// The arguments, however they are kept.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Equal when the arguments are, however they are kept.
impl PartialEq for Args {
    fn eq(&self, other: &Args) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<Value>> for Args {
    fn eq(&self, other: &Vec<Value>) -> bool {
        **self == other[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_pushed_inline_or_not() {
        for n in 0..6 {
            let all: Vec<Value> = (0..n).map(|i| Value::from(format!("a{i}"))).collect();
            let mut args = Args::new();
            all.iter().cloned().for_each(|v| args.push(v));
            assert_eq!(&*args, &all[..]);
            assert_eq!(matches!(args, Args::Inline { .. }), n <= INLINE);
            assert_eq!(args, Args::from(all.clone()));
            assert_eq!(args.clone(), all);
        }
    }
}
