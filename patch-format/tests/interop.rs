//! Patches assembled independently of our writer — plain `tar` + `flate2` + `rsa` calls that
//! follow the reference, as the original's Python does — must be read; signatures by unknown
//! or revoked keys must not.

mod common;

use std::io::Write;

use common::key;
use md5::Md5;
use patch_format::testing::TestRpm;
use patch_format::{FormatError, PatchReader};
use patch_sign::{Keyring, PublicKey};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

/// An RSA key made directly with the `rsa` crate, not through patch-sign.
fn independent_key() -> rsa::PrivateKey {
    rsa::PrivateKey::new(&mut rsa::rand_core::UnwrapErr(SysRng), 2048).unwrap()
}

/// OS randomness for the rsa crate, via /dev/urandom (keeps the test free of rand versions).
struct SysRng;
impl rsa::rand_core::TryRng for SysRng {
    type Error = std::io::Error;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(dst)
    }
}
impl rsa::rand_core::TryCryptoRng for SysRng {}

#[derive(Clone, Copy)]
enum Scheme {
    Pss,
    Pkcs1v15,
}

#[derive(Clone, Copy)]
enum Style {
    /// Python 2 tarfile: GNU headers.
    Gnu,
    /// Python 3.8+ tarfile: PAX/ustar headers.
    Ustar,
}

fn tar_of(members: &[(&str, &[u8])], style: Style) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = match style {
            Style::Gnu => tar::Header::new_gnu(),
            Style::Ustar => tar::Header::new_ustar(),
        };
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_500_000_000);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

struct Assembled {
    metadata_tar: Vec<u8>,
    software_tar: Vec<u8>,
}

fn inner_tars(xml: &str, rpms: &[(String, Vec<u8>)], style: Style) -> Assembled {
    let metadata_tar = tar_of(&[("metadata.xml", xml.as_bytes())], style);
    let members: Vec<(&str, &[u8])> = rpms
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    Assembled {
        metadata_tar,
        software_tar: tar_of(&members, style),
    }
}

/// The outer archive, signed as the reference says, members in `order`.
fn assemble(
    parts: &Assembled,
    signer: &rsa::PrivateKey,
    scheme: Scheme,
    style: Style,
    order: &[&str],
) -> Vec<u8> {
    let md5 = |d: &[u8]| u128::from_be_bytes(Md5::digest(d).into());
    let sig = u128::MAX ^ md5(&parts.metadata_tar) ^ md5(&parts.software_tar);
    let signature = format!("{sig:x}");
    let mut sha = Sha256::new();
    sha.update(&parts.metadata_tar);
    sha.update(&parts.software_tar);
    let digest = sha.finalize();
    let v2 = match scheme {
        Scheme::Pss => signer
            .sign_with_rng(
                &mut rsa::rand_core::UnwrapErr(SysRng),
                rsa::Pss::<Sha256>::new_with_salt(32),
                &digest,
            )
            .unwrap(),
        Scheme::Pkcs1v15 => signer
            .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
            .unwrap(),
    };
    let members: Vec<(&str, &[u8])> = order
        .iter()
        .map(|name| {
            let data: &[u8] = match *name {
                "metadata.tar" => &parts.metadata_tar,
                "software.tar" => &parts.software_tar,
                "signature" => signature.as_bytes(),
                "signature.v2" => &v2,
                other => panic!("{other}"),
            };
            (*name, data)
        })
        .collect();
    let tar = tar_of(&members, style);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

const ORIGINAL_ORDER: [&str; 4] = ["metadata.tar", "software.tar", "signature", "signature.v2"];

fn sample(dir: &std::path::Path) -> (String, Vec<(String, Vec<u8>)>) {
    let rpm = TestRpm::new("sysinv", "1.0", "231.tis");
    let path = rpm.build(dir);
    let xml = "<?xml version=\"1.0\" ?>\n<patch>\n  <id>STX_19.01_PATCH_0009</id>\n  \
        <sw_version>19.01</sw_version>\n  <summary>Independent</summary>\n  \
        <description/>\n  <install_instructions/>\n  <warnings/>\n  <status>REL</status>\n  \
        <unremovable/>\n  <reboot_required>N</reboot_required>\n  <contents>\n    \
        <rpm>sysinv-1.0-231.tis.x86_64.rpm</rpm>\n  </contents>\n  <requires/>\n  <semantics/>\n</patch>\n";
    (
        xml.to_owned(),
        vec![(rpm.file_name(), std::fs::read(path).unwrap())],
    )
}

fn keyring_of(key: &rsa::PrivateKey) -> Keyring {
    let pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    Keyring::from_keys(vec![("formal".into(), PublicKey::from_pem(&pem).unwrap())])
}

fn read(bytes: &[u8], ring: &Keyring) -> Result<patch_format::VerifiedPatch, FormatError> {
    PatchReader::new(ring).read(bytes)
}

#[test]
fn independently_assembled_patches_are_accepted_pss_and_pkcs1v15() {
    let dir = tempfile::tempdir().unwrap();
    let signer = independent_key();
    let ring = keyring_of(&signer);
    let (xml, rpms) = sample(dir.path());
    for style in [Style::Gnu, Style::Ustar] {
        let parts = inner_tars(&xml, &rpms, style);
        for scheme in [Scheme::Pss, Scheme::Pkcs1v15] {
            let bytes = assemble(&parts, &signer, scheme, style, &ORIGINAL_ORDER);
            let patch = read(&bytes, &ring).unwrap();
            assert_eq!(patch.metadata.id, "STX_19.01_PATCH_0009");
            assert!(!patch.metadata.reboot_required);
            assert_eq!(patch.signer.name, "formal");
            assert_eq!(std::fs::read(&patch.rpms[0].path).unwrap(), rpms[0].1);
        }
    }
}

#[test]
fn member_order_is_not_relied_on() {
    let dir = tempfile::tempdir().unwrap();
    let signer = independent_key();
    let ring = keyring_of(&signer);
    let (xml, rpms) = sample(dir.path());
    let parts = inner_tars(&xml, &rpms, Style::Gnu);
    let order = ["signature.v2", "software.tar", "signature", "metadata.tar"];
    let bytes = assemble(&parts, &signer, Scheme::Pss, Style::Gnu, &order);
    let patch = read(&bytes, &ring).unwrap();
    assert_eq!(patch.rpms.len(), 1);
}

#[test]
fn unknown_and_revoked_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let signer = independent_key();
    let (xml, rpms) = sample(dir.path());
    let parts = inner_tars(&xml, &rpms, Style::Gnu);
    let bytes = assemble(&parts, &signer, Scheme::Pss, Style::Gnu, &ORIGINAL_ORDER);

    // Trusting only another key.
    let stranger = Keyring::from_keys(vec![("dev".into(), key().public_key())]);
    let err = read(&bytes, &stranger).unwrap_err();
    assert!(err.to_string().contains("Signature check failed"), "{err}");

    // Trusted but revoked, through a keyring directory with revoked/.
    let ring_dir = dir.path().join("keyring");
    std::fs::create_dir_all(ring_dir.join("revoked")).unwrap();
    let pem = signer
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    std::fs::write(ring_dir.join("formal.pem"), &pem).unwrap();
    std::fs::write(ring_dir.join("revoked/formal.pem"), &pem).unwrap();
    let ring = Keyring::load(&ring_dir).unwrap();
    let err = read(&bytes, &ring).unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn contents_must_match_software_tar_and_names_must_match_headers() {
    let dir = tempfile::tempdir().unwrap();
    let signer = independent_key();
    let ring = keyring_of(&signer);
    let (xml, rpms) = sample(dir.path());

    // contents lists an RPM that is not there.
    let listed_extra = xml.replace(
        "<rpm>sysinv-1.0-231.tis.x86_64.rpm</rpm>",
        "<rpm>sysinv-1.0-231.tis.x86_64.rpm</rpm><rpm>ghost-1-1.x86_64.rpm</rpm>",
    );
    let parts = inner_tars(&listed_extra, &rpms, Style::Gnu);
    let err = read(
        &assemble(&parts, &signer, Scheme::Pss, Style::Gnu, &ORIGINAL_ORDER),
        &ring,
    )
    .unwrap_err();
    assert!(matches!(err, FormatError::ContentsMismatch(_)), "{err}");

    // software.tar holds an RPM under a name that lies about its header.
    let renamed = vec![("sysinv-9.9-1.x86_64.rpm".to_owned(), rpms[0].1.clone())];
    let xml2 = xml.replace("sysinv-1.0-231.tis.x86_64.rpm", "sysinv-9.9-1.x86_64.rpm");
    let parts = inner_tars(&xml2, &renamed, Style::Gnu);
    let err = read(
        &assemble(&parts, &signer, Scheme::Pss, Style::Gnu, &ORIGINAL_ORDER),
        &ring,
    )
    .unwrap_err();
    assert!(matches!(err, FormatError::Rpm { .. }), "{err}");
}
