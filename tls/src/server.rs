//! The server side: a certificate and key loaded from PEM files, swapped in place when the
//! files are replaced (on `reload`), so connections made afterwards use the new pair while
//! open ones finish on the old.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;

use crate::{TlsError, pem, provider, rustls_error};

/// A listener's certificate, reloadable without a restart.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the certificate chain (`cert`, leaf first) and its private key (`key`).
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let config = build(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An acceptor for one new connection, with the current certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }
}

fn build(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = pem::certificates(cert)?;
    let private = pem::private_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("TLS protocol versions"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(rustls_error(format!(
            "{} and {} do not make a usable certificate",
            cert.display(),
            key.display()
        )))?;
    // HTTP/1.1 only: every server here speaks it, and ALPN keeps browsers from trying h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
