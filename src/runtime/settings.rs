//! What `FiberJob::Configuration` says about reaching Redis, as plain values
//! (`ruby/connection.rs` converts them once); `target.rs` builds connections from them.

use std::time::Duration;

/// TLS for `rediss://` (and for a Sentinel's master): all optional.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// PEM file of the CA that signed the server's certificate (default: the system's).
    pub ca_file: Option<String>,
    /// PEM files of a client certificate and its key, for mutual TLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// False accepts any certificate (providers with self-signed ones); logged once.
    pub verify_peer: bool,
}

/// What `FiberJob::Configuration` says about the connection.
#[derive(Clone, Debug, Default)]
pub struct TargetSettings {
    /// Ignored with sentinels or a Cluster.
    pub url: String,
    /// Seed node URLs of a Redis Cluster; empty without one.
    pub cluster: Vec<String>,
    pub tls: Option<TlsSettings>,
    /// Sentinel URLs (`redis://[:password@]host:26379`); empty without Sentinel.
    pub sentinels: Vec<String>,
    pub master: Option<String>,
    /// The master's (or the Cluster nodes') credentials and database (Sentinel and
    /// Cluster; a URL carries its own).
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// `network_timeout`: connect and reply deadlines.
    pub timeout: Duration,
    /// Replicas each enqueue waits for (`WAIT`); 0: none.
    pub wait_replicas: usize,
}
