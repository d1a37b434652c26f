//! Settings from Ruby, typed once: `Fields` reads a settings Hash with no defaults and
//! no unknown keys; `target_settings` turns the connection settings every native object
//! gets (`Configuration#connection`) into `TargetSettings`.

use std::time::Duration;

use magnus::{prelude::*, RHash, Ruby, Symbol, TryConvert, Value};

use crate::runtime::target::{TargetSettings, TlsSettings};

/// A settings Hash from Ruby, read key by key into a typed value. Ruby's configuration
/// owns every default: each key must be there (nil only where the setting is optional),
/// and a key nothing reads is an error, so a misspelt or forgotten one fails loudly
/// instead of becoming 0 or false.
pub struct Fields {
    hash: RHash,
    what: &'static str,
    read: Vec<&'static str>,
}

impl Fields {
    /// `what` names the settings in errors ("connection", "worker").
    pub fn new(ruby: &Ruby, value: Value, what: &'static str) -> Result<Self, magnus::Error> {
        let hash = RHash::from_value(value).ok_or_else(|| {
            magnus::Error::new(
                ruby.exception_arg_error(),
                format!(
                    "FiberJob::Native: the {what} settings must be a Hash, got {}",
                    value.inspect()
                ),
            )
        })?;
        Ok(Fields {
            hash,
            what,
            read: Vec::new(),
        })
    }

    fn lookup(&mut self, ruby: &Ruby, key: &'static str) -> Result<Value, magnus::Error> {
        self.read.push(key);
        self.hash.get(ruby.to_symbol(key)).ok_or_else(|| {
            magnus::Error::new(
                ruby.exception_arg_error(),
                format!("FiberJob::Native: the {} settings lack :{key}", self.what),
            )
        })
    }

    /// A setting that must have a value.
    pub fn get<T: TryConvert>(
        &mut self,
        ruby: &Ruby,
        key: &'static str,
    ) -> Result<T, magnus::Error> {
        let value = self.lookup(ruby, key)?;
        if value.is_nil() {
            return Err(magnus::Error::new(
                ruby.exception_arg_error(),
                format!("FiberJob::Native: the {} setting :{key} is nil", self.what),
            ));
        }
        self.convert(ruby, key, value)
    }

    /// A setting whose key must be there, and whose nil means "none".
    pub fn nullable<T: TryConvert>(
        &mut self,
        ruby: &Ruby,
        key: &'static str,
    ) -> Result<Option<T>, magnus::Error> {
        let value = self.lookup(ruby, key)?;
        if value.is_nil() {
            return Ok(None);
        }
        self.convert(ruby, key, value).map(Some)
    }

    fn convert<T: TryConvert>(
        &self,
        ruby: &Ruby,
        key: &str,
        value: Value,
    ) -> Result<T, magnus::Error> {
        T::try_convert(value).map_err(|e| {
            magnus::Error::new(
                ruby.exception_type_error(),
                format!("FiberJob::Native: the {} setting :{key}: {e}", self.what),
            )
        })
    }

    /// Every key was read: any other is an error naming it.
    pub fn finish(self, ruby: &Ruby) -> Result<(), magnus::Error> {
        let mut unknown = Vec::new();
        self.hash.foreach(|key: Value, _: Value| {
            let known = Symbol::from_value(key)
                .and_then(|s| s.name().ok())
                .is_some_and(|name| self.read.iter().any(|k| *k == name));
            if !known {
                unknown.push(key.inspect());
            }
            Ok(magnus::r_hash::ForEach::Continue)
        })?;
        if unknown.is_empty() {
            return Ok(());
        }
        Err(magnus::Error::new(
            ruby.exception_arg_error(),
            format!(
                "FiberJob::Native: unknown {} settings {} (known: :{})",
                self.what,
                unknown.join(", "),
                self.read.join(", :")
            ),
        ))
    }
}

/// `Configuration#connection`: { url:, tls: nil | { ca_file:, cert_file:, key_file:,
/// verify_peer: }, sentinels:, sentinel_master:, cluster:, username:, password:, db:,
/// network_timeout:, wait_replicas: }, every key present.
pub fn target_settings(ruby: &Ruby, value: Value) -> Result<TargetSettings, magnus::Error> {
    let mut f = Fields::new(ruby, value, "connection")?;
    let tls = match f.nullable::<Value>(ruby, "tls")? {
        Some(v) => {
            let mut t = Fields::new(ruby, v, "connection tls")?;
            let tls = TlsSettings {
                ca_file: t.nullable(ruby, "ca_file")?,
                cert_file: t.nullable(ruby, "cert_file")?,
                key_file: t.nullable(ruby, "key_file")?,
                verify_peer: t.get(ruby, "verify_peer")?,
            };
            t.finish(ruby)?;
            Some(tls)
        }
        None => None,
    };
    let settings = TargetSettings {
        url: f.get(ruby, "url")?,
        tls,
        sentinels: f.get(ruby, "sentinels")?,
        cluster: f.get(ruby, "cluster")?,
        master: f.nullable(ruby, "sentinel_master")?,
        username: f.nullable(ruby, "username")?,
        password: f.nullable(ruby, "password")?,
        db: f.get(ruby, "db")?,
        timeout: Duration::from_secs_f64(f.get(ruby, "network_timeout")?),
        wait_replicas: f.get(ruby, "wait_replicas")?,
    };
    f.finish(ruby)?;
    Ok(settings)
}
