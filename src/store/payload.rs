//! The job format: one JSON object with Sidekiq's field names (`class`, `args`, `jid`,
//! `queue`, `created_at`, `enqueued_at`, `retry_count`, and on failure `error_class`,
//! `error_message`, `failed_at`, `backtrace`).
//!
//! Payloads are parsed once, here, when a fetcher takes them from Redis. A payload that
//! cannot be run is rejected with a reason that ends up in the dead set. Submodule
//! `common` reads the shape the `Builder` writes for a new job without serde's field
//! machinery; every other payload goes through serde (`parse_general`). Submodule
//! `names` holds the class name and jid a parsed job carries, and `args` its
//! arguments, without an allocation per job.

use std::fmt::Write;

use serde_json::{Map, Value};

/// What a worker needs of a payload that parsed. The raw payload is kept by the caller;
/// the other fields are read again (`fields`) only on the rare paths that change it.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub class: ClassName,
    pub args: Args,
    pub jid: Jid,
    pub retry_count: u64,
    /// `expires_in`: epoch seconds after which the job is not started.
    pub expires_at: Option<f64>,
    /// `unique_for`: the digest naming its lock, and whether the lock is freed when
    /// the job starts (`until: :start`) rather than when it succeeds or dies.
    pub unique: Option<(String, bool)>,
    /// Limits per key, boxed: most jobs have none, and a small `Parsed` is cheap to
    /// move around.
    pub limits: Option<Box<Limits>>,
    /// The batch it belongs to (`FiberJob::Batch`): its end is recorded there.
    pub bid: Option<Box<str>>,
}

/// A job's limits per key (`limits_concurrency`, `throttle`), at least one of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The key, how many may run at once, the lease (seconds).
    pub concurrency: Option<Concurrency>,
    /// The key, how many may start per window, the window (seconds).
    pub throttle: Option<Throttle>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Concurrency {
    pub key: String,
    pub to: u64,
    pub lease: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Throttle {
    pub key: String,
    pub limit: u64,
    pub per: f64,
}

impl Parsed {
    /// True when the job must be admitted (`flow_scripts::ACQUIRE`) before it runs.
    pub fn is_limited(&self) -> bool {
        self.limits.is_some()
    }

    pub fn concurrency(&self) -> Option<&Concurrency> {
        self.limits.as_ref().and_then(|l| l.concurrency.as_ref())
    }

    pub fn throttle(&self) -> Option<&Throttle> {
        self.limits.as_ref().and_then(|l| l.throttle.as_ref())
    }

    /// The member naming this start in a throttle's log (the same job started again
    /// after a failure is another start).
    pub fn throttle_member(&self) -> String {
        format!("{}:{}", self.jid, self.retry_count)
    }
}

/// Only the fields a worker reads; serde skips the rest without building values. Small
/// and borrowed: strings point into the payload, and the rare objects are boxed, so a
/// parse allocates for nothing it does not keep and moves a few hundred bytes, not a
/// kilobyte.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    class: Option<Field<'a>>,
    args: Option<ArgsField>,
    #[serde(borrow)]
    jid: Option<Field<'a>>,
    #[serde(borrow)]
    retry_count: Option<Field<'a>>,
    #[serde(borrow)]
    expires_at: Option<Field<'a>>,
    #[serde(borrow)]
    unique_key: Option<Field<'a>>,
    #[serde(borrow)]
    unique_until: Option<Field<'a>>,
    /// `{"key":…,"to":…,"lease":…}`; `throttle`: `{"key":…,"limit":…,"per":…}`. One
    /// field each: every field here costs each job's parse a little.
    concurrency: Option<Box<Value>>,
    throttle: Option<Box<Value>>,
    #[serde(borrow)]
    bid: Option<Field<'a>>,
}

/// A scalar field as a worker reads it: a string (borrowed unless it had escapes), a
/// number, or anything else (which each reader treats as its field being wrong).
enum Field<'a> {
    Str(std::borrow::Cow<'a, str>),
    Int(u64),
    Num(f64),
    Other,
}

impl Field<'_> {
    /// A non-negative integer, as `serde_json::Value::as_u64` reads one.
    fn as_u64(&self) -> Option<u64> {
        match self {
            Field::Int(n) => Some(*n),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Field::Int(n) => Some(*n as f64),
            Field::Num(f) => Some(*f),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        use std::borrow::Cow;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field::Int(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(Field::Num(v as f64), Field::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Field::Num(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// `args`: the array's values, or `NotArray` for anything else (an error the parse
/// names).
enum ArgsField {
    List(Vec<Value>),
    NotArray,
}

impl<'de> serde::Deserialize<'de> for ArgsField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(a) => Ok(ArgsField::List(a)),
            _ => Ok(ArgsField::NotArray),
        }
    }
}

/// A limit's key and positive count and seconds (`n` and `secs` name the fields), or
/// None when the payload has no such limit (or a malformed one, which the job then
/// runs without).
fn limit(v: Option<Box<Value>>, n: &str, secs: &str) -> Option<(String, u64, f64)> {
    let Value::Object(mut o) = *v? else {
        return None;
    };
    let count = o.get(n).and_then(Value::as_u64).filter(|n| *n > 0)?;
    let seconds = o.get(secs).and_then(Value::as_f64).filter(|s| *s > 0.0)?;
    match o.remove("key") {
        Some(Value::String(k)) if !k.is_empty() => Some((k, count, seconds)),
        _ => None,
    }
}

mod args;
mod common;
mod names;

pub use args::{Arg, Args, Scalar};
pub use names::{class_name, ClassName, Jid};

/// Parses a payload taken from a queue. `Err` holds the reason it cannot run.
pub fn parse(raw: &str) -> Result<Parsed, String> {
    match common::read(raw) {
        Some(parsed) => Ok(parsed),
        None => parse_general(raw),
    }
}

/// Any payload, through serde (`parse` reads the common shape without it).
fn parse_general(raw: &str) -> Result<Parsed, String> {
    use serde::Deserialize;
    // serde would also read a struct from a JSON array; a payload must be an object.
    if !raw.trim_start().starts_with('{') {
        return match serde_json::from_str::<Value>(raw) {
            Ok(_) => Err("payload is not a JSON object".to_string()),
            Err(e) => Err(format!("payload is not valid JSON: {e}")),
        };
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let head = Head::deserialize(&mut de)
        .and_then(|h| de.end().map(|()| h))
        .map_err(|e| format!("payload is not valid JSON: {e}"))?;
    let class = match head.class {
        Some(Field::Str(c)) if !c.is_empty() => names::class_name(&c),
        Some(_) => return Err("payload field 'class' is not a non-empty string".to_string()),
        None => return Err("payload has no 'class' field".to_string()),
    };
    let args = match head.args {
        Some(ArgsField::List(a)) => Args::from(a),
        Some(ArgsField::NotArray) => return Err("payload field 'args' is not an array".to_string()),
        None => return Err("payload has no 'args' field".to_string()),
    };
    let jid = head
        .jid
        .as_ref()
        .and_then(Field::as_str)
        .map_or_else(Jid::default, Jid::new);
    let retry_count = head
        .retry_count
        .as_ref()
        .and_then(Field::as_u64)
        .unwrap_or(0);
    Ok(Parsed {
        class,
        args,
        jid,
        retry_count,
        expires_at: head.expires_at.as_ref().and_then(Field::as_f64),
        unique: match head.unique_key {
            Some(Field::Str(digest)) if !digest.is_empty() => Some((
                digest.into_owned(),
                head.unique_until.as_ref().and_then(Field::as_str) == Some("start"),
            )),
            _ => None,
        },
        limits: match (head.concurrency, head.throttle) {
            (None, None) => None,
            (c, t) => {
                let concurrency =
                    limit(c, "to", "lease").map(|(key, to, lease)| Concurrency { key, to, lease });
                let throttle =
                    limit(t, "limit", "per").map(|(key, limit, per)| Throttle { key, limit, per });
                (concurrency.is_some() || throttle.is_some()).then(|| {
                    Box::new(Limits {
                        concurrency,
                        throttle,
                    })
                })
            }
        },
        bid: match head.bid {
            Some(Field::Str(b)) if !b.is_empty() => Some(b.into()),
            _ => None,
        },
    })
}

/// A fresh job id: 24 hex characters, like the ones Ruby makes. Unique, not secret:
/// it mixes the time, a counter and std's per-process random hasher keys.
pub fn new_jid() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.write_usize(i);
        *part = h.finish();
    }
    format!("{:016x}{:08x}", parts[0], parts[1] as u32)
}

/// Builds new payloads, the one way every enqueue makes them (the Rust fast path, the
/// Ruby path, cron ticks): `class`, `args`, `jid`, `queue`, `created_at`, `enqueued_at`,
/// `retry_count` in that order, then any extra fields.
pub struct Builder {
    /// `{"class":…,"args":` — the same for every payload of a batch.
    head: String,
    /// `,"queue":…,"created_at":…,"enqueued_at":…,"retry_count":0`.
    tail: String,
}

impl Builder {
    pub fn new(class: &str, queue: &str, now: f64) -> Builder {
        // Debug keeps a float's decimal point (1.0, 1e20): it reads back as a Float.
        Builder {
            head: format!(r#"{{"class":{},"args":"#, Value::from(class)),
            tail: format!(
                r#","queue":{},"created_at":{now:?},"enqueued_at":{now:?},"retry_count":0"#,
                Value::from(queue)
            ),
        }
    }

    /// One payload with `args` (the JSON text of the argument Array) and `extra` fields
    /// (a core field among them is ignored). Returns (jid, payload).
    pub fn payload(&self, args: &str, extra: &Map<String, Value>) -> (String, String) {
        let jid = new_jid();
        let mut p = String::with_capacity(self.head.len() + args.len() + self.tail.len() + 40);
        p.push_str(&self.head);
        p.push_str(args);
        p.push_str(r#","jid":""#);
        p.push_str(&jid);
        p.push('"');
        p.push_str(&self.tail);
        for (k, v) in extra
            .iter()
            .filter(|(k, _)| !CORE_FIELDS.contains(&k.as_str()))
        {
            let _ = write!(p, ",{}:{v}", Value::from(k.as_str()));
        }
        p.push('}');
        (jid, p)
    }
}

/// The fields every new payload has, in order.
pub const CORE_FIELDS: [&str; 7] = [
    "class",
    "args",
    "jid",
    "queue",
    "created_at",
    "enqueued_at",
    "retry_count",
];

/// The payload a cron tick enqueues: no arguments, the tick it is for, the class's
/// `extra` fields (its limits per key), and with `expires_in` the deadline counted
/// from the tick.
pub fn cron_payload(
    class: &str,
    queue: &str,
    tick: i64,
    now: f64,
    extra: &Map<String, Value>,
) -> String {
    let mut fields = Map::new();
    fields.insert("cron_tick".into(), Value::from(tick));
    for (k, v) in extra {
        match (k.as_str(), v.as_f64()) {
            ("expires_in", Some(secs)) => {
                fields.insert("expires_at".into(), Value::from(tick as f64 + secs));
            }
            ("expires_in", None) => {}
            _ => {
                fields.insert(k.clone(), v.clone());
            }
        }
    }
    Builder::new(class, queue, now).payload("[]", &fields).1
}

/// Seconds since the epoch, as Sidekiq stores times.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Epoch seconds from a payload's time field. FiberJob and Sidekiq up to 7 write float
/// seconds; Sidekiq 8 writes integer milliseconds (`created_at`, `enqueued_at`,
/// `failed_at`, `retried_at`). An integer of 10^11 or more is milliseconds: as seconds
/// it would be the year 5138, as milliseconds it passed in 1973.
pub fn epoch_seconds(v: &Value) -> Option<f64> {
    let t = v.as_f64()?;
    let millis = (v.is_i64() || v.is_u64()) && t >= 1e11;
    Some(if millis { t / 1000.0 } else { t })
}

/// The time fields of a job payload that Sidekiq 8 writes in milliseconds.
pub const TIME_FIELDS: [&str; 4] = ["created_at", "enqueued_at", "failed_at", "retried_at"];

/// Rewrites a payload's time fields in epoch seconds (see `epoch_seconds`).
pub fn times_in_seconds(job: &mut serde_json::Map<String, Value>) {
    for field in TIME_FIELDS {
        if let Some(v) = job.get_mut(field) {
            if let Some(seconds) = epoch_seconds(v) {
                *v = Value::from(seconds);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sidekiq_8_millisecond_times_as_seconds() {
        let json = serde_json::json!({"created_at": 1_764_000_000_123u64, "enqueued_at": 1_764_000_000.5,
            "failed_at": 1_764_000_000i64, "retried_at": "x"});
        let mut job = json.as_object().unwrap().clone();
        times_in_seconds(&mut job);
        assert_eq!(job["created_at"], Value::from(1_764_000_000.123));
        assert_eq!(job["enqueued_at"], Value::from(1_764_000_000.5));
        assert_eq!(job["failed_at"], Value::from(1_764_000_000.0));
        assert_eq!(job["retried_at"], Value::from("x"));
    }

    #[test]
    fn parses_a_good_payload() {
        let p =
            parse(r#"{"class":"EmailJob","args":[123,"hi"],"jid":"abc","retry_count":2}"#).unwrap();
        assert_eq!(&*p.class, "EmailJob");
        assert_eq!(p.args, vec![Value::from(123), Value::from("hi")]);
        assert_eq!(p.jid, "abc");
        assert_eq!(p.retry_count, 2);
        assert_eq!(p.bid, None);
        let p = parse(r#"{"class":"A","args":[],"bid":"b1"}"#).unwrap();
        assert_eq!(p.bid.as_deref(), Some("b1"));
    }

    #[test]
    fn reads_limits_and_ignores_malformed_ones() {
        let p = parse(
            r#"{"class":"A","args":[],"jid":"j","retry_count":1,"concurrency":{"key":"A/1","to":2,"lease":60},"throttle":{"key":"s","limit":20,"per":1.5}}"#,
        )
        .unwrap();
        let c = p.concurrency().unwrap();
        assert_eq!((c.key.as_str(), c.to, c.lease), ("A/1", 2, 60.0));
        let t = p.throttle().unwrap();
        assert_eq!((t.key.as_str(), t.limit, t.per), ("s", 20, 1.5));
        assert!(p.is_limited());
        assert_eq!(p.throttle_member(), "j:1");
        let bad = parse(
            r#"{"class":"A","args":[],"concurrency":{"key":"k","to":0,"lease":1},"throttle":[1]}"#,
        )
        .unwrap();
        assert!(!bad.is_limited());
    }

    #[test]
    fn rejects_bad_payloads_with_a_reason() {
        assert!(parse("not json").unwrap_err().contains("not valid JSON"));
        assert!(parse("[1]").unwrap_err().contains("not a JSON object"));
        assert!(parse(r#"["A",[1]]"#)
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(parse("[oops").unwrap_err().contains("not valid JSON"));
        assert!(parse(r#"{"args":[]}"#).unwrap_err().contains("no 'class'"));
        assert!(parse(r#"{"class":"A"}"#).unwrap_err().contains("no 'args'"));
        assert!(parse(r#"{"class":"A","args":{}}"#)
            .unwrap_err()
            .contains("not an array"));
        assert!(parse(r#"{"class":5,"args":[]}"#)
            .unwrap_err()
            .contains("'class'"));
    }

    #[test]
    fn the_builder_writes_the_core_fields_in_order_then_the_extra_ones() {
        let mut extra = Map::new();
        extra.insert("wrapped".into(), Value::from("Mailer"));
        extra.insert("jid".into(), Value::from("ignored"));
        let (jid, p) = Builder::new("Email\"Job", "default", 2.5).payload("[1,\"a\"]", &extra);
        let v: Map<String, Value> = serde_json::from_str(&p).unwrap();
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        assert_eq!(keys[..7], CORE_FIELDS);
        assert_eq!(keys[7..], ["wrapped"]);
        assert_eq!(v["class"], Value::from("Email\"Job"));
        assert_eq!(v["args"], serde_json::json!([1, "a"]));
        assert_eq!(v["jid"], Value::from(jid));
        assert_eq!(v["created_at"], Value::from(2.5));
        assert_eq!(v["retry_count"], Value::from(0));
        let mut extra = Map::new();
        extra.insert("expires_in".into(), Value::from(30));
        extra.insert("throttle".into(), serde_json::json!({"key": "C"}));
        let cron: Value = serde_json::from_str(&cron_payload("C", "q", 60, 1.0, &extra)).unwrap();
        assert_eq!(cron["cron_tick"], Value::from(60));
        assert_eq!(cron["args"], serde_json::json!([]));
        assert_eq!(cron["expires_at"], Value::from(90.0));
        assert_eq!(cron["throttle"]["key"], Value::from("C"));
    }

    #[test]
    fn jids_are_24_hex_and_distinct() {
        let a = new_jid();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_jid());
    }
}
