use super::*;
use crate::{ServerTls, Trust};
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One TLS exchange through real sockets: the server echoes a line, the client trusting
/// `trust` sends one. Returns what came back, or the handshake's error.
async fn exchange(server: &ServerTls, trust: &Trust, name: &str) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = server.acceptor();
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let mut buf = [0u8; 5];
            if tls.read_exact(&mut buf).await.is_ok() {
                let _ = tls.write_all(&buf).await;
                let _ = tls.shutdown().await;
            }
        }
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(trust.client_config().unwrap()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let result = async {
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut back = String::new();
        tls.read_to_string(&mut back)
            .await
            .map_err(|e| e.to_string())?;
        Ok(back)
    }
    .await;
    serving.abort();
    result
}

#[tokio::test]
async fn a_client_trusting_the_dev_ca_talks_to_its_server_and_one_trusting_another_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = create(&dir.path().join("a"), &["controller-0".to_owned()]).unwrap();
    let other = create(&dir.path().join("b"), &[]).unwrap();
    let server = ServerTls::load(&ca.server_cert, &ca.server_key).unwrap();

    let trusted = Trust::CaBundle(ca.ca_cert.clone());
    for name in ["localhost", "127.0.0.1", "controller-0"] {
        assert_eq!(exchange(&server, &trusted, name).await.unwrap(), "hello");
    }
    let refused = exchange(&server, &trusted, "evil.example")
        .await
        .unwrap_err();
    assert!(refused.contains("not valid for name"), "{refused}");
    let wrong_ca = exchange(
        &server,
        &Trust::CaBundle(other.ca_cert.clone()),
        "localhost",
    )
    .await
    .unwrap_err();
    assert!(wrong_ca.contains("invalid peer certificate"), "{wrong_ca}");
    // The system's trust store does not hold a development CA.
    let untrusted = exchange(&server, &Trust::System, "localhost")
        .await
        .unwrap_err();
    assert!(
        untrusted.contains("invalid peer certificate"),
        "{untrusted}"
    );
    // --insecure still encrypts: the exchange works whatever the certificate.
    assert_eq!(
        exchange(&server, &Trust::Insecure, "evil.example")
            .await
            .unwrap(),
        "hello"
    );
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_and_keeps_it_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = create(&dir.path().join("a"), &[]).unwrap();
    let second = create(&dir.path().join("b"), &[]).unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    std::fs::copy(&first.server_cert, &cert).unwrap();
    std::fs::copy(&first.server_key, &key).unwrap();
    let server = ServerTls::load(&cert, &key).unwrap();
    let trusts_second = Trust::CaBundle(second.ca_cert.clone());
    assert!(
        exchange(&server, &trusts_second, "localhost")
            .await
            .is_err()
    );

    std::fs::copy(&second.server_cert, &cert).unwrap();
    std::fs::copy(&second.server_key, &key).unwrap();
    server.reload().unwrap();
    assert_eq!(
        exchange(&server, &trusts_second, "localhost")
            .await
            .unwrap(),
        "hello"
    );

    std::fs::write(&cert, "not a certificate").unwrap();
    let err = server.reload().unwrap_err().to_string();
    assert!(err.contains("holds no certificate"), "{err}");
    assert_eq!(
        exchange(&server, &trusts_second, "localhost")
            .await
            .unwrap(),
        "hello"
    );
}

#[test]
fn openssl_accepts_the_generated_chain_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = create(
        dir.path(),
        &["controller-1".to_owned(), "10.0.0.3".to_owned()],
    )
    .unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&ca.ca_cert)
        .arg(&ca.server_cert)
        .output()
        .expect("openssl is installed by scripts/test.sh");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    for name in ["controller-1", "localhost"] {
        let host = Command::new("openssl")
            .args(["verify", "-verify_hostname", name, "-CAfile"])
            .arg(&ca.ca_cert)
            .arg(&ca.server_cert)
            .status()
            .unwrap();
        assert!(host.success(), "{name}");
    }
    let ip = Command::new("openssl")
        .args(["verify", "-verify_ip", "10.0.0.3", "-CAfile"])
        .arg(&ca.ca_cert)
        .arg(&ca.server_cert)
        .status()
        .unwrap();
    assert!(ip.success());
    // Keys are private to their owner.
    use std::os::unix::fs::PermissionsExt;
    for key in [&ca.ca_key, &ca.server_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
}

#[test]
fn a_second_run_never_replaces_an_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = create(dir.path(), &[]).unwrap();
    let before = std::fs::read(&first.ca_cert).unwrap();
    let err = create(dir.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("ca.pem"), "{err}");
    assert_eq!(std::fs::read(&first.ca_cert).unwrap(), before);
}

#[test]
fn bad_pem_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = create(dir.path(), &[]).unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ServerTls::load(&junk, &ca.server_key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("junk.pem"), "{err}");
    let err = ServerTls::load(&ca.server_cert, &ca.server_cert)
        .unwrap_err()
        .to_string();
    assert!(err.contains("private key"), "{err}");
    let err = Trust::CaBundle(dir.path().join("missing.pem"))
        .client_config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    // The key does not match the certificate.
    let other = create(&dir.path().join("other"), &[]).unwrap();
    let err = ServerTls::load(&ca.server_cert, &other.server_key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not make a usable certificate"), "{err}");
}
