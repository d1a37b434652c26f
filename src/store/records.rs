//! What FiberJob writes about a job beyond its payload: a failed attempt (the record
//! in the failed list, the payload for the retry or dead set), dead-set entries for
//! jobs that cannot run, and the payload a dead job is retried with.

use serde_json::{Map, Value};

/// Every field of a payload that `parse` accepted (for failure and dead records).
fn fields(raw: &str) -> Map<String, Value> {
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

/// What a failed attempt writes: the record for the failed list, and the payload for
/// the retry set (when it is retried) or the dead set.
pub struct Failed {
    pub record: String,
    pub payload: String,
}

/// A failed attempt of the job `raw` of `queue`. `retry`: `Some(priority)` when it is
/// retried (priority: to the front of its queue when due), `None` when it dies.
pub fn failed(raw: &str, failure: &Failure, queue: &str, retry: Option<bool>) -> Failed {
    let mut fields = with_failure(&fields(raw), failure);
    let record = failure_record(&fields, failure, queue);
    match retry {
        Some(true) => {
            fields.insert("retry_priority".into(), true.into());
        }
        Some(false) => {}
        None => {
            fields.insert("died_at".into(), failure.failed_at.into());
            fields.insert(
                "error".into(),
                format!("{}: {}", failure.error_class, failure.error_message).into(),
            );
        }
    }
    Failed {
        record,
        payload: Value::Object(fields).to_string(),
    }
}

/// The payload after a failed attempt: retry_count incremented, error fields set.
fn with_failure(fields: &Map<String, Value>, failure: &Failure) -> Map<String, Value> {
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
fn failure_record(failed: &Map<String, Value>, failure: &Failure, queue: &str) -> String {
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
pub fn unreadable_entry(raw: &[u8], reason: &str, queue: &str, now: f64) -> String {
    let mut rec = Map::new();
    rec.insert("class".into(), Value::Null);
    rec.insert("jid".into(), Value::from(super::payload::new_jid()));
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
            rec.insert(
                "payload_base64".into(),
                Value::from(super::base64::encode(raw)),
            );
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

/// A dead-set entry for a parsed job (`raw`) that will not run again.
pub fn dead_entry(raw: &str, reason_class: &str, reason: &str, now: f64) -> String {
    let mut rec = fields(raw);
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

/// Fields a failure or death adds, removed when a dead job is retried by hand (and
/// `expires_at`: a person retrying an expired job wants it run).
const FAILURE_FIELDS: [&str; 12] = [
    "error",
    // Sidekiq's, on entries its dead set held (`worker/sidekiq_bridge.rs`).
    "error_backtrace",
    "retried_at",
    "error_class",
    "error_message",
    "failed_at",
    "died_at",
    "backtrace",
    "retry_priority",
    "at",
    "recoveries",
    "expires_at",
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
            .and_then(super::base64::decode)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            error_class: "RuntimeError".into(),
            error_message: "boom".into(),
            backtrace: (0..50).map(|i| format!("line {i}")).collect(),
            failed_at: 1.5,
        }
    }

    #[test]
    fn a_failure_increments_the_count_trims_the_backtrace_and_records_the_error() {
        let raw = r#"{"class":"A","args":[],"jid":"j","retry_count":1}"#;
        let retried = failed(raw, &failure(), "default", Some(true));
        let out: Value = serde_json::from_str(&retried.payload).unwrap();
        assert_eq!(out["retry_count"], Value::from(2));
        assert_eq!(out["backtrace"].as_array().unwrap().len(), BACKTRACE_LINES);
        assert_eq!(out["retry_priority"], Value::from(true));
        assert!(out.get("died_at").is_none());
        let rec: Value = serde_json::from_str(&retried.record).unwrap();
        assert_eq!(rec["error"], Value::from("RuntimeError: boom"));
        assert_eq!(rec["queue"], Value::from("default"));
        let dead: Value =
            serde_json::from_str(&failed(raw, &failure(), "default", None).payload).unwrap();
        assert_eq!(dead["died_at"], Value::from(1.5));
        assert_eq!(dead["error"], Value::from("RuntimeError: boom"));
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
        let raw = unreadable_entry(b"{oops", "bad", "q", 1.0);
        assert_eq!(
            revived(&raw, 2.0).unwrap(),
            ("q".to_string(), b"{oops".to_vec())
        );
    }

    #[test]
    fn unparsable_payload_is_kept_verbatim() {
        let rec: Value =
            serde_json::from_str(&unreadable_entry(b"{oops", "bad", "q", 2.0)).unwrap();
        assert_eq!(rec["payload"], Value::from("{oops"));
        assert_eq!(rec["queue"], Value::from("q"));
        assert!(rec.get("payload_base64").is_none());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_exactly() {
        let raw = b"{\"class\":\"A\xff\xfe\",\"args\":[]}";
        let rec = unreadable_entry(raw, "not UTF-8", "q", 2.0);
        let v: Value = serde_json::from_str(&rec).unwrap();
        assert!(v["payload"].as_str().unwrap().contains('\u{FFFD}'));
        assert_eq!(revived(&rec, 3.0).unwrap().1, raw.to_vec());
    }
}
