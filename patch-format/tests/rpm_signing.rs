//! RPMs signed here verify with the standard tooling: `rpmkeys --import` the public key into
//! a scratch rpmdb, then `rpmkeys --checksig` reports the signature OK — and a copy with one
//! flipped payload byte, or signed by another key, does not.

use std::path::Path;
use std::process::Command;

use patch_format::testing::TestRpm;
use patch_format::{RpmSigningKey, rpm_signers};

fn rpmkeys(dbpath: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("rpmkeys")
        .arg("--dbpath")
        .arg(dbpath)
        .args(args)
        .output()
        .expect("rpmkeys runs (scripts/test.sh installs rpm)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn rpmkeys_checksig_accepts_our_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let generated = RpmSigningKey::generate("stx-patch test <test@example.invalid>").unwrap();
    std::fs::write(d.join("key.pub.asc"), &generated.public_asc).unwrap();
    let key = RpmSigningKey::from_asc(generated.secret_asc.as_bytes()).unwrap();
    let rpm = TestRpm::new("sysinv", "1.0", "1")
        .file("/usr/lib/sysinv/api.py", "VERSION = 1\n".repeat(200))
        .build(d);
    let signed = d.join("signed.rpm");
    key.sign_file(&rpm, &signed).unwrap();
    assert_eq!(
        rpm_signers(&signed).unwrap(),
        vec![generated.key_id.clone()]
    );

    let db = d.join("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    let (ok, out) = rpmkeys(&db, &["--import", d.join("key.pub.asc").to_str().unwrap()]);
    assert!(ok, "import: {out}");
    let (ok, out) = rpmkeys(&db, &["--checksig", signed.to_str().unwrap()]);
    assert!(ok && out.contains("signatures OK"), "checksig: {out}");
    // Unsigned: no signature to check.
    let (_, out) = rpmkeys(&db, &["--checksig", rpm.to_str().unwrap()]);
    assert!(!out.contains("signatures OK"), "unsigned: {out}");

    // One flipped byte in the payload.
    let mut bytes = std::fs::read(&signed).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    let tampered = d.join("tampered.rpm");
    std::fs::write(&tampered, bytes).unwrap();
    let (ok, out) = rpmkeys(&db, &["--checksig", tampered.to_str().unwrap()]);
    assert!(!ok, "tampered passed: {out}");

    // Signed by a key rpm does not know.
    let other = RpmSigningKey::generate("other <other@example.invalid>").unwrap();
    let other = RpmSigningKey::from_asc(other.secret_asc.as_bytes()).unwrap();
    let foreign = d.join("foreign.rpm");
    other.sign_file(&rpm, &foreign).unwrap();
    let (ok, out) = rpmkeys(&db, &["--checksig", foreign.to_str().unwrap()]);
    assert!(!ok, "foreign passed: {out}");
}
