//! Reads an untrusted `.patch`: verifies it, extracts it into a private temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use patch_sign::{InnerDigests, Keyring, SignerIdentity};
use sha2::{Digest, Sha256};

use crate::limits::{Counted, ExpansionGuard, LimitedReader};
use crate::metadata::validate_member_name;
use crate::tar_stream::{MemberKind, TarStream};
use crate::{FormatError, Limits, PackageId, PatchMetadata, SemanticAction, parse_metadata_xml};

/// Inner tars covered by both signatures, in signing order.
const SIGNED: [&str; 3] = ["metadata.tar", "software.tar", "semantics.tar"];
/// Largest `signature` / `signature.v2` member.
const MAX_SIGNATURE: u64 = 64 * 1024;
/// Largest `semantics.tar`, and largest restart script.
const MAX_SMALL_TAR: u64 = 4 << 20;

/// An RPM extracted from a verified patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractedRpm {
    /// File name (as in `contents`).
    pub file_name: String,
    /// Where it was extracted.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file, hex (computed during extraction).
    pub sha256: String,
    /// Identity from its header.
    pub info: PackageId,
}

/// A patch whose signatures verified and whose contents agree with its metadata. Its files live
/// in a private temporary directory that is deleted when this value is dropped, unless moved
/// elsewhere first.
#[derive(Debug)]
pub struct VerifiedPatch {
    /// The parsed metadata.
    pub metadata: PatchMetadata,
    /// The trusted key that signed `signature.v2`.
    pub signer: SignerIdentity,
    /// RPMs of `software.tar`, sorted by file name.
    pub rpms: Vec<ExtractedRpm>,
    /// Semantic check scripts from `semantics.tar`.
    pub semantics: BTreeMap<SemanticAction, PathBuf>,
    /// The restart script, if the patch has one.
    pub restart_script: Option<PathBuf>,
    /// The md5 combination (`signature`) as verified.
    pub md5_signature: String,
    dir: tempfile::TempDir,
}

impl VerifiedPatch {
    /// The temporary directory holding the extracted files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Reads and verifies patches against a keyring, within limits.
#[derive(Clone, Debug)]
pub struct PatchReader<'k> {
    keyring: &'k Keyring,
    limits: Limits,
    temp_root: Option<PathBuf>,
}

impl<'k> PatchReader<'k> {
    /// A reader trusting `keyring`, with default [`Limits`], extracting under the system
    /// temporary directory.
    pub fn new(keyring: &'k Keyring) -> Self {
        Self {
            keyring,
            limits: Limits::default(),
            temp_root: None,
        }
    }

    /// Uses other limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Extracts under `dir` (put it on the same filesystem as the final destination so the
    /// files can be renamed into place).
    pub fn temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_root = Some(dir.into());
        self
    }

    /// Reads the patch file at `path`.
    pub fn read_file(&self, path: &Path) -> Result<VerifiedPatch, FormatError> {
        let file = File::open(path).map_err(FormatError::io(path))?;
        self.read(file)
    }

    /// Reads a patch from a stream. Nothing is returned unless both signatures verify against
    /// the keyring, `contents` names exactly the RPMs of `software.tar`, and every RPM's header
    /// matches its file name.
    pub fn read(&self, input: impl Read) -> Result<VerifiedPatch, FormatError> {
        let dir = match &self.temp_root {
            Some(root) => tempfile::Builder::new()
                .prefix(".patch-read-")
                .tempdir_in(root),
            None => tempfile::Builder::new().prefix("patch-read-").tempdir(),
        }
        .map_err(FormatError::io(
            self.temp_root.clone().unwrap_or_else(std::env::temp_dir),
        ))?;
        let raw = self.extract(input, dir.path())?;
        self.verify(raw, dir)
    }

    /// Pass 1: walk the outer archive once, hashing the signed members and extracting what is
    /// needed. Nothing is trusted yet.
    fn extract(&self, input: impl Read, dir: &Path) -> Result<RawPatch, FormatError> {
        // Check the gzip magic first so that a wrong file gets a plain answer. It is read
        // whole however the input is cut (a network upload may deliver 1 byte first).
        let mut input = input;
        let mut magic = [0u8; 2];
        let not_gzip = || {
            FormatError::Archive(
                "not a patch: the file is not gzip-compressed (a .patch is a gzip tar)".into(),
            )
        };
        match input.read_exact(&mut magic) {
            Ok(()) if magic == [0x1f, 0x8b] => {}
            Ok(()) => return Err(not_gzip()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(not_gzip()),
            Err(e) => return Err(FormatError::stream("reading the patch")(e)),
        }
        let (counted, compressed_bytes) =
            Counted::new(BufReader::with_capacity(1 << 20, (&magic[..]).chain(input)));
        let mut compressed = counted;
        let gz = flate2::bufread::GzDecoder::new(&mut compressed);
        let guarded = ExpansionGuard::new(gz, compressed_bytes, &self.limits);
        let limited = LimitedReader::new(
            guarded,
            self.limits.max_total_size,
            "the decompressed patch",
        );
        let mut outer = TarStream::new(limited, "the patch archive", &self.limits);

        let mut raw = RawPatch::default();
        let mut digests = DigestThread::spawn();
        let mut signed_order: Vec<&'static str> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut extra_bytes = 0u64;

        while let Some(member) = outer.next_member()? {
            if member.kind != MemberKind::File {
                return Err(FormatError::UnsafeMember {
                    archive: "the patch archive".into(),
                    name: member.name,
                    reason: "directories are not allowed; members have bare names".into(),
                });
            }
            validate_member_name(&member.name).map_err(|reason| FormatError::UnsafeMember {
                archive: "the patch archive".into(),
                name: member.name.clone(),
                reason: reason.to_string(),
            })?;
            if !seen.insert(member.name.clone()) {
                return Err(FormatError::UnsafeMember {
                    archive: "the patch archive".into(),
                    name: member.name,
                    reason: "the member appears twice".into(),
                });
            }
            match member.name.as_str() {
                "metadata.tar" => {
                    signed_order.push(SIGNED[0]);
                    digests.member("metadata.tar");
                    let data =
                        outer.read_member_to_vec(&member, self.limits.max_xml_size + 64 * 1024)?;
                    digests.update(&data);
                    raw.metadata_tar = Some(data);
                }
                "software.tar" => {
                    signed_order.push(SIGNED[1]);
                    raw.software_present = true;
                    // The running SHA-256 is only usable if metadata.tar came first and
                    // semantics.tar has not come yet; otherwise keep a copy to rehash.
                    let in_order = signed_order == SIGNED[..2];
                    digests.member("software.tar");
                    let spool = if in_order {
                        None
                    } else {
                        Some(dir.join("software.tar.unordered"))
                    };
                    raw.rpms =
                        self.extract_software(&mut outer, &mut digests, dir, spool.as_deref())?;
                    raw.software_spool = spool;
                }
                "semantics.tar" => {
                    signed_order.push(SIGNED[2]);
                    digests.member("semantics.tar");
                    let data = outer.read_member_to_vec(&member, MAX_SMALL_TAR)?;
                    digests.update(&data);
                    raw.semantics_tar = Some(data);
                }
                "signature" => {
                    let data = outer.read_member_to_vec(&member, MAX_SIGNATURE)?;
                    raw.signature = Some(String::from_utf8(data).map_err(|_| {
                        FormatError::Archive("the signature member is not text".into())
                    })?);
                }
                "signature.v2" => {
                    raw.signature_v2 = Some(outer.read_member_to_vec(&member, MAX_SIGNATURE)?);
                }
                _ => {
                    // Possibly the restart script (its name is only known from the metadata):
                    // keep small unknown members, bounded; skip the rest.
                    if member.size <= MAX_SMALL_TAR && extra_bytes + member.size <= MAX_SMALL_TAR {
                        extra_bytes += member.size;
                        let data = outer.read_member_to_vec(&member, MAX_SMALL_TAR)?;
                        raw.extra.insert(member.name, data);
                    }
                }
            }
        }
        // Drain the rest of the stream: trailing tar padding, then the gzip trailer (CRC and
        // length are checked by the decoder when it reaches the end).
        let mut limited = outer.into_inner();
        io::copy(&mut limited, &mut io::sink())
            .map_err(FormatError::stream("reading the patch"))?;
        drop(limited);
        let rest = compressed
            .fill_buf()
            .map_err(FormatError::stream("reading the patch"))?;
        if !rest.is_empty() {
            return Err(FormatError::Archive(
                "trailing data after the end of the gzip stream".into(),
            ));
        }
        raw.signed_in_order = signed_order.iter().zip(SIGNED).all(|(a, b)| *a == b);
        raw.digests = Some(digests.finish()?);
        Ok(raw)
    }

    /// Streams `software.tar` out of the outer archive: each RPM goes to `dir/rpms/<name>`
    /// with its SHA-256 computed on the way; every byte of the tar is hashed for the signatures.
    fn extract_software<R: Read>(
        &self,
        outer: &mut TarStream<R>,
        digests: &mut DigestThread,
        dir: &Path,
        spool: Option<&Path>,
    ) -> Result<Vec<(String, PathBuf, u64, String)>, FormatError> {
        let rpm_dir = dir.join("rpms");
        std::fs::create_dir(&rpm_dir).map_err(FormatError::io(&rpm_dir))?;
        let mut spool_file = match spool {
            Some(p) => Some(io::BufWriter::new(
                File::create(p).map_err(FormatError::io(p))?,
            )),
            None => None,
        };
        let hashed = ThreadedDigestingReader {
            inner: outer,
            digests,
        };
        let tee = TeeReader {
            inner: hashed,
            copy: spool_file.as_mut(),
        };
        let mut inner = TarStream::new(tee, "software.tar", &self.limits);
        let mut rpms = Vec::new();
        let mut names = BTreeSet::new();
        while let Some(member) = inner.next_member()? {
            let refuse = |reason: String| FormatError::UnsafeMember {
                archive: "software.tar".into(),
                name: member.name.clone(),
                reason,
            };
            if member.kind != MemberKind::File {
                return Err(refuse("software.tar holds RPM files only, flat".into()));
            }
            crate::validate_rpm_file_name(&member.name).map_err(|e| refuse(e.to_string()))?;
            if !names.insert(member.name.clone()) {
                return Err(refuse("the RPM appears twice".into()));
            }
            let path = rpm_dir.join(&member.name);
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(FormatError::io(&path))?;
            let mut out = HashingWriter {
                inner: io::BufWriter::with_capacity(256 * 1024, file),
                sha256: Sha256::new(),
            };
            let copied = io::copy(&mut inner, &mut out)
                .map_err(FormatError::stream(format!("extracting {}", member.name)))?;
            if copied != member.size {
                return Err(FormatError::Archive(format!(
                    "{} is truncated",
                    member.name
                )));
            }
            out.inner.flush().map_err(FormatError::io(&path))?;
            rpms.push((
                member.name,
                path,
                copied,
                hex::encode(out.sha256.finalize()),
            ));
        }
        // Hash (and spool) the end-of-archive blocks and padding too: they are signed bytes.
        io::copy(&mut inner.into_inner(), &mut io::sink())
            .map_err(FormatError::stream("reading software.tar"))?;
        if let Some(mut f) = spool_file {
            f.flush()
                .map_err(FormatError::stream("spooling software.tar"))?;
        }
        Ok(rpms)
    }

    /// Pass 2 (no archive reading): check signatures, then metadata against contents.
    fn verify(
        &self,
        mut raw: RawPatch,
        dir: tempfile::TempDir,
    ) -> Result<VerifiedPatch, FormatError> {
        let (Some(metadata_tar), true) = (raw.metadata_tar.take(), raw.digests.is_some()) else {
            return Err(FormatError::Archive(
                "not a patch: metadata.tar is missing".into(),
            ));
        };
        if !raw.software_seen() {
            return Err(FormatError::Archive(
                "not a patch: software.tar is missing".into(),
            ));
        }
        let Some(signature) = raw.signature.take() else {
            return Err(FormatError::Archive(
                "Patch failed verification: the signature member is missing".into(),
            ));
        };
        let Some(signature_v2) = raw.signature_v2.take() else {
            return Err(FormatError::Archive(
                "Patch has not been signed: signature.v2 is missing".into(),
            ));
        };
        let sums = raw
            .digests
            .take()
            .map(InnerDigests::finish)
            .ok_or_else(|| FormatError::Archive("internal: digests missing".into()))?;
        let md5 = sums.md5_combination();
        md5.verify_text(&signature)?;
        let sha256 = if raw.signed_in_order && raw.software_spool.is_none() {
            sums.sha256
        } else {
            rehash_in_order(
                &metadata_tar,
                raw.software_spool.as_deref(),
                raw.semantics_tar.as_deref(),
            )?
        };
        let signer = self.keyring.verify_v2(&sha256, &signature_v2)?;

        // Signed: now interpret the contents.
        let xml_bytes = single_member(&metadata_tar, "metadata.tar", "metadata.xml", &self.limits)?;
        let xml = String::from_utf8(xml_bytes)
            .map_err(|_| FormatError::metadata("patch", "metadata.xml is not UTF-8"))?;
        let metadata = parse_metadata_xml(&xml)?;

        let in_tar: BTreeSet<&str> = raw.rpms.iter().map(|r| r.0.as_str()).collect();
        let listed: BTreeSet<&str> = metadata.contents.iter().map(String::as_str).collect();
        if in_tar != listed {
            let missing: Vec<_> = listed.difference(&in_tar).collect();
            let extra: Vec<_> = in_tar.difference(&listed).collect();
            return Err(FormatError::ContentsMismatch(format!(
                "listed but not in software.tar: {missing:?}; in software.tar but not listed: {extra:?}"
            )));
        }
        let mut rpms = Vec::with_capacity(raw.rpms.len());
        for (file_name, path, size, sha256) in std::mem::take(&mut raw.rpms) {
            let info = PackageId::inspect(&path, &self.limits)?;
            info.check_file_name(&file_name)?;
            rpms.push(ExtractedRpm {
                file_name,
                path,
                size,
                sha256,
                info,
            });
        }
        rpms.sort_by(|a, b| a.file_name.cmp(&b.file_name));

        let semantics = extract_semantics(
            raw.semantics_tar.as_deref(),
            &metadata,
            dir.path(),
            &self.limits,
        )?;
        let restart_script = match &metadata.restart_script {
            None => None,
            Some(script) => {
                let data = raw.extra.remove(&script.name).ok_or_else(|| {
                    FormatError::Archive(format!(
                        "the restart script {} named in metadata.xml is not in the patch",
                        script.name
                    ))
                })?;
                if hex::encode(Sha256::digest(&data)) != script.sha256 {
                    return Err(FormatError::Archive(format!(
                        "the restart script {} does not match the sha256 in the signed metadata",
                        script.name
                    )));
                }
                let path = dir.path().join("restart-script");
                write_private(&path, &data, 0o700)?;
                Some(path)
            }
        };
        if let Some(spool) = &raw.software_spool {
            let _ = std::fs::remove_file(spool);
        }
        Ok(VerifiedPatch {
            metadata,
            signer,
            rpms,
            semantics,
            restart_script,
            md5_signature: md5.to_string(),
            dir,
        })
    }
}

/// What pass 1 collected.
#[derive(Default)]
struct RawPatch {
    metadata_tar: Option<Vec<u8>>,
    semantics_tar: Option<Vec<u8>>,
    signature: Option<String>,
    signature_v2: Option<Vec<u8>>,
    rpms: Vec<(String, PathBuf, u64, String)>,
    software_spool: Option<PathBuf>,
    extra: BTreeMap<String, Vec<u8>>,
    digests: Option<InnerDigests>,
    signed_in_order: bool,
    software_present: bool,
}

impl RawPatch {
    fn software_seen(&self) -> bool {
        self.software_present
    }
}

/// SHA-256 over metadata.tar, software.tar (from its spooled copy) and semantics.tar, for an
/// archive whose members were not in signing order.
fn rehash_in_order(
    metadata_tar: &[u8],
    software: Option<&Path>,
    semantics_tar: Option<&[u8]>,
) -> Result<[u8; 32], FormatError> {
    let mut sha = Sha256::new();
    sha.update(metadata_tar);
    if let Some(path) = software {
        let mut file = File::open(path).map_err(FormatError::io(path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(FormatError::io(path))?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
        }
    }
    if let Some(s) = semantics_tar {
        sha.update(s);
    }
    Ok(sha.finalize().into())
}

/// The one member `name` of a small in-memory tar.
fn single_member(
    tar: &[u8],
    archive: &str,
    name: &str,
    limits: &Limits,
) -> Result<Vec<u8>, FormatError> {
    let mut stream = TarStream::new(tar, archive, limits);
    let mut found = None;
    while let Some(member) = stream.next_member()? {
        if member.name != name || member.kind != MemberKind::File || found.is_some() {
            return Err(FormatError::UnsafeMember {
                archive: archive.into(),
                name: member.name,
                reason: format!("{archive} must hold exactly one member, {name}"),
            });
        }
        found = Some(stream.read_member_to_vec(&member, limits.max_xml_size)?);
    }
    found.ok_or_else(|| FormatError::Archive(format!("{archive} does not contain {name}")))
}

/// Extracts `pre-apply/<ID>` and `pre-remove/<ID>`; directory entries for the two action
/// folders are allowed, anything else is refused. The scripts must match `<semantics>`.
fn extract_semantics(
    tar: Option<&[u8]>,
    metadata: &PatchMetadata,
    dir: &Path,
    limits: &Limits,
) -> Result<BTreeMap<SemanticAction, PathBuf>, FormatError> {
    let mut found = BTreeMap::new();
    if let Some(tar) = tar {
        let mut stream = TarStream::new(tar, "semantics.tar", limits);
        while let Some(member) = stream.next_member()? {
            let name = member.name.trim_end_matches('/');
            let refuse = |reason: &str| FormatError::UnsafeMember {
                archive: "semantics.tar".into(),
                name: member.name.clone(),
                reason: reason.into(),
            };
            let action_of = |s: &str| SemanticAction::ALL.into_iter().find(|a| a.as_str() == s);
            match member.kind {
                MemberKind::Directory if action_of(name).is_some() => continue,
                MemberKind::Directory => return Err(refuse("unexpected directory")),
                MemberKind::File => {}
            }
            let Some((folder, id)) = name.split_once('/') else {
                return Err(refuse("expected pre-apply/<ID> or pre-remove/<ID>"));
            };
            let Some(action) = action_of(folder) else {
                return Err(refuse("expected pre-apply/<ID> or pre-remove/<ID>"));
            };
            if id != metadata.id {
                return Err(refuse("the script is for another patch ID"));
            }
            if found.contains_key(&action) {
                return Err(refuse("the script appears twice"));
            }
            let data = stream.read_member_to_vec(&member, MAX_SMALL_TAR)?;
            let path = dir.join(action.as_str());
            write_private(&path, &data, 0o700)?;
            found.insert(action, path);
        }
    }
    let have: BTreeSet<SemanticAction> = found.keys().copied().collect();
    if have != metadata.semantics {
        return Err(FormatError::Archive(format!(
            "metadata.xml <semantics> lists {:?} but semantics.tar holds {:?}",
            metadata.semantics, have
        )));
    }
    Ok(found)
}

fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), FormatError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(FormatError::io(path))?;
    file.write_all(data).map_err(FormatError::io(path))
}

/// Copies everything read into an optional second writer.
struct TeeReader<'w, R, W> {
    inner: R,
    copy: Option<&'w mut W>,
}

impl<R: Read, W: Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy {
            copy.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Writes through and hashes what was written.
struct HashingWriter<W> {
    inner: W,
    sha256: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The MD5 and SHA-256 of the signed members, computed on a second thread so that reading a
/// patch decompresses, hashes and extracts on two cores. Bytes are handed over in 256 KiB
/// batches; the order of members and bytes is kept.
struct DigestThread {
    tx: Option<std::sync::mpsc::SyncSender<DigestMessage>>,
    handle: Option<std::thread::JoinHandle<InnerDigests>>,
    pending: Vec<u8>,
}

enum DigestMessage {
    Member(&'static str),
    Data(Vec<u8>),
}

const DIGEST_BATCH: usize = 256 * 1024;

impl DigestThread {
    fn spawn() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<DigestMessage>(16);
        let handle = std::thread::spawn(move || {
            let mut digests = InnerDigests::new();
            for message in rx {
                match message {
                    DigestMessage::Member(name) => {
                        digests.member(name);
                    }
                    DigestMessage::Data(data) => {
                        digests.update(&data);
                    }
                }
            }
            digests
        });
        DigestThread {
            tx: Some(tx),
            handle: Some(handle),
            pending: Vec::with_capacity(DIGEST_BATCH),
        }
    }

    fn send(&mut self, message: DigestMessage) {
        if let Some(tx) = &self.tx {
            // The receiver only goes away if the thread died; finish() reports that.
            let _ = tx.send(message);
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let data = std::mem::replace(&mut self.pending, Vec::with_capacity(DIGEST_BATCH));
            self.send(DigestMessage::Data(data));
        }
    }

    fn member(&mut self, name: &'static str) {
        self.flush();
        self.send(DigestMessage::Member(name));
    }

    fn update(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= DIGEST_BATCH {
            self.flush();
        }
    }

    fn finish(mut self) -> Result<InnerDigests, FormatError> {
        self.flush();
        self.tx = None;
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .ok_or_else(|| FormatError::Archive("internal: the digest thread failed".into()))
    }
}

/// A reader that hands every byte it reads to a [`DigestThread`].
struct ThreadedDigestingReader<'a, R> {
    inner: R,
    digests: &'a mut DigestThread,
}

impl<R: Read> Read for ThreadedDigestingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digests.update(&buf[..n]);
        Ok(n)
    }
}
