//! Reading PEM files, bounded: certificates and keys are small, so a file that is not is
//! refused before it is read whole.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Larger than any certificate bundle or key file stx-patch reads.
const PEM_LIMIT: u64 = 4 << 20;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    durable_fs::read_bounded(path, PEM_LIMIT).map_err(|e| match e.source.kind() {
        std::io::ErrorKind::InvalidData => TlsError::TooLarge {
            path: path.to_owned(),
            limit: PEM_LIMIT,
        },
        _ => TlsError::Read {
            path: path.to_owned(),
            source: e.source,
        },
    })
}

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_in(&read(path)?, path)
}

/// Every certificate in PEM text that came from `path` (a name for the errors).
pub(crate) fn certificates_in(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
            detail: format!(": {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
            detail: String::new(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        detail: format!(": {e}"),
    })
}
