//! Redis Sentinel: building the client that asks the sentinels for the master, and the
//! watcher that notices a failover the moment the sentinels announce it
//! (`+switch-master`), so `Target` remakes its connections (see `target.rs`).

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsMode};

use super::mask_password;
use super::settings::TargetSettings;
use crate::error::{Error, Result};

/// The Sentinel watcher: subscribes to `+switch-master` on one sentinel after another
/// (moving on when one fails) and bumps `generation` when `master` moves. When it
/// subscribes again after losing a sentinel it bumps it too: a switch may have happened
/// while it was not listening, and a needless reconnect costs little.
pub async fn watch_switches(
    sentinels: Vec<redis::Client>,
    master: String,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
) {
    use futures_util::StreamExt;
    let mut first = true;
    for sentinel in sentinels.iter().cycle() {
        let subscribed = async {
            let mut pubsub = sentinel.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        let Ok(pubsub) = subscribed else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !first {
            generation.send_modify(|g| *g += 1);
        }
        first = false;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let text: String = msg.get_payload().unwrap_or_default();
            if text.split(' ').next() == Some(master.as_str()) {
                tracing::warn!("Redis Sentinel switched master {master:?}: {text}; reconnecting");
                generation.send_modify(|g| *g += 1);
            }
        }
    }
}

/// A Sentinel service as `Target` needs it.
pub struct Sentinel {
    /// Asks the sentinels for the master (and checks its role).
    pub client: SentinelClient,
    /// The sentinels themselves, for the watcher's subscription.
    pub sentinels: Vec<redis::Client>,
    pub master: String,
    pub description: String,
}

/// Checks the Sentinel settings and builds the client that finds the master.
pub fn build(s: &TargetSettings, certificates: Option<redis::TlsCertificates>) -> Result<Sentinel> {
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
        builder = builder.set_client_to_redis_tls_mode(super::tls::mode(tls.verify_peer));
        if let Some(certs) = certificates {
            builder = builder.set_client_to_redis_certificates(certs);
        }
    }
    let client = builder
        .build()
        .map_err(|e| Error::Config(format!("redis_sentinels: {e}")))?;
    Ok(Sentinel {
        client,
        sentinels: s
            .sentinels
            .iter()
            .filter_map(|u| redis::Client::open(u.as_str()).ok())
            .collect(),
        description: format!(
            "sentinel master {master:?} via {}",
            s.sentinels
                .iter()
                .map(|u| mask_password(u))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        master,
    })
}
