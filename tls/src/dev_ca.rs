//! A development CA in one command: a CA and a server certificate signed by it, written as
//! PEM files, so a lab system or a test runs with TLS on from the start. Production systems
//! bring certificates from their own CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::TlsError;

/// The files a development CA is made of.
#[derive(Clone, Debug)]
pub struct DevCa {
    /// The CA certificate: what clients are given as `--cacert`.
    pub ca_cert: PathBuf,
    /// The CA's private key (kept to sign more certificates; never given to a server).
    pub ca_key: PathBuf,
    /// The server certificate (`--tls-cert`).
    pub server_cert: PathBuf,
    /// The server's private key (`--tls-key`).
    pub server_key: PathBuf,
}

impl DevCa {
    /// The file names under `dir`.
    pub fn at(dir: &Path) -> DevCa {
        DevCa {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        }
    }
}

/// Names a development server certificate always carries, besides those asked for.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Creates a CA and a server certificate for `names` (DNS names or IP addresses, plus
/// [`DEFAULT_NAMES`]) under `dir`. Existing files are never overwritten: an existing CA is
/// an error, so a second run cannot silently re-key a system.
pub fn create(dir: &Path, names: &[String]) -> Result<DevCa, TlsError> {
    let files = DevCa::at(dir);
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());

    let ca_key = KeyPair::generate().map_err(generate)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stx-patch development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;

    let mut all: Vec<String> = DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for name in names {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let server_key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::new(all).map_err(generate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "stx-patch controller");
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_cert = params.signed_by(&server_key, &issuer).map_err(generate)?;

    // Keys are readable by their owner only; the CA key is written last so a failure part
    // way leaves no usable CA key behind without its certificate.
    durable_fs::write_new(&files.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    durable_fs::write_new(&files.server_cert, server_cert.pem().as_bytes(), 0o644)?;
    durable_fs::write_new(
        &files.server_key,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    durable_fs::write_new(&files.ca_key, ca_key.serialize_pem().as_bytes(), 0o600)?;
    Ok(files)
}

#[cfg(test)]
mod tests;
