//! The crate's error type. `ruby/error.rs` maps each variant to a `FiberJob::…` class.
//!
//! Redis errors are sorted here, once: what is worth waiting out (Redis unreachable,
//! loading, failing over), what needs the user (out of memory, a password, a key of
//! the wrong type), and what is a bug. Each gets a message that says what to do.

use std::fmt;

#[derive(Debug, Clone)]
pub enum Error {
    /// Redis could not be reached or did not answer in time (`FiberJob::ConnectionError`).
    Connection(String),
    /// A configuration value is unusable (`FiberJob::ConfigurationError`).
    Config(String),
    /// A cron expression does not parse (`FiberJob::InvalidCronError`).
    Cron(String),
    /// Redis is over its `maxmemory` and refused a write (`FiberJob::RedisFullError`).
    RedisFull(String),
    /// Redis answered with an error, or something else went wrong (`FiberJob::Error`).
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connection(m)
            | Error::Config(m)
            | Error::Cron(m)
            | Error::RedisFull(m)
            | Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// How an enqueue that fewer replicas confirmed than `redis_wait_replicas` asks is
/// told apart (an error of the client's making, never retried: that would store the
/// job twice).
pub const NOT_REPLICATED: &str = "not confirmed by enough replicas";

/// Server error codes that mean "not now": Redis is loading its data, failing over, or
/// a replica answers for a master that is gone. Waited out like an unreachable Redis.
const TRANSIENT_CODES: [&str; 5] = [
    "LOADING",
    "TRYAGAIN",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "READONLY",
];

/// Every error code Redis replied with in `e` (one for a command, several for a
/// pipeline or an aborted transaction), first the most telling: the code of a command
/// Redis refused, not the EXECABORT that followed it.
pub fn server_codes(e: &redis::RedisError) -> Vec<String> {
    let mut codes: Vec<String> = e
        .clone()
        .into_server_errors()
        .map(|items| items.iter().map(|(_, s)| s.code().to_string()).collect())
        .unwrap_or_default();
    if codes.is_empty() {
        if let Some(code) = e.code() {
            codes.push(code.to_string());
        }
    }
    codes.sort_by_key(|c| c == "EXECABORT");
    codes
}

/// Whether the sentinels named no reachable master: a failover in progress (or a wrong
/// master name, which waiting does not fix but the message says).
fn sentinel_found_no_master(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::MasterNameNotFoundBySentinel
            | redis::ErrorKind::NoValidReplicasFoundBySentinel
    )
}

/// Whether `e` means Redis refused a write because it is over `maxmemory`.
pub fn is_out_of_memory(e: &redis::RedisError) -> bool {
    server_codes(e).iter().any(|c| c == "OOM")
}

/// Whether a Redis error is worth waiting out and retrying: Redis unreachable, or
/// answering that it cannot serve yet (loading after a restart, failing over).
pub fn is_connection_problem(e: &redis::RedisError) -> bool {
    sentinel_found_no_master(e)
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || server_codes(e)
            .iter()
            .any(|c| TRANSIENT_CODES.contains(&c.as_str()))
}

/// The message for a Redis error reply, by its code, saying what to do about it.
fn explain(code: &str, e: &redis::RedisError) -> Error {
    match code {
        "OOM" => Error::RedisFull(format!(
            "Redis is out of memory (OOM: its used memory is over maxmemory) and refused the write, so nothing was stored. \
             Free memory in Redis or raise maxmemory (CONFIG SET maxmemory), then try again ({e})"
        )),
        "READONLY" => Error::Connection(format!(
            "Redis answered READONLY: redis_url points at a replica (or a master that was just demoted by a failover), \
             which cannot take writes. Point redis_url at the current master ({e})"
        )),
        "LOADING" => Error::Connection(format!(
            "Redis is still loading its data from disk after a restart (LOADING) and answers once it is done; \
             try again shortly, or raise network_timeout to wait longer ({e})"
        )),
        "MASTERDOWN" => Error::Connection(format!(
            "redis_url points at a replica that lost its master (MASTERDOWN); point it at the master ({e})"
        )),
        "TRYAGAIN" | "CLUSTERDOWN" => Error::Connection(format!(
            "Redis is not ready to serve this key now ({code}); try again shortly ({e})"
        )),
        "NOSCRIPT" => Error::Other(format!(
            "Redis does not have FiberJob's Lua script (NOSCRIPT); FiberJob reloads scripts itself, so something \
             between FiberJob and Redis (a proxy?) refuses SCRIPT LOAD or EVAL ({e})"
        )),
        "WRONGTYPE" => Error::Other(format!(
            "a key under FiberJob's prefix holds the wrong type of value (WRONGTYPE): something other than FiberJob \
             wrote it. Give FiberJob a prefix of its own (config.prefix) or delete the key ({e})"
        )),
        "NOAUTH" => Error::Config(format!(
            "Redis requires a password (NOAUTH) and redis_url has none: use redis://:PASSWORD@host:6379/0, or \
             redis://USER:PASSWORD@host:6379/0 for an ACL user ({e})"
        )),
        "WRONGPASS" => Error::Config(format!(
            "Redis refused the user or password in redis_url (WRONGPASS); check them ({e})"
        )),
        "NOPERM" => Error::Config(format!(
            "the Redis ACL user in redis_url may not run a command FiberJob needs (NOPERM); FiberJob needs \
             read/write access to its keys, EVAL/EVALSHA/SCRIPT, PUBLISH/SUBSCRIBE and INFO ({e})"
        )),
        _ => Error::Other(format!("Redis answered with an error: {e}")),
    }
}

/// What a TLS handshake failure means and what to do, from the error rustls reported.
fn tls_problem(e: &redis::RedisError) -> Option<String> {
    let text = e.to_string();
    let why = if text.contains("UnknownIssuer") || text.contains("UnknownCA") {
        "the server's certificate is signed by a CA FiberJob does not trust (unknown CA): give \
         redis_tls ca_file: the CA's PEM file, or verify_peer: false for a provider's self-signed \
         certificate"
    } else if text.contains("not valid for name") || text.contains("NotValidForName") {
        "the server's certificate is not for the host in redis_url (name mismatch): connect by a \
         name or address the certificate lists"
    } else if text.contains("CertificateRequired") {
        "the server requires a client certificate (mutual TLS): give redis_tls cert_file: and key_file:"
    } else if text.contains("speaks plain Redis, not TLS") {
        "the server does not speak TLS (it answered in plain Redis): use redis:// instead of rediss://, \
         or enable TLS on the server"
    } else if text.contains("Connection reset by peer") {
        "the server closed the connection at once: if it requires TLS, use rediss://"
    } else if text.contains("invalid peer certificate") || text.contains("received fatal alert") {
        "the TLS handshake failed"
    } else {
        return None;
    };
    Some(format!("cannot connect to Redis: {why} ({e})"))
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return explain("WRONGPASS", &e);
        }
        if let Some(message) = tls_problem(&e) {
            return Error::Connection(message);
        }
        if e.to_string().contains(NOT_REPLICATED) {
            return Error::Connection(format!(
                "the job was stored on the master, but {} replica(s) confirmed it in time (redis_wait_replicas); \
                 if the master fails now it may be lost: enqueue it again if it must not be (it may then run twice)",
                e.detail().unwrap_or("not enough")
            ));
        }
        if sentinel_found_no_master(&e) {
            return Error::Connection(format!(
                "the sentinels name no reachable master now — a failover in progress, or \
                 redis_sentinel_master is not the name the sentinels monitor ({e})"
            ));
        }
        let codes = server_codes(&e);
        if let Some(code) = codes.first() {
            return explain(code, &e);
        }
        if is_connection_problem(&e) {
            Error::Connection(format!(
                "cannot reach Redis ({e}); check that Redis is running and that redis_url is right"
            ))
        } else {
            Error::Other(format!("Redis answered with an error: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(line: &str) -> redis::RedisError {
        // What the parser makes of an error reply.
        let v = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        match v {
            redis::Value::ServerError(e) => e.into(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn out_of_memory_is_its_own_error() {
        let e = server("OOM command not allowed when used memory > 'maxmemory'.");
        assert!(is_out_of_memory(&e));
        assert!(!is_connection_problem(&e));
        let err = Error::from(e);
        assert!(matches!(err, Error::RedisFull(_)));
        assert!(err.to_string().contains("out of memory"));
    }

    #[test]
    fn failover_replies_are_waited_out_and_others_are_explained() {
        for code in ["LOADING x", "READONLY x", "MASTERDOWN x", "TRYAGAIN x"] {
            assert!(is_connection_problem(&server(code)), "{code}");
        }
        assert!(matches!(
            Error::from(server("NOAUTH Authentication required.")),
            Error::Config(_)
        ));
        let wrong = Error::from(server("WRONGTYPE Operation against a key"));
        assert!(wrong.to_string().contains("config.prefix"));
    }
}
