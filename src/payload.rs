//! The job format: one JSON object with Sidekiq's field names (`class`, `args`, `jid`,
//! `queue`, `created_at`, `enqueued_at`, `retry_count`, and on failure `error_class`,
//! `error_message`, `failed_at`, `backtrace`).
//!
//! Payloads are parsed once, here, when a fetcher takes them from Redis. A payload that
//! cannot be run is rejected with a reason that ends up in the dead set.

use serde_json::{Map, Value};

/// What a worker needs of a payload that parsed. The raw payload is kept by the caller;
/// the other fields are read again (`fields`) only on the rare paths that change it.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub class: String,
    pub args: Vec<Value>,
    pub jid: String,
    pub retry_count: u64,
}

/// Only the fields a worker reads; serde skips the rest without building values.
#[derive(serde::Deserialize)]
struct Head {
    class: Option<Value>,
    args: Option<Value>,
    jid: Option<Value>,
    retry_count: Option<Value>,
}

/// Parses a payload taken from a queue. `Err` holds the reason it cannot run.
pub fn parse(raw: &str) -> Result<Parsed, String> {
    // serde would also read a struct from a JSON array; a payload must be an object.
    if !raw.trim_start().starts_with('{') {
        return match serde_json::from_str::<Value>(raw) {
            Ok(_) => Err("payload is not a JSON object".to_string()),
            Err(e) => Err(format!("payload is not valid JSON: {e}")),
        };
    }
    let head: Head =
        serde_json::from_str(raw).map_err(|e| format!("payload is not valid JSON: {e}"))?;
    let class = match head.class {
        Some(Value::String(c)) if !c.is_empty() => c,
        Some(_) => return Err("payload field 'class' is not a non-empty string".to_string()),
        None => return Err("payload has no 'class' field".to_string()),
    };
    let args = match head.args {
        Some(Value::Array(a)) => a,
        Some(_) => return Err("payload field 'args' is not an array".to_string()),
        None => return Err("payload has no 'args' field".to_string()),
    };
    let jid = match head.jid {
        Some(Value::String(j)) => j,
        _ => String::new(),
    };
    let retry_count = head
        .retry_count
        .as_ref()
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Parsed {
        class,
        args,
        jid,
        retry_count,
    })
}

/// Every field of a payload that `parse` accepted (for failure and dead records).
pub fn fields(raw: &str) -> Map<String, Value> {
    match serde_json::from_str(raw) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// What a failed attempt adds to a payload.
#[derive(Clone, Debug)]
pub struct Failure {
    pub error_class: String,
    pub error_message: String,
    pub backtrace: Vec<String>,
    pub failed_at: f64,
}

/// How many backtrace lines a failure keeps: enough to find the failing line, small enough
/// that a capped failure list of big backtraces stays a few MB.
pub const BACKTRACE_LINES: usize = 20;

/// The payload after a failed attempt: retry_count incremented, error fields set.
pub fn with_failure(fields: &Map<String, Value>, failure: &Failure) -> Map<String, Value> {
    let mut out = fields.clone();
    let count = fields
        .get("retry_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    out.insert("retry_count".into(), Value::from(count + 1));
    out.insert(
        "error_class".into(),
        Value::from(failure.error_class.clone()),
    );
    out.insert(
        "error_message".into(),
        Value::from(failure.error_message.clone()),
    );
    out.insert("failed_at".into(), Value::from(failure.failed_at));
    let trace: Vec<Value> = failure
        .backtrace
        .iter()
        .take(BACKTRACE_LINES)
        .map(|l| Value::from(l.clone()))
        .collect();
    out.insert("backtrace".into(), Value::Array(trace));
    out
}

/// The record kept in the failed list: the failed payload plus `error`
/// ("ErrorClass: message"), which is what `Queue.failed_jobs` readers print.
pub fn failure_record(failed: &Map<String, Value>, failure: &Failure, queue: &str) -> String {
    let mut rec = failed.clone();
    rec.insert(
        "error".into(),
        Value::from(format!(
            "{}: {}",
            failure.error_class, failure.error_message
        )),
    );
    rec.entry("queue").or_insert_with(|| Value::from(queue));
    Value::Object(rec).to_string()
}

/// A dead-set entry for a payload that could not even be parsed: the raw text is kept
/// verbatim under `payload`, so nothing is lost. Bytes that are not UTF-8 cannot be
/// JSON text: they are kept exactly under `payload_base64`, and `payload` shows them
/// with U+FFFD where a byte was invalid.
pub fn unparsable_record(raw: &[u8], reason: &str, queue: &str, now: f64) -> String {
    let mut rec = Map::new();
    rec.insert("class".into(), Value::Null);
    rec.insert("jid".into(), Value::from(new_jid()));
    rec.insert("queue".into(), Value::from(queue));
    match std::str::from_utf8(raw) {
        Ok(text) => {
            rec.insert("payload".into(), Value::from(text));
        }
        Err(_) => {
            rec.insert(
                "payload".into(),
                Value::from(String::from_utf8_lossy(raw).into_owned()),
            );
            rec.insert("payload_base64".into(), Value::from(base64::encode(raw)));
        }
    }
    rec.insert(
        "error_class".into(),
        Value::from("FiberJob::UnknownJobError"),
    );
    rec.insert("error_message".into(), Value::from(reason));
    rec.insert(
        "error".into(),
        Value::from(format!("FiberJob::UnknownJobError: {reason}")),
    );
    rec.insert("failed_at".into(), Value::from(now));
    Value::Object(rec).to_string()
}

/// A dead-set entry for a parsed job that will not run again.
pub fn dead_record(
    fields: &Map<String, Value>,
    reason_class: &str,
    reason: &str,
    now: f64,
) -> String {
    let mut rec = fields.clone();
    rec.insert("error_class".into(), Value::from(reason_class));
    rec.insert("error_message".into(), Value::from(reason));
    rec.insert(
        "error".into(),
        Value::from(format!("{reason_class}: {reason}")),
    );
    rec.insert("failed_at".into(), Value::from(now));
    rec.insert("died_at".into(), Value::from(now));
    Value::Object(rec).to_string()
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

/// The payload a cron tick enqueues.
pub fn cron_payload(class: &str, queue: &str, tick: i64, now: f64) -> String {
    serde_json::json!({
        "class": class,
        "args": [],
        "jid": new_jid(),
        "queue": queue,
        "created_at": now,
        "enqueued_at": now,
        "retry_count": 0,
        "cron_tick": tick,
    })
    .to_string()
}

/// Fields a failure or death adds, removed when a dead job is retried by hand.
const FAILURE_FIELDS: [&str; 9] = [
    "error",
    "error_class",
    "error_message",
    "failed_at",
    "died_at",
    "backtrace",
    "retry_priority",
    "at",
    "recoveries",
];

/// What to enqueue when a dead-set entry is retried by hand: (queue, payload). The
/// counter starts over. An entry that never parsed is re-enqueued byte for byte.
pub fn revived(entry: &str, now: f64) -> Option<(String, Vec<u8>)> {
    let Value::Object(mut fields) = serde_json::from_str::<Value>(entry).ok()? else {
        return None;
    };
    let queue = fields
        .get("queue")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    if fields.get("class").is_none_or(Value::is_null) {
        if let Some(bytes) = fields
            .get("payload_base64")
            .and_then(Value::as_str)
            .and_then(base64::decode)
        {
            return Some((queue, bytes));
        }
        return fields
            .get("payload")
            .and_then(Value::as_str)
            .map(|raw| (queue, raw.as_bytes().to_vec()));
    }
    for f in FAILURE_FIELDS {
        fields.remove(f);
    }
    fields.insert("retry_count".into(), Value::from(0));
    fields.insert("enqueued_at".into(), Value::from(now));
    Some((queue, Value::Object(fields).to_string().into_bytes()))
}

/// Standard base64 (RFC 4648, padded), for payload bytes a JSON record cannot hold.
/// Twenty lines do not justify a dependency.
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// `None` when `text` is not padded standard base64.
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        for chunk in bytes.chunks(4) {
            let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
            if pad > 2 {
                return None;
            }
            let mut n = 0u32;
            for (i, b) in chunk[..4 - pad].iter().enumerate() {
                let v = ALPHABET.iter().position(|a| a == b)? as u32;
                n |= v << (18 - 6 * i);
            }
            out.extend(n.to_be_bytes()[1..4 - pad].iter());
        }
        Some(out)
    }
}

/// Seconds since the epoch, as Sidekiq stores times.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_good_payload() {
        let p =
            parse(r#"{"class":"EmailJob","args":[123,"hi"],"jid":"abc","retry_count":2}"#).unwrap();
        assert_eq!(p.class, "EmailJob");
        assert_eq!(p.args, vec![Value::from(123), Value::from("hi")]);
        assert_eq!(p.jid, "abc");
        assert_eq!(p.retry_count, 2);
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

    fn raw_of(_p: &Parsed) -> String {
        r#"{"class":"A","args":[],"jid":"j","retry_count":1}"#.to_string()
    }

    #[test]
    fn failure_increments_the_count_and_trims_the_backtrace() {
        let p = parse(r#"{"class":"A","args":[],"jid":"j","retry_count":1}"#).unwrap();
        let f = Failure {
            error_class: "RuntimeError".into(),
            error_message: "boom".into(),
            backtrace: (0..50).map(|i| format!("line {i}")).collect(),
            failed_at: 1.5,
        };
        let out = with_failure(&fields(&raw_of(&p)), &f);
        assert_eq!(out["retry_count"], Value::from(2));
        assert_eq!(out["backtrace"].as_array().unwrap().len(), BACKTRACE_LINES);
        let rec: Value = serde_json::from_str(&failure_record(&out, &f, "default")).unwrap();
        assert_eq!(rec["error"], Value::from("RuntimeError: boom"));
        assert_eq!(rec["queue"], Value::from("default"));
    }

    #[test]
    fn jids_are_24_hex_and_distinct() {
        let a = new_jid();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_jid());
    }

    #[test]
    fn a_revived_dead_job_starts_over() {
        let dead = r#"{"class":"A","args":[1],"jid":"j","queue":"q","retry_count":4,"error":"E: x","error_class":"E","backtrace":[],"died_at":1.0}"#;
        let (queue, payload) = revived(dead, 9.0).unwrap();
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(queue, "q");
        assert_eq!(v["retry_count"], Value::from(0));
        assert_eq!(v["args"], serde_json::json!([1]));
        assert!(v.get("error").is_none() && v.get("died_at").is_none());
        let raw = unparsable_record(b"{oops", "bad", "q", 1.0);
        assert_eq!(
            revived(&raw, 2.0).unwrap(),
            ("q".to_string(), b"{oops".to_vec())
        );
    }

    #[test]
    fn unparsable_payload_is_kept_verbatim() {
        let rec: Value =
            serde_json::from_str(&unparsable_record(b"{oops", "bad", "q", 2.0)).unwrap();
        assert_eq!(rec["payload"], Value::from("{oops"));
        assert_eq!(rec["queue"], Value::from("q"));
        assert!(rec.get("payload_base64").is_none());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_exactly() {
        let raw = b"{\"class\":\"A\xff\xfe\",\"args\":[]}";
        let rec = unparsable_record(raw, "not UTF-8", "q", 2.0);
        let v: Value = serde_json::from_str(&rec).unwrap();
        assert!(v["payload"].as_str().unwrap().contains('\u{FFFD}'));
        assert_eq!(revived(&rec, 3.0).unwrap().1, raw.to_vec());
    }

    #[test]
    fn base64_round_trips() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0, 255, 128],
        ] {
            assert_eq!(base64::decode(&base64::encode(input)).unwrap(), input);
        }
        assert_eq!(base64::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64::encode(b"fo"), "Zm8=");
        assert!(base64::decode("Zm9").is_none());
        assert!(base64::decode("Zm!=").is_none());
    }
}
