//! Where Redis is and how to reach it: the one place that builds every connection the
//! engine opens — the shared one of clients, each fetcher's blocking one, the acker's,
//! the heartbeat's, the notifier (pub/sub), the reaper's, cron's.
//!
//! A target is a URL (`redis://`, `rediss://` with `TlsSettings`, `unix://`), a Redis
//! Cluster (seed node URLs: the redis crate's Cluster connection finds the rest and
//! follows slots as they move, see `conn.rs`), or a Sentinel service: then each connect asks the sentinels for the current master
//! (`SENTINEL get-master-addr-by-name`, then `ROLE` on it, by the redis crate's
//! `SentinelClient`), so a connection opened after a failover reaches the new master.
//! Callers drop a connection on a connection problem — a demoted master answering
//! READONLY counts as one (`error.rs`) — and the next connect re-resolves.
//!
//! A master that was failed over while alive (a manual failover, a partition) keeps
//! taking writes until the sentinels reconfigure it, seconds later, and those writes are
//! lost when it becomes a replica. So a watcher task subscribes to the sentinels'
//! `+switch-master` and bumps the target's generation the moment the master changes;
//! every connection (`Link`, the shared one) belongs to a generation and is remade when
//! it is behind.

use std::time::Duration;

use redis::aio::PubSub;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo};

use super::conn::Conn;
use super::mask_password;
use super::route::Route;
pub use super::settings::{TargetSettings, TlsSettings};
use crate::error::{Error, Result};

enum Kind {
    Url(redis::Client),
    Cluster {
        client: ClusterClient,
        /// The seed nodes, for pub/sub (a Cluster passes messages to every node).
        seeds: Vec<redis::Client>,
    },
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master: String,
        /// The sentinels themselves, for the watcher's subscription.
        sentinels: Vec<redis::Client>,
        /// The watcher task, started on first use (it needs the runtime).
        watcher: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    },
}

pub struct Target {
    kind: Kind,
    /// The connection concurrent client calls share (pipelined on one socket), made on
    /// first use and dropped on a connection problem (`forget_shared`), with the
    /// generation it was made in.
    shared: tokio::sync::Mutex<Option<(Conn, u64)>>,
    /// Bumped each time the Sentinel master changes; connections of an older one are
    /// remade. Always 0 for a URL.
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    timeout: Duration,
    /// Where it is, password masked, for messages and the banner.
    description: String,
    /// Where the direct enqueue path connects (see `route.rs`): a plain URL's, fixed;
    /// else a TLS URL's or the Sentinel master's once the shared connection reached it,
    /// with the generation it belongs to.
    plain_route: Option<std::sync::Arc<Route>>,
    route: std::sync::Mutex<Option<(std::sync::Arc<Route>, u64)>>,
    /// The direct path's rustls configuration, built from the same PEM bytes as the
    /// shared connection's (`None`: no TLS, or it could not be built).
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    wait_replicas: usize,
}

impl Target {
    /// Checks the settings and reads the certificate files; no I/O to Redis.
    pub fn new(s: &TargetSettings) -> Result<Target> {
        let certificates = match &s.tls {
            Some(tls) => Some(super::tls::certificates(tls)?),
            None => None,
        };
        if s.tls.as_ref().is_some_and(|t| !t.verify_peer) {
            super::tls::warn_once_unverified();
        }
        let tls_config = |tls_in_play: bool| {
            tls_in_play
                .then(|| {
                    let verify = s.tls.as_ref().is_none_or(|t| t.verify_peer);
                    super::route::client_config(verify, certificates.as_ref())
                        .inspect_err(|e| {
                            tracing::debug!("the direct enqueue path is off for TLS: {e}")
                        })
                        .ok()
                })
                .flatten()
        };
        if !s.cluster.is_empty() {
            let cluster = super::cluster::build(s, certificates)?;
            return Ok(Target {
                kind: Kind::Cluster {
                    client: cluster.client,
                    seeds: cluster.seeds,
                },
                shared: tokio::sync::Mutex::new(None),
                generation: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
                timeout: s.timeout,
                description: cluster.description,
                plain_route: None,
                route: std::sync::Mutex::new(None),
                tls_config: None,
                wait_replicas: s.wait_replicas,
            });
        }
        if !s.sentinels.is_empty() {
            let tls_config = tls_config(s.tls.is_some());
            let sentinel = super::sentinel::build(s, certificates)?;
            return Ok(Target {
                kind: Kind::Sentinel {
                    client: tokio::sync::Mutex::new(sentinel.client),
                    master: sentinel.master,
                    sentinels: sentinel.sentinels,
                    watcher: std::sync::OnceLock::new(),
                },
                shared: tokio::sync::Mutex::new(None),
                generation: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
                timeout: s.timeout,
                description: sentinel.description,
                plain_route: None,
                route: std::sync::Mutex::new(None),
                tls_config,
                wait_replicas: s.wait_replicas,
            });
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
        let plain_route = (!tls_url)
            .then(|| Route::new(&info, None))
            .flatten()
            .map(std::sync::Arc::new);
        let tls_config = tls_config(tls_url);
        let client = match certificates {
            Some(certs) if tls_url => redis::Client::build_with_tls(info, certs),
            _ => redis::Client::open(info),
        }
        .map_err(|e| bad_url(&s.url, e))?;
        Ok(Target {
            kind: Kind::Url(client),
            shared: tokio::sync::Mutex::new(None),
            generation: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
            timeout: s.timeout,
            description: mask_password(&s.url),
            plain_route,
            route: std::sync::Mutex::new(None),
            tls_config,
            wait_replicas: s.wait_replicas,
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Where the direct enqueue path may connect now (see `route.rs`): not in a Cluster,
    /// not over a Unix socket, not when enqueues wait for replicas (that path writes one
    /// pipeline of its own), and not to a Sentinel master of an earlier generation.
    pub fn direct_route(&self) -> Option<std::sync::Arc<Route>> {
        if self.wait_replicas != 0 {
            return None;
        }
        if let Some(route) = &self.plain_route {
            return Some(route.clone());
        }
        let slot = self.route.lock().unwrap_or_else(|e| e.into_inner());
        let (route, generation) = slot.as_ref()?;
        (*generation == self.generation() && !route.refused()).then(|| route.clone())
    }

    /// Records the server the shared connection reached as the direct path's route,
    /// unless it is the one recorded already.
    fn remember_route(&self, info: &redis::ConnectionInfo, generation: u64) {
        if self.plain_route.is_some() || matches!(self.kind, Kind::Cluster { .. }) {
            return;
        }
        let mut slot = self.route.lock().unwrap_or_else(|e| e.into_inner());
        let same = slot
            .as_ref()
            .is_some_and(|(r, g)| *g == generation && address(info.addr()) == address_of(r));
        if same {
            return;
        }
        let route = Route::new(info, self.tls_config.as_ref());
        *slot = route.map(|r| (std::sync::Arc::new(r), generation));
    }

    /// Replicas each enqueue waits for.
    pub fn wait_replicas(&self) -> usize {
        self.wait_replicas
    }

    /// The client of the server to talk to now: the URL's, or the master the
    /// sentinels name at this moment.
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.kind {
            Kind::Url(client) => Ok(client.clone()),
            Kind::Cluster { .. } => unreachable!("a Cluster connects by `connect_cluster`"),
            Kind::Sentinel {
                client,
                master,
                sentinels,
                watcher,
            } => {
                watcher.get_or_init(|| {
                    tokio::spawn(super::sentinel::watch_switches(
                        sentinels.clone(),
                        master.clone(),
                        self.generation.clone(),
                    ))
                });
                client.lock().await.async_get_client().await
            }
        }
    }

    /// The current generation (see the module doc).
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Wakes when the Sentinel master changes (the notifier resubscribes).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A multiplexed connection with `network_timeout` for connecting and replies, or
    /// `response_timeout` when a command may wait longer (a blocking fetch).
    pub async fn connect(&self, response_timeout: Option<Duration>) -> redis::RedisResult<Conn> {
        self.connect_to(response_timeout).await.map(|(c, _)| c)
    }

    /// `connect`, and the address of the server reached (none in a Cluster).
    async fn connect_to(
        &self,
        response_timeout: Option<Duration>,
    ) -> redis::RedisResult<(Conn, Option<redis::ConnectionInfo>)> {
        if let Kind::Cluster { client, .. } = &self.kind {
            let config = ClusterConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(response_timeout.unwrap_or(self.timeout));
            let connecting = client.get_async_connection_with_config(config);
            // Connecting asks a seed for the slots, then connects to every master.
            return match tokio::time::timeout(self.timeout * 2, connecting).await {
                Ok(c) => c.map(|c| (Conn::Cluster(c), None)),
                Err(_) => Err(timeout_error("connecting to the Redis Cluster")),
            };
        }
        let client = tokio::time::timeout(self.timeout, self.client())
            .await
            .map_err(|_| timeout_error("asking the sentinels for the master"))??;
        // A TLS handshake gets half the time, so that when it times out there is time
        // left to find out why (a server without TLS never answers one).
        let tls = matches!(
            client.get_connection_info().addr(),
            ConnectionAddr::TcpTls { .. }
        );
        let connect_timeout = if tls { self.timeout / 2 } else { self.timeout };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout.unwrap_or(self.timeout)));
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Err(e) if e.is_timeout() => {
                Err(super::tls::plain_instead_of_tls(client.get_connection_info(), e).await)
            }
            other => other.map(|c| (Conn::Single(c), Some(client.get_connection_info().clone()))),
        }
    }

    /// The connection client calls share, connected on first use.
    pub async fn shared_connection(&self) -> redis::RedisResult<Conn> {
        let mut slot = self.shared.lock().await;
        let now = self.generation();
        if let Some((c, generation)) = slot.as_ref().filter(|(_, g)| *g == now) {
            let _ = generation;
            return Ok(c.clone());
        }
        let (c, reached) = self.connect_to(None).await?;
        if let Some(info) = reached {
            self.remember_route(&info, now);
        }
        *slot = Some((c.clone(), now));
        Ok(c)
    }

    /// Drops the shared connection after a connection problem: the next call
    /// reconnects (and, with Sentinel, asks for the master again).
    pub async fn forget_shared(&self) {
        *self.shared.lock().await = None;
    }

    /// A pub/sub connection (the notifier). In a Cluster, to the first seed
    /// node that answers: every node delivers every message.
    pub async fn pubsub(&self) -> redis::RedisResult<PubSub> {
        if let Kind::Cluster { seeds, .. } = &self.kind {
            let mut last = None;
            for seed in seeds {
                match tokio::time::timeout(self.timeout, seed.get_async_pubsub()).await {
                    Ok(Ok(pubsub)) => return Ok(pubsub),
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => last = Some(timeout_error("opening a pub/sub connection")),
                }
            }
            return Err(last.unwrap_or_else(|| timeout_error("finding a Cluster node")));
        }
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
            Kind::Url(_) | Kind::Cluster { .. } => self.description.clone(),
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

/// A task's own connection: made on first use, remade after a connection problem
/// (`reset`) and when the Sentinel master changed since it was made.
pub struct Link {
    conn: Option<(Conn, u64)>,
    response_timeout: Option<Duration>,
}

impl Link {
    /// `response_timeout`: for commands that may wait longer than `network_timeout`.
    pub fn new(response_timeout: Option<Duration>) -> Link {
        Link {
            conn: None,
            response_timeout,
        }
    }

    pub async fn get(&mut self, target: &Target) -> redis::RedisResult<&mut Conn> {
        let now = target.generation();
        if self.conn.as_ref().is_some_and(|(_, g)| *g != now) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some((target.connect(self.response_timeout).await?, now));
        }
        Ok(&mut self.conn.as_mut().expect("connected above").0)
    }

    /// Forgets the connection after a connection problem.
    pub fn reset(&mut self) {
        self.conn = None;
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

fn address_of(route: &Route) -> String {
    match route.tls {
        Some(_) => format!("{}:{}, TLS", route.host, route.port),
        None => format!("{}:{}", route.host, route.port),
    }
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

impl Drop for Target {
    fn drop(&mut self) {
        if let Kind::Sentinel { watcher, .. } = &self.kind {
            if let Some(h) = watcher.get() {
                h.abort();
            }
        }
    }
}
