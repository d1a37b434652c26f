//! TLS for `rediss://` (the redis crate's rustls): the settings, reading the PEM files
//! they name, and telling a server without TLS from one that does not answer.

use std::time::Duration;

use redis::ConnectionAddr;

use super::settings::TlsSettings;
use crate::error::{Error, Result};

/// A TLS handshake that timed out may be talking to a server without TLS, which waits
/// for a command and never answers the handshake. Ask it in plain text: if it answers
/// as Redis does, say so; else keep the timeout.
pub async fn plain_instead_of_tls(
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

/// Reads the PEM files the TLS settings name; a missing or unreadable one is a
/// configuration error now, not a handshake failure later.
pub fn certificates(tls: &TlsSettings) -> Result<redis::TlsCertificates> {
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

/// The redis crate's TLS mode for `verify_peer`.
pub fn mode(verify_peer: bool) -> redis::TlsMode {
    if verify_peer {
        redis::TlsMode::Secure
    } else {
        redis::TlsMode::Insecure
    }
}

pub fn warn_once_unverified() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "redis_tls verify_peer: false — the Redis server's certificate is not checked, so the connection is encrypted but not authenticated"
        )
    });
}
