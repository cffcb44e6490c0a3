//! Connections to the directory: the TLS settings (the pinned CA), connect
//! with StartTLS or ldaps, the small pool of service-account connections,
//! and the one runtime every directory operation runs on.
//!
//! Directory I/O runs on the connector's own small runtime so that a blocking caller
//! (the database writer re-reading an approver's groups) can wait for it
//! without owning a runtime, and so that its threads are fixed: a slow or
//! dead directory never adds threads. A connection closes its socket and
//! stops its driver task when dropped, including after a timeout, so no
//! task outlives the operation that needed it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, StdStream};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::task::JoinHandle;

use super::LdapError;
use crate::config::{LdapConfig, LdapTransport};

/// A connector's own runtime: one worker thread and at most one blocking
/// thread, shut down (without waiting) when the connector goes.
pub(super) struct DirectoryRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl DirectoryRuntime {
    pub(super) fn new(name: &str) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name(format!("tpa-ldap-{name}"))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the directory runtime: {e}"))?;
        Ok(Self { rt: Some(rt) })
    }

    fn handle(&self) -> Result<&tokio::runtime::Runtime, LdapError> {
        self.rt
            .as_ref()
            .ok_or_else(|| LdapError::Unavailable("the directory runtime stopped".to_owned()))
    }

    /// Tasks alive on this runtime (tests check that none leak).
    pub(super) fn alive_tasks(&self) -> usize {
        self.rt
            .as_ref()
            .map_or(0, |rt| rt.metrics().num_alive_tasks())
    }

    /// Runs `fut` here and awaits it from any runtime.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, LdapError>> + Send + 'static,
    ) -> Result<T, LdapError> {
        self.handle()?
            .spawn(fut)
            .await
            .map_err(|e| LdapError::Unavailable(format!("directory task failed: {e}")))?
    }

    /// Runs `fut` here and blocks this thread until it ends. For
    /// synchronous callers (the database writer); the future runs on this
    /// runtime, so the caller's own runtime (if any) is not needed.
    pub(super) fn run_blocking<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, LdapError>> + Send + 'static,
    ) -> Result<T, LdapError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle()?.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| LdapError::Unavailable("directory task stopped".to_owned()))?
    }
}

impl Drop for DirectoryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Never blocks, so the connector may be dropped anywhere.
            rt.shutdown_background();
        }
    }
}

/// The TLS client settings of a connector: only the CAs of `ca_file`, ring.
pub(super) fn tls_config(config: &LdapConfig) -> Result<Option<Arc<ClientConfig>>, String> {
    let Some(path) = &config.ca_file else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {}: no certificate in it", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(tls)))
}

/// One open connection. Dropping it shuts the socket down (so nothing can
/// keep reading it) and stops the driver task.
pub(super) struct Conn {
    pub(super) ldap: Ldap,
    driver: JoinHandle<()>,
    socket: std::net::TcpStream,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        self.driver.abort();
    }
}

/// `host:port` of the connector's URL.
fn address(config: &LdapConfig) -> Result<String, LdapError> {
    let url = reqwest::Url::parse(&config.url)
        .map_err(|e| LdapError::Unavailable(format!("bad url: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| LdapError::Unavailable("url without a host".to_owned()))?;
    let default = if url.scheme() == "ldaps" { 636 } else { 389 };
    Ok(format!("{host}:{}", url.port().unwrap_or(default)))
}

/// Opens a connection (TCP, then TLS or StartTLS as configured) within the
/// connector's timeout. A server that refuses StartTLS is refused: the
/// connection never continues in plain text.
pub(super) async fn connect(
    config: &LdapConfig,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Conn, LdapError> {
    let timeout = config.timeout;
    let address = address(config)?;
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address))
        .await
        .map_err(|_| timed_out(config, "connecting"))?
        .map_err(|e| LdapError::Unavailable(format!("cannot connect to {address}: {e}")))?;
    let std_stream = tcp
        .into_std()
        .map_err(|e| LdapError::Unavailable(e.to_string()))?;
    let socket = std_stream
        .try_clone()
        .map_err(|e| LdapError::Unavailable(e.to_string()))?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_std_stream(StdStream::Tcp(std_stream));
    match config.transport {
        LdapTransport::Ldaps => {}
        LdapTransport::StartTls => settings = settings.set_starttls(true),
        LdapTransport::InsecurePlaintext => {}
    }
    if let Some(tls) = tls {
        settings = settings.set_config(tls.clone());
    }
    let opened =
        tokio::time::timeout(timeout, LdapConnAsync::with_settings(settings, &config.url)).await;
    let (conn, ldap) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(ldap3::LdapError::Timeout { .. })) | Err(_) => {
            let _ = socket.shutdown(std::net::Shutdown::Both);
            return Err(timed_out(config, "opening the LDAP session"));
        }
        Ok(Err(e)) => {
            let _ = socket.shutdown(std::net::Shutdown::Both);
            return Err(connect_error(config, &e));
        }
    };
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "directory connection ended");
        }
    });
    Ok(Conn {
        ldap,
        driver,
        socket,
    })
}

fn timed_out(config: &LdapConfig, step: &str) -> LdapError {
    LdapError::Unavailable(format!(
        "the directory did not answer within {} s while {step}",
        config.timeout.as_secs_f32()
    ))
}

fn connect_error(config: &LdapConfig, e: &ldap3::LdapError) -> LdapError {
    let text = e.to_string();
    let what = match config.transport {
        LdapTransport::StartTls if text.contains("rc=") => {
            "the server refused StartTLS (a plain-text server or one that strips TLS); \
             TPA never continues without TLS"
        }
        LdapTransport::StartTls | LdapTransport::Ldaps
            if text.to_ascii_lowercase().contains("certificate") =>
        {
            "the directory's certificate is not signed by the CA in ca_file (or names another host)"
        }
        _ => "cannot open the LDAP session",
    };
    LdapError::Unavailable(format!("{what}: {text}"))
}

/// Service-account connections kept open for reuse (at most `size`).
pub(super) struct Pool {
    idle: Mutex<Vec<Conn>>,
    size: usize,
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            size,
        }
    }

    /// An idle connection, if one is kept.
    pub(super) fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut conn) = idle.pop() {
            if !conn.ldap.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next operation (only after it succeeded).
    pub(super) fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.size {
            idle.push(conn);
        }
    }

    /// Closes every kept connection (the directory went away).
    pub(super) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// `op` under the connector's timeout, as an [`LdapError`].
pub(super) async fn within<T>(
    timeout: Duration,
    step: &str,
    op: impl Future<Output = ldap3::result::Result<T>>,
) -> Result<T, LdapError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LdapError::Unavailable(format!("{step}: {e}"))),
        Err(_) => Err(LdapError::Unavailable(format!(
            "the directory did not answer within {} s while {step}",
            timeout.as_secs_f32()
        ))),
    }
}
