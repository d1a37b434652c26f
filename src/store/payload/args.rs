//! A job's arguments as parsed: up to two plain scalars inline (`Scalar`, 24 bytes
//! each), anything else in a Vec of JSON values. Most jobs take an id or two, and
//! their arguments go from the parse to Ruby and are dropped: a Vec for them was an
//! allocation and a free per job (~400 instructions), and a `serde_json::Value` (72
//! bytes, its Object keeping key order) made every held job ~100 bytes larger to move
//! from the fetch to the buffer to the busy table.

use serde_json::Value;

/// Arguments kept inline.
const INLINE: usize = 2;

/// An argument that is a plain JSON scalar: what the common-shape reader takes inline.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Scalar {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Str(Box<str>),
}

impl From<Scalar> for Value {
    fn from(s: Scalar) -> Value {
        match s {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::from(i),
            Scalar::Str(s) => Value::String(s.into()),
        }
    }
}

/// One argument, however it is kept.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Scalar(&'a Scalar),
    Json(&'a Value),
}

impl Arg<'_> {
    pub fn to_value(self) -> Value {
        match self {
            Arg::Scalar(s) => Value::from(s.clone()),
            Arg::Json(v) => v.clone(),
        }
    }
}

#[derive(Clone)]
pub enum Args {
    /// The first `len` of `values` (the rest are `Null`, which owns nothing).
    Inline {
        len: u8,
        values: [Scalar; INLINE],
    },
    Heap(Vec<Value>),
}

impl Args {
    pub const fn new() -> Args {
        Args::Inline {
            len: 0,
            values: [Scalar::Null, Scalar::Null],
        }
    }

    pub fn push(&mut self, value: Scalar) {
        match self {
            Args::Inline { len, values } if usize::from(*len) < INLINE => {
                values[usize::from(*len)] = value;
                *len += 1;
            }
            Args::Inline { values, .. } => {
                let mut all = Vec::with_capacity(INLINE * 2);
                all.extend(values.iter_mut().map(|s| Value::from(std::mem::take(s))));
                all.push(Value::from(value));
                *self = Args::Heap(all);
            }
            Args::Heap(all) => all.push(Value::from(value)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Args::Inline { len, .. } => usize::from(*len),
            Args::Heap(all) => all.len(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Arg<'_>> {
        let (inline, heap) = match self {
            Args::Inline { len, values } => (&values[..usize::from(*len)], &[][..]),
            Args::Heap(all) => (&[][..], &all[..]),
        };
        inline
            .iter()
            .map(Arg::Scalar)
            .chain(heap.iter().map(Arg::Json))
    }

    /// The arguments as JSON values (tests, debugging).
    pub fn to_values(&self) -> Vec<Value> {
        self.iter().map(Arg::to_value).collect()
    }
}

impl Default for Args {
    fn default() -> Args {
        Args::new()
    }
}

impl From<Vec<Value>> for Args {
    fn from(all: Vec<Value>) -> Args {
        Args::Heap(all)
    }
}

/// The arguments as JSON values, however they are kept.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_values()).finish()
    }
}

/// Equal when the arguments are, however they are kept.
impl PartialEq for Args {
    fn eq(&self, other: &Args) -> bool {
        self.to_values() == other.to_values()
    }
}

impl PartialEq<Vec<Value>> for Args {
    fn eq(&self, other: &Vec<Value>) -> bool {
        self.to_values() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_pushed_inline_or_not() {
        for n in 0..6 {
            let scalars: Vec<Scalar> = (0..n)
                .map(|i| match i % 4 {
                    0 => Scalar::Str(format!("a{i}").into()),
                    1 => Scalar::Int(-i),
                    2 => Scalar::Bool(true),
                    _ => Scalar::Null,
                })
                .collect();
            let all: Vec<Value> = scalars.iter().cloned().map(Value::from).collect();
            let mut args = Args::new();
            scalars.into_iter().for_each(|s| args.push(s));
            assert_eq!(args.to_values(), all);
            assert_eq!(args.len(), all.len());
            assert_eq!(matches!(args, Args::Inline { .. }), n <= INLINE as i64);
            assert_eq!(args, Args::from(all.clone()));
            assert_eq!(args.clone(), all);
        }
    }
}
