//! Where the direct enqueue path (`client/direct.rs`) connects: the address of the
//! server to write to now, its credentials and database, and for `rediss://` the
//! rustls configuration that checks it as the shared connection does (the CA file or
//! the system's roots, a client certificate, `verify_peer: false`).
//!
//! A `Target` hands out its route (`Target::direct_route`): a plain URL's from the
//! start; a TLS URL's and a Sentinel master's once the shared connection has reached
//! that server (so a misconfiguration is reported by the shared path, with its
//! messages, and a Sentinel route is always the master of the current generation).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use redis::{ConnectionAddr, ConnectionInfo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One server to connect to. Each route has its own `id`: a thread's direct connection
/// made for another route (another master, another target) is dropped.
pub struct Route {
    pub id: u64,
    pub host: String,
    pub port: u16,
    /// The TLS configuration and the name to check the certificate against.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// A direct connect failed in a way that will not mend (a TLS handshake, AUTH):
    /// the shared path serves this route's pushes, and reports the problem.
    refused: AtomicBool,
}

impl Route {
    /// The route to the server `info` names: `None` for a Unix socket, or for TLS
    /// without a configuration.
    pub fn new(info: &ConnectionInfo, tls: Option<&Arc<ClientConfig>>) -> Option<Route> {
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, None),
            ConnectionAddr::TcpTls { host, port, .. } => {
                let name = ServerName::try_from(host.clone()).ok()?;
                (host.clone(), *port, Some((tls?.clone(), name)))
            }
            _ => return None,
        };
        let settings = info.redis_settings();
        Some(Route {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            host,
            port,
            tls,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
            refused: AtomicBool::new(false),
        })
    }

    pub fn refuse(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The rustls configuration from the same PEM bytes the shared connection was given
/// (`tls::certificates`, read once): its CA (else the system's roots), its client
/// certificate; with `verify_peer: false` any certificate and no SNI, as the redis
/// crate does. `Err` says why there is none; the shared path reports problems itself.
pub fn client_config(
    verify_peer: bool,
    certificates: Option<&redis::TlsCertificates>,
) -> Result<Arc<ClientConfig>, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| text(&e))?;
    let builder = if verify_peer {
        let mut roots = RootCertStore::empty();
        match certificates.and_then(|c| c.root_cert.as_deref()) {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    roots
                        .add(cert.map_err(|e| text(&e))?)
                        .map_err(|e| text(&e))?;
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    };
    let mut config = match certificates.and_then(|c| c.client_tls.as_ref()) {
        Some(client) => {
            let chain = CertificateDer::pem_slice_iter(&client.client_cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| text(&e))?;
            let key = PrivateKeyDer::from_pem_slice(&client.client_key).map_err(|e| text(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| text(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = verify_peer;
    Ok(Arc::new(config))
}

/// `verify_peer: false`: any certificate is accepted (the handshake's signatures are
/// still checked, so the connection is encrypted with the key of the certificate shown).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
