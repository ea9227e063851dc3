//! The client side: whom a client trusts when it talks to a controller over TLS.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{TlsError, pem, provider, rustls_error};

/// Whom a client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Servers whose certificate chains to a CA in this PEM bundle (`--cacert`, `OS_CACERT`).
    CaBundle(PathBuf),
    /// Any server (`--insecure`): the channel is encrypted but anyone in the middle can read
    /// it. For a first look at a lab system only.
    Insecure,
    /// Servers whose certificate chains to a CA in this PEM text (kept in a database rather
    /// than a file); `name` says where it came from, for the errors.
    CaPem {
        /// Where the text came from (e.g. `subcloud1's CA`).
        name: String,
        /// The PEM text.
        pem: Vec<u8>,
    },
    /// Servers the platform's trust store vouches for (what a client given no CA uses). The
    /// store is loaded once per process (a change to it is seen after a restart).
    System,
}

impl Trust {
    /// From the usual client options: `--insecure` wins (it is explicit); no CA bundle and no
    /// `--insecure` means the system's trust store (`None`).
    pub fn from_options(cacert: Option<PathBuf>, insecure: bool) -> Option<Trust> {
        if insecure {
            Some(Trust::Insecure)
        } else {
            cacert.map(Trust::CaBundle)
        }
    }

    /// A rustls client configuration that trusts what this says.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error("TLS protocol versions"))?;
        let config = match self {
            Trust::CaBundle(path) => {
                let mut roots = RootCertStore::empty();
                for cert in pem::certificates(path)? {
                    roots
                        .add(cert)
                        .map_err(rustls_error(format!("CA bundle {}", path.display())))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::CaPem { name, pem } => {
                let mut roots = RootCertStore::empty();
                for cert in pem::certificates_in(pem, Path::new(name))? {
                    roots.add(cert).map_err(rustls_error(name.clone()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::System => builder
                .dangerous()
                .with_custom_certificate_verifier(system_verifier()?)
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

/// The platform's verifier, made once per process: making it loads the system's trust
/// store (about 3.7 ms of CPU), and a process that makes a client per peer — the system
/// controller, one per subcloud and step — would otherwise load it per client.
fn system_verifier() -> Result<Arc<rustls_platform_verifier::Verifier>, TlsError> {
    static SYSTEM: OnceLock<Result<Arc<rustls_platform_verifier::Verifier>, String>> =
        OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            rustls_platform_verifier::Verifier::new(provider())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| TlsError::Rustls {
            context: "the system's trust store".into(),
            reason,
        })
}

/// Accepts any certificate, but still checks that the server holds its key (the handshake
/// signatures), so `--insecure` keeps the channel encrypted end to end.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
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
