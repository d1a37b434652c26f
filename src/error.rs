//! The crate's error type. `ruby/error.rs` maps each variant to a `FiberJob::…` class.

use std::fmt;

#[derive(Debug, Clone)]
pub enum Error {
    /// Redis could not be reached or did not answer in time (`FiberJob::ConnectionError`).
    Connection(String),
    /// A configuration value is unusable (`FiberJob::ConfigurationError`).
    Config(String),
    /// A cron expression does not parse (`FiberJob::InvalidCronError`).
    Cron(String),
    /// Redis answered with an error, or something else went wrong (`FiberJob::Error`).
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connection(m) | Error::Config(m) | Error::Cron(m) | Error::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for Error {}

/// Whether a Redis error is worth waiting out and retrying: Redis unreachable, or
/// answering that it cannot serve yet (LOADING after a restart, TRYAGAIN, MASTERDOWN).
pub fn is_connection_problem(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if is_connection_problem(&e) {
            Error::Connection(format!(
                "cannot reach Redis ({e}); check that Redis is running and that redis_url is right"
            ))
        } else {
            Error::Other(format!("Redis answered with an error: {e}"))
        }
    }
}
