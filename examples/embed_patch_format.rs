//! A build tool embedding `patch-format` + `patch-sign`: build a signed patch from RPMs, then
//! verify it the way the controller will.
//!
//! Run: `cargo run --example embed_patch_format -- <key.pem> <out-dir> <rpm>...`

use patch_format::{PatchBuilder, PatchMetadata, PatchReader, Status};
use patch_sign::{Keyring, PrivateKey};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, out_dir, rpms @ ..] = args.as_slice() else {
        return Err("usage: embed_patch_format <key.pem> <out-dir> <rpm>...".into());
    };
    let key = PrivateKey::from_pem_file(key.as_ref())?;

    let mut metadata = PatchMetadata::new("MY_1.0_PATCH_0001", "1.0");
    metadata.summary = "Built by my build tool".into();
    metadata.status = Status::Released;
    metadata.reboot_required = false;
    let mut builder = PatchBuilder::new(metadata);
    for rpm in rpms {
        builder.add_rpm(rpm.as_ref(), &[])?; // upgrades of installed packages
    }
    let (path, summary) = builder.write_to_dir(out_dir.as_ref(), &key)?;
    println!(
        "wrote {} ({} bytes)",
        path.display(),
        summary.compressed_size
    );

    // Verify as the controller would: signatures against a keyring, contents, RPM headers.
    let keyring = Keyring::from_keys(vec![("build-key".into(), key.public_key())]);
    let patch = PatchReader::new(&keyring).read_file(&path)?;
    println!(
        "verified {} signed by {}",
        patch.metadata.id, patch.signer.name
    );
    Ok(())
}
