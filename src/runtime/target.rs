//! Where Redis is and how to reach it: the one place that builds every connection the
//! engine opens — the shared one of clients, each fetcher's blocking one, the acker's,
//! the heartbeat's, the pub/sub listener, the reaper's, cron's.
//!
//! A target is a URL (`redis://`, `rediss://` with `TlsSettings`, `unix://`) or a
//! Sentinel service: then each connect asks the sentinels for the current master
//! (`SENTINEL get-master-addr-by-name`, then `ROLE` on it, by the redis crate's
//! `SentinelClient`), so a connection opened after a failover reaches the new master.
//! Callers drop a connection on a connection problem — a demoted master answering
//! READONLY counts as one (`error.rs`) — and the next connect re-resolves.

use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, TlsMode};

use super::mask_password;
use crate::error::{Error, Result};

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
    /// Ignored with sentinels.
    pub url: String,
    pub tls: Option<TlsSettings>,
    /// Sentinel URLs (`redis://[:password@]host:26379`); empty without Sentinel.
    pub sentinels: Vec<String>,
    pub master: Option<String>,
    /// The master's credentials and database (Sentinel only; a URL carries its own).
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// `network_timeout`: connect and reply deadlines.
    pub timeout: Duration,
}

enum Kind {
    Url(redis::Client),
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master: String,
    },
}

pub struct Target {
    kind: Kind,
    /// The connection concurrent client calls share (pipelined on one socket), made on
    /// first use and dropped on a connection problem (`forget_shared`).
    shared: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    /// Where it is, password masked, for messages and the banner.
    description: String,
    /// A plain `redis://` URL over TCP, which the direct enqueue path may use.
    plain_url: Option<String>,
}

impl Target {
    /// Checks the settings and reads the certificate files; no I/O to Redis.
    pub fn new(s: &TargetSettings) -> Result<Target> {
        let certificates = match &s.tls {
            Some(tls) => Some(certificates(tls)?),
            None => None,
        };
        if s.tls.as_ref().is_some_and(|t| !t.verify_peer) {
            warn_once_unverified();
        }
        if !s.sentinels.is_empty() {
            return sentinel(s, certificates);
        }
        let mut url = s.url.clone();
        if url.starts_with("rediss://") && s.tls.as_ref().is_some_and(|t| !t.verify_peer) {
            url.push_str("#insecure");
        }
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| bad_url(&s.url, e))?;
        let tls_url = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let client = match certificates {
            Some(certs) if tls_url => redis::Client::build_with_tls(info, certs),
            _ => redis::Client::open(info),
        }
        .map_err(|e| bad_url(&s.url, e))?;
        Ok(Target {
            kind: Kind::Url(client),
            shared: tokio::sync::Mutex::new(None),
            timeout: s.timeout,
            description: mask_password(&s.url),
            plain_url: s.url.starts_with("redis://").then(|| s.url.clone()),
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The URL of a plain-TCP target, which the direct enqueue path may use.
    pub fn plain_url(&self) -> Option<&str> {
        self.plain_url.as_deref()
    }

    /// The client of the server to talk to now: the URL's, or the master the
    /// sentinels name at this moment.
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.kind {
            Kind::Url(client) => Ok(client.clone()),
            Kind::Sentinel { client, .. } => client.lock().await.async_get_client().await,
        }
    }

    /// A multiplexed connection with `network_timeout` for connecting and replies, or
    /// `response_timeout` when a command may wait longer (a blocking fetch).
    pub async fn connect(
        &self,
        response_timeout: Option<Duration>,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let client = tokio::time::timeout(self.timeout, self.client())
            .await
            .map_err(|_| timeout_error("asking the sentinels for the master"))??;
        // A TLS handshake gets half the time, so that when it times out there is time
        // left to find out why (a server without TLS never answers one).
        let tls = matches!(client.get_connection_info().addr(), ConnectionAddr::TcpTls { .. });
        let connect_timeout = if tls { self.timeout / 2 } else { self.timeout };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout.unwrap_or(self.timeout)));
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Err(e) if e.is_timeout() => {
                Err(plain_instead_of_tls(client.get_connection_info(), e).await)
            }
            other => other,
        }
    }

    /// The connection client calls share, connected on first use.
    pub async fn shared_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.shared.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect(None).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops the shared connection after a connection problem: the next call
    /// reconnects (and, with Sentinel, asks for the master again).
    pub async fn forget_shared(&self) {
        *self.shared.lock().await = None;
    }

    /// A pub/sub connection (the schedule listener).
    pub async fn pubsub(&self) -> redis::RedisResult<PubSub> {
        let client = tokio::time::timeout(self.timeout, self.client())
            .await
            .map_err(|_| timeout_error("asking the sentinels for the master"))??;
        tokio::time::timeout(self.timeout, client.get_async_pubsub())
            .await
            .map_err(|_| timeout_error("opening a pub/sub connection"))?
    }

    /// Where the engine is connected now, for the banner and the Web UI: the URL, or
    /// the Sentinel service and its current master's address.
    pub async fn where_now(&self) -> String {
        match &self.kind {
            Kind::Url(_) => self.description.clone(),
            Kind::Sentinel { master, .. } => match self.client().await {
                Ok(c) => format!(
                    "{} (master {master:?} now at {})",
                    self.description,
                    address(c.get_connection_info().addr())
                ),
                Err(e) => format!(
                    "{} (master {master:?} not found now: {e})",
                    self.description
                ),
            },
        }
    }
}

/// A TLS handshake that timed out may be talking to a server without TLS, which waits
/// for a command and never answers the handshake. Ask it in plain text: if it answers
/// as Redis does, say so; else keep the timeout.
async fn plain_instead_of_tls(
    info: &redis::ConnectionInfo,
    e: redis::RedisError,
) -> redis::RedisError {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ConnectionAddr::TcpTls { host, port, .. } = info.addr() else {
        return e;
    };
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), *port))
            .await
            .ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
    };
    match tokio::time::timeout(Duration::from_millis(500), probe).await {
        Ok(Some(true)) => redis::RedisError::from(std::io::Error::other(format!(
            "{host}:{port} speaks plain Redis, not TLS"
        ))),
        _ => e,
    }
}

fn address(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}, TLS"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

fn sentinel(s: &TargetSettings, certificates: Option<redis::TlsCertificates>) -> Result<Target> {
    let master = s
        .master
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            Error::Config(
                "redis_sentinels is set but redis_sentinel_master is not: name the master the sentinels watch (e.g. \"mymaster\")"
                    .into(),
            )
        })?;
    let mut addrs = Vec::new();
    let mut sentinel_password: Option<String> = None;
    let mut sentinel_tls = false;
    for url in &s.sentinels {
        let info = url.as_str().into_connection_info().map_err(|e| {
            Error::Config(format!(
                "redis_sentinels: {:?} is not a Redis URL ({e}); use e.g. redis://10.0.0.1:26379",
                mask_password(url)
            ))
        })?;
        if let Some(pw) = info.redis_settings().password() {
            if sentinel_password.as_deref().is_some_and(|p| p != pw) {
                return Err(Error::Config(
                    "redis_sentinels carry different passwords; FiberJob uses one password for every sentinel".into(),
                ));
            }
            sentinel_password = Some(pw.to_string());
        }
        sentinel_tls |= matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        addrs.push(info.addr().clone());
    }
    let mut builder = SentinelClientBuilder::new(addrs, &master, SentinelServerType::Master)
        .map_err(|e| Error::Config(format!("redis_sentinels: {e}")))?;
    if let Some(pw) = &sentinel_password {
        builder = builder.set_client_to_sentinel_password(pw);
    }
    if sentinel_tls {
        builder = builder.set_client_to_sentinel_tls_mode(TlsMode::Secure);
    }
    if let Some(user) = &s.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(pw) = &s.password {
        builder = builder.set_client_to_redis_password(pw);
    }
    if s.db != 0 {
        builder = builder.set_client_to_redis_db(s.db);
    }
    if let Some(tls) = &s.tls {
        let mode = if tls.verify_peer {
            TlsMode::Secure
        } else {
            TlsMode::Insecure
        };
        builder = builder.set_client_to_redis_tls_mode(mode);
        if let Some(certs) = certificates {
            builder = builder.set_client_to_redis_certificates(certs);
        }
    }
    let client = builder
        .build()
        .map_err(|e| Error::Config(format!("redis_sentinels: {e}")))?;
    Ok(Target {
        kind: Kind::Sentinel {
            client: tokio::sync::Mutex::new(client),
            master: master.clone(),
        },
        shared: tokio::sync::Mutex::new(None),
        timeout: s.timeout,
        description: format!(
            "sentinel master {master:?} via {}",
            s.sentinels
                .iter()
                .map(|u| mask_password(u))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        plain_url: None,
    })
}

/// Reads the PEM files the TLS settings name; a missing or unreadable one is a
/// configuration error now, not a handshake failure later.
fn certificates(tls: &TlsSettings) -> Result<redis::TlsCertificates> {
    let read = |option: &str, path: &str| {
        std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "redis_tls {option}: cannot read {path:?} ({e}); give the path of a PEM file"
            ))
        })
    };
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read("ca_file", p))
        .transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("cert_file", cert)?,
            client_key: read("key_file", key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "redis_tls: cert_file and key_file go together (mutual TLS needs both)".into(),
            ))
        }
    };
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

fn warn_once_unverified() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "redis_tls verify_peer: false — the Redis server's certificate is not checked, so the connection is encrypted but not authenticated"
        )
    });
}

fn bad_url(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "redis_url {:?} is not a Redis URL ({e}); use e.g. redis://localhost:6379/0",
        mask_password(url)
    ))
}

fn timeout_error(doing: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out {doing}"),
    ))
}
