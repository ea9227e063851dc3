//! Build → read round trips, GNU tools reading our output, and the writer's refusals.

mod common;

use std::process::Command;

use common::*;
use patch_format::testing::TestRpm;
use patch_format::{FormatError, PatchBuilder, PatchMetadata, PatchReader, SemanticAction};

#[test]
fn build_then_read_gives_identical_metadata_and_rpms() {
    let dir = tempfile::tempdir().unwrap();
    let builder = sample_builder(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (path, summary) = builder.write_to_dir(&out, key()).unwrap();
    assert_eq!(path.file_name().unwrap(), "STX_19.01_PATCH_0001.patch");

    let ring = keyring();
    let patch = PatchReader::new(&ring).read_file(&path).unwrap();
    assert_eq!(patch.metadata, *builder.metadata());
    assert_eq!(patch.metadata, summary.metadata);
    assert_eq!(patch.signer.name, "dev");
    assert_eq!(patch.md5_signature, summary.md5_signature);
    assert_eq!(patch.rpms.len(), 2);
    for rpm in &patch.rpms {
        let original = std::fs::read(dir.path().join(&rpm.file_name)).unwrap();
        assert_eq!(
            std::fs::read(&rpm.path).unwrap(),
            original,
            "{}",
            rpm.file_name
        );
        assert_eq!(rpm.size, original.len() as u64);
    }
    assert_eq!(patch.rpms[0].info.name, "newpkg");
    assert_eq!(
        std::fs::read_to_string(&patch.semantics[&SemanticAction::PreApply]).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
    assert_eq!(
        std::fs::read_to_string(patch.restart_script.as_ref().unwrap()).unwrap(),
        "#!/bin/sh\necho restarting\n"
    );
    // No temporary debris next to the output.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["STX_19.01_PATCH_0001.patch"]);
}

/// A reader that hands out one byte per call: how a slow network upload can arrive.
struct OneByteAtATime<R>(R);

impl<R: std::io::Read> std::io::Read for OneByteAtATime<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn a_patch_arriving_one_byte_at_a_time_reads() {
    let dir = tempfile::tempdir().unwrap();
    let builder = sample_builder(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (path, summary) = builder.write_to_dir(&out, key()).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let ring = keyring();
    let patch = PatchReader::new(&ring).read(OneByteAtATime(file)).unwrap();
    assert_eq!(patch.metadata, summary.metadata);
    // A single byte is still not a patch.
    let err = PatchReader::new(&ring).read(&[0x1f][..]).unwrap_err();
    assert!(err.to_string().contains("not gzip-compressed"), "{err}");
}

#[test]
fn gnu_tar_and_gzip_read_the_output() {
    let dir = tempfile::tempdir().unwrap();
    // A patch without the optional members, so the listing is exactly the original's.
    let rpm = TestRpm::new("sysinv", "1.0", "231.tis").build(dir.path());
    let mut builder = PatchBuilder::new(PatchMetadata::new("P1", "19.01"));
    builder.add_rpm(&rpm, &[]).unwrap();
    let (path, _) = builder.write_to_dir(dir.path(), key()).unwrap();

    let list = Command::new("tar").arg("-tzf").arg(&path).output().unwrap();
    assert!(list.status.success());
    assert_eq!(
        String::from_utf8(list.stdout).unwrap(),
        "metadata.tar\nsoftware.tar\nsignature\nsignature.v2\n"
    );
    let xml = Command::new("sh")
        .arg("-c")
        .arg("tar -xOzf \"$1\" metadata.tar | tar -xO metadata.xml")
        .arg("sh")
        .arg(&path)
        .output()
        .unwrap();
    assert!(xml.status.success());
    let xml = String::from_utf8(xml.stdout).unwrap();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" ?>\n<patch>\n  <id>P1</id>\n"),
        "{xml}"
    );
    let software = Command::new("sh")
        .arg("-c")
        .arg("tar -xOzf \"$1\" software.tar | tar -t")
        .arg("sh")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(software.stdout).unwrap(),
        "sysinv-1.0-231.tis.x86_64.rpm\n"
    );
    assert!(
        Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .status()
            .unwrap()
            .success()
    );

    // With semantics and a restart script, the optional members follow software.tar.
    let full = sample_patch(dir.path());
    let list = Command::new("tar").arg("-tzf").arg(&full).output().unwrap();
    assert_eq!(
        String::from_utf8(list.stdout).unwrap(),
        "metadata.tar\nsoftware.tar\nsemantics.tar\nSTX_19.01_PATCH_0001_restart.sh\nsignature\nsignature.v2\n"
    );
}

#[test]
fn the_writer_refuses_what_the_original_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let empty = PatchBuilder::new(PatchMetadata::new("P1", "19.01"));
    let err = empty.write_to_dir(dir.path(), key()).unwrap_err();
    assert!(
        err.to_string().contains("Cannot generate empty patch"),
        "{err}"
    );

    let rpm = TestRpm::new("a", "1", "1").build(dir.path());
    let mut no_release = PatchBuilder::new(PatchMetadata::new("P1", ""));
    no_release.add_rpm(&rpm, &[]).unwrap();
    let err = no_release.write_to_dir(dir.path(), key()).unwrap_err();
    assert!(
        err.to_string()
            .contains("The release version must be specified in the sw_version field"),
        "{err}"
    );

    // A file name that lies about the package inside.
    let liar = dir.path().join("a-2-1.x86_64.rpm");
    std::fs::copy(&rpm, &liar).unwrap();
    let err = PatchBuilder::new(PatchMetadata::new("P1", "1"))
        .add_rpm(&liar, &[])
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, FormatError::Rpm { .. }), "{err}");
    assert!(
        err.to_string().contains("rename it a-1-1.x86_64.rpm"),
        "{err}"
    );

    // Not an RPM at all.
    let junk = dir.path().join("junk-1-1.x86_64.rpm");
    std::fs::write(&junk, b"definitely not an rpm").unwrap();
    assert!(
        PatchBuilder::new(PatchMetadata::new("P1", "1"))
            .add_rpm(&junk, &[])
            .is_err()
    );
    // Nothing half-written was left behind.
    assert!(!dir.path().join("P1.patch").exists());
}

#[test]
fn output_is_deterministic_apart_from_the_pss_salt() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let builder = sample_builder(dir.path());
    let (pa, sa) = builder.write_to_dir(&a, key()).unwrap();
    let (pb, sb) = builder.clone().threads(1).write_to_dir(&b, key()).unwrap();
    assert_eq!(sa.inner_sha256, sb.inner_sha256);
    assert_eq!(sa.md5_signature, sb.md5_signature);
    let (ta, tb) = (outer_tar(&pa), outer_tar(&pb));
    assert_eq!(ta.len(), tb.len());
    // Everything before signature.v2's data is identical.
    let v2 = members(&ta)
        .into_iter()
        .find(|m| m.0 == "signature.v2")
        .unwrap();
    assert_eq!(ta[..v2.1 as usize], tb[..v2.1 as usize]);
}
