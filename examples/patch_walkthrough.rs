//! The main job: build sample RPMs, a development signing key and a signed patch, then verify
//! the patch as the controller would and show what it holds — all on local defaults.
//!
//! Run: `cargo run --release --example patch_walkthrough [-- <work-dir>]`
//! (default work dir: `target/stx-patch-demo`, recreated on each run).

use std::path::PathBuf;
use std::process::ExitCode;

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, PatchReader, Personality, Status};
use patch_sign::{Keyring, PrivateKey};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/stx-patch-demo"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    let rpms = work.join("rpms");
    let keys = work.join("keys");
    let keyring_dir = work.join("keyring");
    let out = work.join("patches");
    for d in [&rpms, &keys, &keyring_dir, &out] {
        std::fs::create_dir_all(d)?;
    }

    println!("== 1. Sample RPMs (built with the rpm crate)");
    let upgrade = TestRpm::new("sysinv", "1.0", "231.tis")
        .file(
            "/usr/lib/python2.7/site-packages/sysinv/fix.py",
            "FIXED = True\n",
        )
        .build(&rpms);
    let new_pkg = TestRpm::new("newpkg", "1.0", "1.tis")
        .file("/usr/bin/newpkg-tool", "#!/bin/sh\necho newpkg\n")
        .build(&rpms);
    for rpm in [&upgrade, &new_pkg] {
        println!("   {}", rpm.display());
    }

    println!("== 2. Development signing key (RSA-2048, PKCS#8 private, SPKI public)");
    let key = PrivateKey::generate(2048)?;
    std::fs::write(keys.join("signing-key.pem"), key.to_pkcs8_pem()?)?;
    std::fs::write(keyring_dir.join("dev.pem"), key.public_key().to_spki_pem()?)?;
    println!(
        "   {} ({})",
        keys.join("signing-key.pem").display(),
        key.public_key().fingerprint()
    );

    println!("== 3. patch-build: STX_19.01_PATCH_0001 (in-service, newpkg for all nodes)");
    let mut metadata = PatchMetadata::new("STX_19.01_PATCH_0001", "19.01");
    metadata.summary = "Fixes sysinv; adds newpkg".into();
    metadata.description = "Fixes X\nFixes Y".into();
    metadata.status = Status::Released;
    metadata.reboot_required = false;
    let mut builder = PatchBuilder::new(metadata);
    builder
        .add_rpm(&upgrade, &[])?
        .add_rpm(&new_pkg, &Personality::ALL)?;
    let (path, summary) = builder.write_to_dir(&out, &key)?;
    println!(
        "   {} — {} bytes, md5 signature {}, signature.v2 over sha256 {}",
        path.display(),
        summary.compressed_size,
        summary.md5_signature,
        &summary.inner_sha256[..16]
    );

    println!("== 4. Verify with the keyring, as the controller does on upload");
    let keyring = Keyring::load(&keyring_dir)?;
    let patch = PatchReader::new(&keyring).read_file(&path)?;
    println!(
        "   OK: signed by {} ({:?}); {} RPM(s) match their headers",
        patch.signer.name,
        patch.signer.scheme,
        patch.rpms.len()
    );
    for rpm in &patch.rpms {
        println!(
            "   {}  {}  sha256 {}",
            rpm.file_name,
            rpm.info.evr,
            &rpm.sha256[..16]
        );
    }

    println!("== 5. metadata.xml as written into the patch");
    print!("{}", patch_format::metadata_xml(&patch.metadata));

    println!("== Try the command-line tools on it:");
    println!(
        "   cargo run -q -p cli --bin patch-query -- {} --keyring {}",
        path.display(),
        keyring_dir.display()
    );
    println!("   tar -tzf {}", path.display());
    Ok(())
}
