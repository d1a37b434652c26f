//! Maps `crate::error::Error` to the Ruby classes of `lib/fiber_job/errors.rb`, looked
//! up once. The Ruby file is loaded before the extension, so the classes exist.

use magnus::value::Lazy;
use magnus::{prelude::*, ExceptionClass, RModule, Ruby};

use crate::error::Error;

fn lookup(ruby: &Ruby, name: &str) -> ExceptionClass {
    ruby.class_object()
        .const_get::<_, RModule>("FiberJob")
        .and_then(|m| m.const_get::<_, ExceptionClass>(name))
        .unwrap_or_else(|_| ruby.exception_standard_error())
}

static BASE: Lazy<ExceptionClass> = Lazy::new(|ruby| lookup(ruby, "Error"));
static CONNECTION: Lazy<ExceptionClass> = Lazy::new(|ruby| lookup(ruby, "ConnectionError"));
static CRON: Lazy<ExceptionClass> = Lazy::new(|ruby| lookup(ruby, "InvalidCronError"));
static CONFIGURATION: Lazy<ExceptionClass> = Lazy::new(|ruby| lookup(ruby, "ConfigurationError"));
static FULL: Lazy<ExceptionClass> = Lazy::new(|ruby| lookup(ruby, "RedisFullError"));

pub fn to_ruby(ruby: &Ruby, e: Error) -> magnus::Error {
    let class = match &e {
        Error::Connection(_) => ruby.get_inner(&CONNECTION),
        Error::Config(_) => ruby.get_inner(&CONFIGURATION),
        Error::Cron(_) => ruby.get_inner(&CRON),
        Error::RedisFull(_) => ruby.get_inner(&FULL),
        Error::Other(_) => ruby.get_inner(&BASE),
    };
    magnus::Error::new(class, e.to_string())
}
