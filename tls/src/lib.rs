//! TLS for stx-patch's channels, in one place: a server certificate that can be reloaded
//! without a restart ([`ServerTls`]), client configurations that verify the controller
//! against a CA bundle ([`Trust`]), and a one-command development CA ([`dev_ca`]).
//!
//! Every channel uses rustls with the aws-lc-rs provider (the one reqwest ships with), so a
//! process carries one cryptographic library.

#![forbid(unsafe_code)]

mod client;
pub mod dev_ca;
mod pem;
mod server;

pub use client::Trust;
pub use server::ServerTls;

use std::path::PathBuf;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file is larger than any certificate chain or key would be.
    #[error("{path} is larger than {limit} bytes; is it a PEM certificate or key?")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A PEM file holds nothing of the kind asked for (or cannot be parsed).
    #[error("{path} holds no {what} in PEM form{detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for: "certificate", "private key".
        what: &'static str,
        /// The parser's words, if it had any (with a leading ": ").
        detail: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("{context}: {reason}")]
    Rustls {
        /// What was being set up.
        context: String,
        /// rustls's reason.
        reason: String,
    },
    /// The development CA could not be generated.
    #[error("cannot generate the development CA: {0}")]
    Generate(String),
    /// A generated file could not be written.
    #[error(transparent)]
    Write(#[from] durable_fs::Error),
}

/// The cryptographic provider every configuration is built with.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn rustls_error(context: impl Into<String>) -> impl FnOnce(rustls::Error) -> TlsError {
    let context = context.into();
    move |e| TlsError::Rustls {
        context,
        reason: e.to_string(),
    }
}
