//! The connection settings Ruby gives every native object (`Configuration#connection`),
//! converted once into `TargetSettings`: { url:, tls: nil | { ca_file:, cert_file:,
//! key_file:, verify_peer: }, sentinels: [...], sentinel_master:, cluster: [...], username:,
//! password:, db:, network_timeout: }.

use std::time::Duration;

use magnus::{prelude::*, RHash, Ruby, TryConvert, Value};

use crate::runtime::target::{TargetSettings, TlsSettings};

/// The value under `key` (nil and missing alike give `None`).
pub fn optional<T: TryConvert>(
    ruby: &Ruby,
    hash: RHash,
    key: &str,
) -> Result<Option<T>, magnus::Error> {
    match hash.get(ruby.to_symbol(key)) {
        Some(v) if !v.is_nil() => T::try_convert(v).map(Some),
        _ => Ok(None),
    }
}

/// The value under `key`, or an ArgumentError naming it.
pub fn required<T: TryConvert>(ruby: &Ruby, hash: RHash, key: &str) -> Result<T, magnus::Error> {
    optional(ruby, hash, key)?.ok_or_else(|| {
        magnus::Error::new(
            ruby.exception_arg_error(),
            format!("FiberJob::Native: the settings lack :{key}"),
        )
    })
}

pub fn target_settings(ruby: &Ruby, hash: RHash) -> Result<TargetSettings, magnus::Error> {
    let tls = match optional::<Value>(ruby, hash, "tls")? {
        Some(v) => {
            let t = RHash::try_convert(v)?;
            Some(TlsSettings {
                ca_file: optional(ruby, t, "ca_file")?,
                cert_file: optional(ruby, t, "cert_file")?,
                key_file: optional(ruby, t, "key_file")?,
                verify_peer: optional(ruby, t, "verify_peer")?.unwrap_or(true),
            })
        }
        None => None,
    };
    Ok(TargetSettings {
        url: optional(ruby, hash, "url")?.unwrap_or_default(),
        tls,
        sentinels: optional(ruby, hash, "sentinels")?.unwrap_or_default(),
        cluster: optional(ruby, hash, "cluster")?.unwrap_or_default(),
        master: optional(ruby, hash, "sentinel_master")?,
        username: optional(ruby, hash, "username")?,
        password: optional(ruby, hash, "password")?,
        db: optional(ruby, hash, "db")?.unwrap_or(0),
        timeout: Duration::from_secs_f64(required(ruby, hash, "network_timeout")?),
        wait_replicas: optional(ruby, hash, "wait_replicas")?.unwrap_or(0),
    })
}
