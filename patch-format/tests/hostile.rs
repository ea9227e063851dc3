//! Hostile input: tampering, malformed archives, traversal, bombs. Every case must be refused
//! with a typed error, never a panic, and nothing may be written outside the reader's temp dir.

mod common;

use std::io::Write;

use common::*;
use patch_format::{FormatError, Limits, PatchReader};
use proptest::prelude::*;

fn gz(tar: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(tar).unwrap();
    enc.finish().unwrap()
}

fn read_bytes(bytes: &[u8]) -> Result<patch_format::VerifiedPatch, FormatError> {
    let ring = keyring();
    PatchReader::new(&ring).read(bytes)
}

#[test]
fn flipping_any_byte_of_any_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let patch = sample_patch(dir.path());
    let tar = outer_tar(&patch);
    read_bytes(&gz(&tar)).expect("the untouched patch reads");

    let members = members(&tar);
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "metadata.tar",
            "software.tar",
            "semantics.tar",
            "STX_19.01_PATCH_0001_restart.sh",
            "signature",
            "signature.v2"
        ]
    );
    let mut tried = 0;
    for (name, offset, size) in &members {
        // 40 positions per member, spread over it (all of them for tiny members), first and
        // last byte included.
        let samples = 40.min(*size);
        for i in 0..samples {
            let pos = offset
                + if samples > 1 {
                    i * (size - 1) / (samples - 1)
                } else {
                    0
                };
            let mut bad = tar.clone();
            bad[pos as usize] ^= 0xff;
            let result = read_bytes(&gz(&bad));
            assert!(
                result.is_err(),
                "flipping byte {} of {name} was accepted",
                pos - offset
            );
            tried += 1;
        }
    }
    assert!(tried >= 200, "only {tried} positions tried");
}

#[test]
fn broken_gzip_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let patch = std::fs::read(sample_patch(dir.path())).unwrap();

    let err = read_bytes(b"this is not a patch").unwrap_err();
    assert!(err.to_string().contains("not gzip"), "{err}");
    assert!(read_bytes(b"").is_err());

    for cut in [
        3,
        10,
        patch.len() / 3,
        patch.len() / 2,
        patch.len() - 9,
        patch.len() - 1,
    ] {
        let err = read_bytes(&patch[..cut]).unwrap_err();
        assert!(
            !matches!(err, FormatError::Signature(_)),
            "cut at {cut}: {err}"
        );
    }
    let mut trailing = patch.clone();
    trailing.extend_from_slice(b"garbage");
    let err = read_bytes(&trailing).unwrap_err();
    assert!(err.to_string().contains("trailing data"), "{err}");
    let mut two = patch.clone();
    two.extend_from_slice(&patch);
    assert!(
        read_bytes(&two).is_err(),
        "a second gzip member is trailing data too"
    );
}

#[test]
fn gzip_bombs_hit_the_limit() {
    // 64 MiB of zeros as one member compresses to ~64 KiB.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(64 << 20);
    builder
        .append_data(
            &mut header,
            "software.tar",
            std::io::Read::take(std::io::repeat(0), 64 << 20),
        )
        .unwrap();
    let bomb = gz(&builder.into_inner().unwrap());
    assert!(bomb.len() < 1 << 20);
    let ring = keyring();
    let limits = Limits {
        max_total_size: 16 << 20,
        ..Limits::default()
    };
    let err = PatchReader::new(&ring)
        .limits(limits)
        .read(&bomb[..])
        .unwrap_err();
    assert!(matches!(err, FormatError::LimitExceeded(_)), "{err}");

    let limits = Limits {
        max_member_size: 1 << 20,
        ..Limits::default()
    };
    let err = PatchReader::new(&ring)
        .limits(limits)
        .read(&bomb[..])
        .unwrap_err();
    assert!(matches!(err, FormatError::LimitExceeded(_)), "{err}");
}

/// The probe from the issue: a small upload whose `software.tar` declares 4 GiB of zeros.
/// With the default limits it is refused once the decompressed bytes pass
/// `expansion_allowance + max_expansion_ratio × compressed bytes read` (64 MiB + 50 × the
/// input), long before the declared size, whatever the member sizes allow.
#[test]
fn a_small_upload_declaring_gigabytes_is_refused_within_the_expansion_allowance() {
    let mut header = tar::Header::new_gnu();
    header.set_path("software.tar").unwrap();
    header.set_size(4 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(header.as_bytes()).unwrap();
    // Only the first 256 MiB are made: the reader must stop well before their end.
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());

    let ring = keyring();
    let err = PatchReader::new(&ring).read(&bomb[..]).unwrap_err();
    assert!(matches!(err, FormatError::LimitExceeded(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("decompression bomb"), "{text}");
    let decompressed: u64 = text
        .split(" bytes from ")
        .next()
        .and_then(|t| t.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {text}"));
    let limits = Limits::default();
    assert!(
        decompressed
            <= limits.expansion_allowance
                + limits.max_expansion_ratio * bomb.len() as u64
                + (1 << 20),
        "{decompressed} bytes decompressed from {}",
        bomb.len()
    );

    // When the upload's length is known (a file, a Content-Length), the declared 4 GiB is
    // refused at the member's header: nothing of it is decompressed or written.
    let known = Limits::default().for_compressed_size(bomb.len() as u64);
    let err = PatchReader::new(&ring)
        .limits(known.clone())
        .read(&bomb[..])
        .unwrap_err();
    assert!(matches!(err, FormatError::LimitExceeded(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("member software.tar of the patch archive is 4294967296 bytes")
            && text.contains(&format!("limit {}", known.max_total_size)),
        "{text}"
    );
}

/// A raw tar member with any name and type (the `tar` crate refuses to write some of these).
fn raw_member(name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    header.set_size(data.len() as u64);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn unsafe_members_are_refused_and_nothing_escapes() {
    let scratch = tempfile::tempdir().unwrap();
    let ring = keyring();
    let rpm = b"not really an rpm".to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "outer traversal",
            archive(&[raw_member("../evil", tar::EntryType::Regular, b"x", None)]),
        ),
        (
            "outer absolute",
            archive(&[raw_member("/tmp/evil", tar::EntryType::Regular, b"x", None)]),
        ),
        (
            "outer directory",
            archive(&[raw_member("dir/", tar::EntryType::Directory, b"", None)]),
        ),
        (
            "outer symlink",
            archive(&[raw_member(
                "metadata.tar",
                tar::EntryType::Symlink,
                b"",
                Some("/etc/passwd"),
            )]),
        ),
        (
            "outer hard link",
            archive(&[raw_member(
                "software.tar",
                tar::EntryType::Link,
                b"",
                Some("/etc/shadow"),
            )]),
        ),
        (
            "outer device",
            archive(&[raw_member("signature", tar::EntryType::Char, b"", None)]),
        ),
        (
            "outer fifo",
            archive(&[raw_member("signature", tar::EntryType::Fifo, b"", None)]),
        ),
        (
            "outer duplicate",
            archive(&[
                raw_member("signature", tar::EntryType::Regular, b"ab", None),
                raw_member("signature", tar::EntryType::Regular, b"cd", None),
            ]),
        ),
    ];
    let software = |inner: Vec<u8>| {
        archive(&[raw_member(
            "software.tar",
            tar::EntryType::Regular,
            &inner,
            None,
        )])
    };
    let inner_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "rpm traversal",
            software(archive(&[raw_member(
                "../../x-1-1.x86_64.rpm",
                tar::EntryType::Regular,
                &rpm,
                None,
            )])),
        ),
        (
            "rpm absolute",
            software(archive(&[raw_member(
                "/etc/x-1-1.x86_64.rpm",
                tar::EntryType::Regular,
                &rpm,
                None,
            )])),
        ),
        (
            "rpm in a directory",
            software(archive(&[raw_member(
                "Packages/x-1-1.x86_64.rpm",
                tar::EntryType::Regular,
                &rpm,
                None,
            )])),
        ),
        (
            "rpm symlink",
            software(archive(&[raw_member(
                "x-1-1.x86_64.rpm",
                tar::EntryType::Symlink,
                b"",
                Some("/etc/passwd"),
            )])),
        ),
        (
            "not an rpm name",
            software(archive(&[raw_member(
                "script.sh",
                tar::EntryType::Regular,
                b"rm -rf /",
                None,
            )])),
        ),
        (
            "rpm twice",
            software(archive(&[
                raw_member("x-1-1.x86_64.rpm", tar::EntryType::Regular, &rpm, None),
                raw_member("x-1-1.x86_64.rpm", tar::EntryType::Regular, &rpm, None),
            ])),
        ),
    ];
    for (what, tar) in cases.into_iter().chain(inner_cases) {
        let err = PatchReader::new(&ring)
            .temp_root(scratch.path())
            .read(&gz(&tar)[..])
            .unwrap_err();
        assert!(
            matches!(err, FormatError::UnsafeMember { .. }),
            "{what}: expected an unsafe-member error, got {err}"
        );
        // The private temp dir is gone and nothing else was created.
        assert_eq!(
            std::fs::read_dir(scratch.path()).unwrap().count(),
            0,
            "{what}"
        );
    }
    assert!(!std::path::Path::new("/tmp/evil").exists());
}

#[test]
fn missing_members_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tar = outer_tar(&sample_patch(dir.path()));
    for drop in ["metadata.tar", "software.tar", "signature", "signature.v2"] {
        let kept: Vec<Vec<u8>> = members(&tar)
            .into_iter()
            .filter(|m| m.0 != drop)
            .map(|(name, offset, size)| {
                raw_member(
                    &name,
                    tar::EntryType::Regular,
                    &tar[offset as usize..(offset + size) as usize],
                    None,
                )
            })
            .collect();
        let err = read_bytes(&gz(&archive(&kept))).unwrap_err();
        assert!(
            matches!(err, FormatError::Archive(_) | FormatError::Signature(_)),
            "without {drop}: {err}"
        );
        if drop == "signature.v2" {
            assert!(err.to_string().contains("has not been signed"), "{err}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the reader.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read_bytes(&bytes);
        let _ = read_bytes(&gz(&bytes));
    }

    /// Random corruption of a real patch's tar (several bytes at once) never panics and is
    /// never accepted.
    #[test]
    fn corrupted_patches_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)) {
        static TAR: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let tar = TAR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            outer_tar(&sample_patch(dir.path()))
        });
        let mut bad = tar.clone();
        // Only flip bytes inside the archive's first 40 KiB (headers and signed members).
        let span = bad.len().min(40 * 1024);
        let mut changed = false;
        for (index, mask) in flips {
            let i = index.index(span);
            bad[i] ^= mask;
            changed = true;
        }
        let result = read_bytes(&gz(&bad));
        if changed && bad != *tar {
            // Flips in padding between members could leave signed bytes intact; then the
            // patch is still authentic. Otherwise it must be refused.
            if let Ok(p) = result {
                prop_assert_eq!(p.metadata.id, "STX_19.01_PATCH_0001");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// metadata.xml from outside never panics the parser, whatever the text.
    #[test]
    fn arbitrary_metadata_never_panics(text in ".{0,400}", field in "\\PC{0,300}") {
        let _ = patch_format::parse_metadata_xml(&text);
        let wrapped = format!(
            "<patch><id>{field}</id><sw_version>{field}</sw_version><contents><rpm>{field}</rpm></contents>\
             <personality type=\"{field}\"><package>{field}</package></personality></patch>"
        );
        let _ = patch_format::parse_metadata_xml(&wrapped);
    }
}
