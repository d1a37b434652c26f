//! Redis Cluster: checking the seed nodes and building the redis crate's Cluster
//! client, which asks a seed for the slot map and connects to each master itself.

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{ConnectionAddr, IntoConnectionInfo};

use super::mask_password;
use super::settings::TargetSettings;
use crate::error::{Error, Result};

/// A Cluster as `Target` needs it.
pub struct Cluster {
    pub client: ClusterClient,
    /// A plain client per seed, for pub/sub.
    pub seeds: Vec<redis::Client>,
    pub description: String,
}

/// Checks the seed URLs (one scheme, one password, database 0) and builds the client.
pub fn build(s: &TargetSettings, certificates: Option<redis::TlsCertificates>) -> Result<Cluster> {
    let mut infos = Vec::new();
    let mut password: Option<String> = None;
    let mut tls: Option<bool> = None;
    for url in &s.cluster {
        let info = url.as_str().into_connection_info().map_err(|e| {
            Error::Config(format!(
                "redis_cluster: {:?} is not a Redis URL ({e}); use e.g. redis://10.0.0.1:7000",
                mask_password(url)
            ))
        })?;
        let is_tls = match info.addr() {
            ConnectionAddr::Tcp(..) => false,
            ConnectionAddr::TcpTls { .. } => true,
            _ => {
                return Err(Error::Config(format!(
                    "redis_cluster: {:?} is not a TCP address; Cluster nodes are reached by host and port",
                    mask_password(url)
                )))
            }
        };
        if tls.is_some_and(|t| t != is_tls) {
            return Err(Error::Config(
                "redis_cluster mixes redis:// and rediss:// nodes; a Cluster uses TLS on every node or on none".into(),
            ));
        }
        tls = Some(is_tls);
        if info.redis_settings().db() != 0 || s.db != 0 {
            return Err(Error::Config(
                "a Redis Cluster has only database 0; remove the /db from the redis_cluster URLs and redis_db".into(),
            ));
        }
        if let Some(pw) = info.redis_settings().password() {
            if password.as_deref().is_some_and(|p| p != pw) {
                return Err(Error::Config(
                    "redis_cluster URLs carry different passwords; every node of a Cluster takes the same one".into(),
                ));
            }
            password = Some(pw.to_string());
        }
        infos.push(info);
    }
    // The seeds open the pub/sub connection: the same password, user and TLS
    // settings as the Cluster's own connections.
    let verify = s.tls.as_ref().is_none_or(|t| t.verify_peer);
    let seeds = infos
        .iter()
        .filter_map(|info| {
            let mut settings = info.redis_settings().clone();
            if let Some(pw) = s.password.as_ref().or(password.as_ref()) {
                settings = settings.set_password(pw);
            }
            if let Some(user) = &s.username {
                settings = settings.set_username(user);
            }
            let mut info = info.clone().set_redis_settings(settings);
            if let ConnectionAddr::TcpTls {
                host,
                port,
                tls_params,
                ..
            } = info.addr().clone()
            {
                info = info.set_addr(ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: !verify,
                    tls_params,
                });
            }
            match &certificates {
                Some(certs) if tls == Some(true) => {
                    redis::Client::build_with_tls(info, certs.clone()).ok()
                }
                _ => redis::Client::open(info).ok(),
            }
        })
        .collect();
    let mut builder = ClusterClientBuilder::new(infos);
    if let Some(pw) = s.password.as_ref().or(password.as_ref()) {
        builder = builder.password(pw);
    }
    if let Some(user) = &s.username {
        builder = builder.username(user);
    }
    if tls == Some(true) {
        builder = builder.tls(super::tls::mode(
            s.tls.as_ref().is_none_or(|t| t.verify_peer),
        ));
        if let Some(certs) = certificates {
            builder = builder.certs(certs);
        }
    }
    let client = builder
        .build()
        .map_err(|e| Error::Config(format!("redis_cluster: {e}")))?;
    Ok(Cluster {
        client,
        seeds,
        description: format!(
            "Redis Cluster via {}",
            s.cluster
                .iter()
                .map(|u| mask_password(u))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}
