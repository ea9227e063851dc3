//! Shared fixtures: a signing key, a keyring, test RPMs and a built patch.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Personality, SemanticAction, Status};
use patch_sign::{Keyring, PrivateKey};

pub fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).unwrap())
}

pub fn other_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).unwrap())
}

pub fn keyring() -> Keyring {
    Keyring::from_keys(vec![("dev".into(), key().public_key())])
}

/// Two RPMs (an upgrade and a new package) plus semantic scripts and a restart script,
/// built into `dir`; returns the builder ready to write.
pub fn sample_builder(dir: &Path) -> PatchBuilder {
    let upgrade = TestRpm::new("sysinv", "1.0", "231.tis")
        .file("/usr/lib/sysinv/fix.py", "print('fixed')\n")
        .build(dir);
    let new_pkg = TestRpm::new("newpkg", "1.0", "1.tis").build(dir);
    let pre_apply = dir.join("pre-apply.sh");
    std::fs::write(&pre_apply, "#!/bin/sh\nexit 0\n").unwrap();
    let restart = dir.join("restart.sh");
    std::fs::write(&restart, "#!/bin/sh\necho restarting\n").unwrap();

    let mut metadata = PatchMetadata::new("STX_19.01_PATCH_0001", "19.01");
    metadata.summary = "Sample patch".into();
    metadata.description = "Fixes X\nFixes Y".into();
    metadata.status = Status::Released;
    metadata.reboot_required = false;
    metadata.requires.insert("STX_19.01_PATCH_0000".into());
    let mut builder = PatchBuilder::new(metadata);
    builder
        .threads(2)
        .mtime(1_700_000_000)
        .add_rpm(&upgrade, &[])
        .unwrap()
        .add_rpm(&new_pkg, &[Personality::Controller, Personality::Worker])
        .unwrap()
        .semantic_script(SemanticAction::PreApply, &pre_apply)
        .unwrap()
        .restart_script(&restart)
        .unwrap();
    builder
}

/// Builds the sample patch into `dir/out/`; returns its path.
pub fn sample_patch(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    sample_builder(dir).write_to_dir(&out, key()).unwrap().0
}

/// Decompresses a patch into its outer tar bytes.
pub fn outer_tar(patch: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(patch).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Compresses outer tar bytes into a patch file.
pub fn write_gz(path: &Path, tar: &[u8]) {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::new(9),
    );
    gz.write_all(tar).unwrap();
    gz.finish().unwrap();
}

/// (name, data offset, size) of each member of an outer tar.
pub fn members(tar_bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.raw_file_position(),
                e.size(),
            )
        })
        .collect()
}
