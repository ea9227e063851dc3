//! Builds a signed `.patch` in one streaming pass.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use gzp::deflate::Gzip;
use gzp::{Compression, ZBuilder, ZWriter};
use patch_sign::{DigestingWriter, InnerDigests, PrivateKey, sign_v2};
use sha2::{Digest, Sha256};

use crate::metadata::validate_member_name;
use crate::tario::{
    BLOCK, CountingWriter, file_header, finish_archive, header_overhead, round_up, small_tar,
    write_member, write_zeros,
};
use crate::{
    FormatError, Limits, PackageId, PatchMetadata, Personality, RestartScript, SemanticAction,
};

/// Largest semantic or restart script accepted (they are small shell scripts, held in memory).
const MAX_SCRIPT_SIZE: u64 = 1 << 20;

/// One RPM to carry in `software.tar`.
#[derive(Clone, Debug)]
struct RpmSource {
    path: PathBuf,
    member: String,
    size: u64,
}

/// What [`PatchBuilder::write`] produced.
#[derive(Clone, Debug)]
pub struct BuildSummary {
    /// The metadata as written (with `contents` and personalities filled in).
    pub metadata: PatchMetadata,
    /// Bytes of the compressed `.patch`.
    pub compressed_size: u64,
    /// Bytes of the outer tar before compression.
    pub archive_size: u64,
    /// SHA-256 of the inner tars (what `signature.v2` signs), hex.
    pub inner_sha256: String,
    /// The md5 combination written to `signature`.
    pub md5_signature: String,
    /// Fingerprint of the signing key.
    pub signer: String,
}

/// Assembles a patch: metadata plus RPMs, semantic scripts and an optional restart script.
///
/// ```no_run
/// use patch_format::{PatchBuilder, PatchMetadata, Personality};
/// use patch_sign::PrivateKey;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = PrivateKey::from_pem_file("dev-private-key.pem".as_ref())?;
/// let mut builder = PatchBuilder::new(PatchMetadata::new("STX_19.01_PATCH_0001", "19.01"));
/// builder.add_rpm("sysinv-1.0-231.tis.x86_64.rpm".as_ref(), &[])?;
/// builder.add_rpm("newpkg-1.0-1.tis.x86_64.rpm".as_ref(), &Personality::ALL)?;
/// let (path, _summary) = builder.write_to_dir(".".as_ref(), &key)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PatchBuilder {
    metadata: PatchMetadata,
    rpms: Vec<RpmSource>,
    semantics: BTreeMap<SemanticAction, Vec<u8>>,
    restart_script: Option<Vec<u8>>,
    threads: usize,
    mtime: u64,
    limits: Limits,
}

impl PatchBuilder {
    /// Starts a patch from its metadata. `contents` and `semantics` are filled in by
    /// [`add_rpm`](Self::add_rpm) and [`semantic_script`](Self::semantic_script); personality
    /// lists given here are kept and extended.
    pub fn new(mut metadata: PatchMetadata) -> Self {
        metadata.contents.clear();
        metadata.semantics.clear();
        metadata.restart_script = None;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SOURCE_DATE_EPOCH makes builds reproducible (apart from the PSS salt).
        let mtime = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
        PatchBuilder {
            metadata,
            rpms: Vec::new(),
            semantics: BTreeMap::new(),
            restart_script: None,
            threads,
            mtime,
            limits: Limits::default(),
        }
    }

    /// Compression threads (default: all CPUs). 1 compresses on the calling thread.
    pub fn threads(&mut self, threads: usize) -> &mut Self {
        self.threads = threads.max(1);
        self
    }

    /// Timestamp written into every tar header (default: `SOURCE_DATE_EPOCH` or now).
    pub fn mtime(&mut self, mtime: u64) -> &mut Self {
        self.mtime = mtime;
        self
    }

    /// Adds an RPM. Its header is read (not its payload) to check that the file name states the
    /// package inside; the package name is added to the personality list of each node type in
    /// `personalities` (empty: an upgrade of an already installed package).
    pub fn add_rpm(
        &mut self,
        path: &Path,
        personalities: &[Personality],
    ) -> Result<&mut Self, FormatError> {
        let member = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| FormatError::Rpm {
                file: path.display().to_string(),
                reason: "the file name is not valid UTF-8".into(),
            })?
            .to_owned();
        crate::validate_rpm_file_name(&member).map_err(|reason| FormatError::Rpm {
            file: member.clone(),
            reason: reason.to_string(),
        })?;
        let size = std::fs::metadata(path)
            .map_err(FormatError::io(path))?
            .len();
        let info = PackageId::inspect(path, &self.limits)?;
        info.check_file_name(&member)?;
        if let Some(existing) = self.rpms.iter().find(|r| r.member == member) {
            if existing.path != path {
                return Err(FormatError::InvalidPatch(format!(
                    "two different files are both named {member}: {} and {}",
                    existing.path.display(),
                    path.display()
                )));
            }
        } else {
            self.rpms.push(RpmSource {
                path: path.to_owned(),
                member: member.clone(),
                size,
            });
            self.metadata.contents.insert(member);
        }
        for personality in personalities {
            self.metadata
                .personalities
                .entry(*personality)
                .or_default()
                .insert(info.name.clone());
        }
        Ok(self)
    }

    /// Carries a `pre-apply` or `pre-remove` semantic check script (in `semantics.tar`).
    pub fn semantic_script(
        &mut self,
        action: SemanticAction,
        path: &Path,
    ) -> Result<&mut Self, FormatError> {
        let script = read_script(path)?;
        self.semantics.insert(action, script);
        self.metadata.semantics.insert(action);
        Ok(self)
    }

    /// Carries an in-service restart script as the outer member `<PATCH_ID>_<basename>`.
    pub fn restart_script(&mut self, path: &Path) -> Result<&mut Self, FormatError> {
        let base = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            FormatError::InvalidPatch(format!("bad script name {}", path.display()))
        })?;
        let name = format!("{}_{base}", self.metadata.id);
        self.restart_script_named(&name, path)
    }

    /// Carries an in-service restart script under an explicit member name (used when
    /// re-signing an existing patch, to keep its name).
    pub fn restart_script_named(
        &mut self,
        name: &str,
        path: &Path,
    ) -> Result<&mut Self, FormatError> {
        let script = read_script(path)?;
        let name = name.to_owned();
        if name.len() > 100 {
            return Err(FormatError::InvalidPatch(format!(
                "restart script member name {name} is longer than 100 bytes: shorten the script name"
            )));
        }
        validate_member_name(&name).map_err(|e| FormatError::InvalidPatch(e.to_string()))?;
        self.metadata.restart_script = Some(RestartScript {
            name,
            sha256: hex::encode(Sha256::digest(&script)),
        });
        self.restart_script = Some(script);
        Ok(self)
    }

    /// The metadata as it will be written.
    pub fn metadata(&self) -> &PatchMetadata {
        &self.metadata
    }

    fn check(&self) -> Result<(), FormatError> {
        if self.rpms.is_empty() {
            return Err(FormatError::InvalidPatch(
                "Cannot generate empty patch".into(),
            ));
        }
        if self.metadata.sw_version.is_empty() {
            return Err(FormatError::InvalidPatch(
                "The release version must be specified in the sw_version field".into(),
            ));
        }
        self.metadata.validate()?;
        if self.metadata.requires.contains(&self.metadata.id) {
            return Err(FormatError::InvalidPatch(format!(
                "{} cannot require itself",
                self.metadata.id
            )));
        }
        Ok(())
    }

    /// Writes `<dir>/<id>.patch` crash-safely (temporary file, fsync, rename, directory fsync)
    /// and returns its path.
    pub fn write_to_dir(
        &self,
        dir: &Path,
        key: &PrivateKey,
    ) -> Result<(PathBuf, BuildSummary), FormatError> {
        let target = dir.join(format!("{}.patch", self.metadata.id));
        let summary = self.write_to_path(&target, key)?;
        Ok((target, summary))
    }

    /// Writes the patch to `target` crash-safely: a temporary file in the same directory,
    /// fsync, rename over `target`, directory fsync. A crash leaves the old file or the new one.
    pub fn write_to_path(
        &self,
        target: &Path,
        key: &PrivateKey,
    ) -> Result<BuildSummary, FormatError> {
        self.check()?;
        // The patch appears whole at `target` or not at all; a format error keeps its type.
        let mut failure = None;
        let written = durable_fs::write_with(target, |file| {
            let out = file.try_clone()?;
            match self.write(out, key) {
                Ok((_, summary)) => Ok(summary),
                Err(e) => {
                    let message = e.to_string();
                    failure = Some(e);
                    Err(std::io::Error::other(message))
                }
            }
        });
        match (written, failure) {
            (_, Some(e)) => Err(e),
            (Ok(summary), None) => Ok(summary),
            (Err(e), None) => Err(FormatError::io(e.path)(e.source)),
        }
    }

    /// Streams the patch into `out`: `metadata.tar`, `software.tar`, optional `semantics.tar`,
    /// optional restart script, `signature`, `signature.v2`, gzip level 9. Every RPM is read
    /// exactly once; both signatures are computed on the way. Returns `out` once finished.
    pub fn write<W: Write + Send + 'static>(
        &self,
        out: W,
        key: &PrivateKey,
    ) -> Result<(W, BuildSummary), FormatError> {
        self.check()?;
        let mtime = self.mtime;
        let xml = crate::metadata_xml(&self.metadata);
        let metadata_tar = small_tar(&[("metadata.xml", xml.as_bytes(), 0o644)], mtime)
            .map_err(FormatError::stream("building metadata.tar"))?;
        let semantics_tar = if self.semantics.is_empty() {
            None
        } else {
            let names: Vec<String> = self
                .semantics
                .keys()
                .map(|a| format!("{}/{}", a.as_str(), self.metadata.id))
                .collect();
            let members: Vec<(&str, &[u8], u32)> = names
                .iter()
                .zip(self.semantics.values())
                .map(|(n, s)| (n.as_str(), s.as_slice(), 0o755))
                .collect();
            Some(
                small_tar(&members, mtime)
                    .map_err(FormatError::stream("building semantics.tar"))?,
            )
        };
        let software_size = self.software_tar_size()?;

        let counted = CountingWriter::new(BufWriter::with_capacity(1 << 20, out));
        let mut gz: Box<dyn ZWriter<CountingWriter<BufWriter<W>>>> = ZBuilder::<Gzip, _>::new()
            .num_threads(self.threads)
            .compression_level(Compression::new(9))
            .from_writer(counted);
        let mut outer = CountingWriter::new(&mut gz);
        let mut digests = InnerDigests::new();
        let stream_err = FormatError::stream;

        // metadata.tar
        digests.member("metadata.tar");
        write_outer_member(
            &mut outer,
            &mut digests,
            "metadata.tar",
            &metadata_tar,
            mtime,
        )
        .map_err(stream_err("writing metadata.tar"))?;

        // software.tar, streamed from the RPM files.
        digests.member("software.tar");
        let header = file_header("software.tar", software_size, 0o644, mtime)
            .map_err(stream_err("writing software.tar"))?;
        outer
            .write_all(header.as_bytes())
            .map_err(stream_err("writing software.tar"))?;
        let written = self.stream_software_tar(&mut outer, &mut digests)?;
        if written != software_size {
            return Err(FormatError::InvalidPatch(format!(
                "software.tar came out {written} bytes, expected {software_size}: an RPM changed \
                 while the patch was being built"
            )));
        }
        write_zeros(&mut outer, round_up(written, BLOCK) - written)
            .map_err(stream_err("writing software.tar"))?;

        if let Some(semantics_tar) = &semantics_tar {
            digests.member("semantics.tar");
            write_outer_member(
                &mut outer,
                &mut digests,
                "semantics.tar",
                semantics_tar,
                mtime,
            )
            .map_err(stream_err("writing semantics.tar"))?;
        }
        let sums = digests.finish();

        if let (Some(script), Some(meta)) = (&self.restart_script, &self.metadata.restart_script) {
            write_member(&mut outer, &meta.name, script, 0o755, mtime)
                .map_err(stream_err("writing the restart script"))?;
        }
        let md5_signature = sums.md5_combination().to_string();
        write_member(
            &mut outer,
            "signature",
            md5_signature.as_bytes(),
            0o644,
            mtime,
        )
        .map_err(stream_err("writing signature"))?;
        let v2 = sign_v2(key, &sums.sha256)?;
        write_member(&mut outer, "signature.v2", &v2, 0o644, mtime)
            .map_err(stream_err("writing signature.v2"))?;
        let written = outer.count();
        let archive_size =
            finish_archive(&mut outer, written).map_err(stream_err("finishing the archive"))?;
        let counted = gz
            .finish()
            .map_err(|e| FormatError::stream("compressing")(io::Error::other(e.to_string())))?;
        let compressed_size = counted.count();
        let out = counted
            .into_inner()
            .into_inner()
            .map_err(|e| FormatError::stream("flushing the patch")(e.into_error()))?;
        Ok((
            out,
            BuildSummary {
                metadata: self.metadata.clone(),
                compressed_size,
                archive_size,
                inner_sha256: hex::encode(sums.sha256),
                md5_signature,
                signer: key.public_key().fingerprint().to_owned(),
            },
        ))
    }

    /// Members are written sorted by name, so the archive does not depend on argument order.
    fn sorted_rpms(&self) -> Vec<&RpmSource> {
        let mut rpms: Vec<&RpmSource> = self.rpms.iter().collect();
        rpms.sort_by(|a, b| a.member.cmp(&b.member));
        rpms
    }

    fn software_tar_size(&self) -> Result<u64, FormatError> {
        let mut size = 0;
        for rpm in self.sorted_rpms() {
            size += header_overhead(&rpm.member, 0o644, self.mtime)
                .map_err(FormatError::stream(format!("sizing {}", rpm.member)))?;
            size += round_up(rpm.size, BLOCK);
        }
        Ok(round_up(size + 2 * BLOCK, crate::tario::RECORD))
    }

    fn stream_software_tar(
        &self,
        outer: &mut impl Write,
        digests: &mut InnerDigests,
    ) -> Result<u64, FormatError> {
        let mut inner = CountingWriter::new(DigestingWriter::new(outer, digests));
        {
            let mut tar = tar::Builder::new(&mut inner);
            for rpm in self.sorted_rpms() {
                let file = File::open(&rpm.path).map_err(FormatError::io(&rpm.path))?;
                let mut header = tar::Header::new_gnu();
                header.set_size(rpm.size);
                header.set_mode(0o644);
                header.set_mtime(self.mtime);
                header.set_entry_type(tar::EntryType::Regular);
                let mut exact = ExactReader::new(file, rpm.size);
                tar.append_data(&mut header, &rpm.member, &mut exact)
                    .map_err(FormatError::stream(format!("adding {}", rpm.member)))?;
                if !exact.complete() {
                    return Err(FormatError::InvalidPatch(format!(
                        "{} changed size while the patch was being built",
                        rpm.path.display()
                    )));
                }
            }
            tar.finish()
                .map_err(FormatError::stream("finishing software.tar"))?;
        }
        let written = inner.count();
        let end = round_up(written, crate::tario::RECORD);
        write_zeros(&mut inner, end - written)
            .map_err(FormatError::stream("padding software.tar"))?;
        Ok(inner.count())
    }
}

fn write_outer_member(
    outer: &mut impl Write,
    digests: &mut InnerDigests,
    name: &str,
    data: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let header = file_header(name, data.len() as u64, 0o644, mtime)?;
    outer.write_all(header.as_bytes())?;
    DigestingWriter::new(&mut *outer, digests).write_all(data)?;
    write_zeros(
        outer,
        round_up(data.len() as u64, BLOCK) - data.len() as u64,
    )
}

/// Reads exactly `len` bytes of a file (never more, so a file growing under us cannot corrupt
/// the tar) and records whether all of them were there.
struct ExactReader {
    inner: io::Take<File>,
    len: u64,
    read: u64,
}

impl ExactReader {
    fn new(file: File, len: u64) -> Self {
        Self {
            inner: file.take(len),
            len,
            read: 0,
        }
    }

    fn complete(&self) -> bool {
        self.read == self.len
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn read_script(path: &Path) -> Result<Vec<u8>, FormatError> {
    let size = std::fs::metadata(path)
        .map_err(FormatError::io(path))?
        .len();
    if size > MAX_SCRIPT_SIZE {
        return Err(FormatError::InvalidPatch(format!(
            "script {} is larger than {MAX_SCRIPT_SIZE} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(FormatError::io(path))
}
