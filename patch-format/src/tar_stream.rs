//! A strict, bounded, streaming tar reader for untrusted archives.
//!
//! The `tar` crate's `Archive` reads GNU long-name and PAX records whole into memory and accepts
//! every entry type; a patch needs less and must bound everything, so this reader walks headers
//! itself (using `tar::Header` only to decode fields): regular files and directories only,
//! long-name and PAX records capped, checksums verified, sizes and counts limited.

use std::io::{self, Read};

use crate::tario::{BLOCK, round_up};
use crate::{FormatError, Limits};

/// Largest GNU long-name record accepted.
const MAX_LONG_NAME: u64 = 4096;
/// Largest PAX extended header accepted.
const MAX_PAX: u64 = 64 * 1024;

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemberKind {
    File,
    Directory,
}

/// One member's header, decoded.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) kind: MemberKind,
}

/// Walks the members of a tar stream; reading from it reads the current member's data.
pub(crate) struct TarStream<R> {
    inner: R,
    archive: String,
    limits: Limits,
    members: usize,
    /// Data bytes of the current member not yet read.
    remaining: u64,
    /// Padding after the current member's data.
    padding: u64,
    ended: bool,
}

impl<R: Read> TarStream<R> {
    pub(crate) fn new(inner: R, archive: impl Into<String>, limits: &Limits) -> Self {
        Self {
            inner,
            archive: archive.into(),
            limits: limits.clone(),
            members: 0,
            remaining: 0,
            padding: 0,
            ended: false,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> FormatError {
        FormatError::Archive(format!(
            "{} is not a valid tar archive: {what}",
            self.archive
        ))
    }

    fn unsafe_member(&self, name: &str, reason: impl Into<String>) -> FormatError {
        FormatError::UnsafeMember {
            archive: self.archive.clone(),
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    fn read_err(&self) -> impl FnOnce(io::Error) -> FormatError {
        FormatError::stream(format!("reading {}", self.archive))
    }

    /// Skips whatever is left of the current member.
    fn skip_current(&mut self) -> Result<(), FormatError> {
        let left = self.remaining + self.padding;
        if left > 0 {
            let skipped = io::copy(&mut (&mut self.inner).take(left), &mut io::sink())
                .map_err(self.read_err())?;
            if skipped != left {
                return Err(self.corrupt("truncated member data"));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    /// Reads a whole small record (long name, PAX header) of `size` bytes plus padding.
    fn read_record(&mut self, size: u64, max: u64, what: &str) -> Result<Vec<u8>, FormatError> {
        if size > max {
            return Err(self.corrupt(format!("{what} record of {size} bytes (limit {max})")));
        }
        let mut data = vec![0u8; size as usize];
        self.inner
            .read_exact(&mut data)
            .map_err(|_| self.corrupt(format!("truncated {what} record")))?;
        let pad = round_up(size, BLOCK) - size;
        io::copy(&mut (&mut self.inner).take(pad), &mut io::sink()).map_err(self.read_err())?;
        Ok(data)
    }

    /// The next member, or `None` at the end-of-archive block (or a clean end of input).
    pub(crate) fn next_member(&mut self) -> Result<Option<Member>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_current()?;
        let mut long_name: Option<String> = None;
        let mut pax_path: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        loop {
            let mut block = [0u8; BLOCK as usize];
            let got = read_full(&mut self.inner, &mut block).map_err(self.read_err())?;
            if got == 0 && long_name.is_none() && pax_path.is_none() {
                // Input ended at a member boundary without end blocks: Python's tarfile
                // accepts this too.
                self.ended = true;
                return Ok(None);
            }
            if got < block.len() {
                return Err(self.corrupt("truncated header"));
            }
            if block.iter().all(|&b| b == 0) {
                self.ended = true;
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block);
            verify_checksum(&block).map_err(|e| self.corrupt(e))?;
            let size = header
                .entry_size()
                .map_err(|e| self.corrupt(format!("bad size field: {e}")))?;
            let entry_type = header.entry_type();
            if entry_type.is_gnu_longname() {
                let mut name = self.read_record(size, MAX_LONG_NAME, "long name")?;
                while name.last() == Some(&0) {
                    name.pop();
                }
                long_name = Some(
                    String::from_utf8(name).map_err(|_| self.corrupt("long name is not UTF-8"))?,
                );
                continue;
            }
            if entry_type.is_pax_local_extensions() {
                let record = self.read_record(size, MAX_PAX, "PAX header")?;
                for (key, value) in parse_pax(&record).map_err(|e| self.corrupt(e))? {
                    match key.as_str() {
                        "path" => pax_path = Some(value),
                        "size" => {
                            pax_size =
                                Some(value.parse().map_err(|_| self.corrupt("bad PAX size"))?)
                        }
                        _ => {}
                    }
                }
                continue;
            }
            if entry_type.is_pax_global_extensions() {
                self.read_record(size, MAX_PAX, "PAX global header")?;
                continue;
            }

            let name = match pax_path.take().or(long_name.take()) {
                Some(n) => n,
                None => String::from_utf8(header.path_bytes().into_owned())
                    .map_err(|_| self.corrupt("member name is not UTF-8"))?,
            };
            let size = pax_size.take().unwrap_or(size);
            let kind = if entry_type.is_file() || entry_type == tar::EntryType::Continuous {
                MemberKind::File
            } else if entry_type.is_dir() {
                MemberKind::Directory
            } else {
                return Err(self.unsafe_member(
                    &name,
                    format!(
                        "entry type {:?} (links, devices and other special entries are not allowed)",
                        entry_type
                    ),
                ));
            };
            self.members += 1;
            if self.members > self.limits.max_members {
                return Err(FormatError::LimitExceeded(format!(
                    "{} has more than {} members",
                    self.archive, self.limits.max_members
                )));
            }
            // Declared sizes are checked here, at the header, before a byte is read: no
            // member can be larger than the whole patch may decompress to.
            let max_size = self.limits.max_member_size.min(self.limits.max_total_size);
            if size > max_size {
                return Err(FormatError::LimitExceeded(format!(
                    "member {name} of {} is {size} bytes (limit {max_size})",
                    self.archive
                )));
            }
            if kind == MemberKind::Directory && size != 0 {
                return Err(self.corrupt(format!("directory {name} has a size")));
            }
            self.remaining = size;
            self.padding = round_up(size, BLOCK) - size;
            return Ok(Some(Member { name, size, kind }));
        }
    }

    /// Reads the current member whole into memory, refusing more than `max` bytes.
    pub(crate) fn read_member_to_vec(
        &mut self,
        member: &Member,
        max: u64,
    ) -> Result<Vec<u8>, FormatError> {
        if member.size > max {
            return Err(FormatError::LimitExceeded(format!(
                "{} in {} is {} bytes (limit {max})",
                member.name, self.archive, member.size
            )));
        }
        let mut data = Vec::with_capacity(member.size as usize);
        self.read_to_end(&mut data).map_err(self.read_err())?;
        if data.len() as u64 != member.size {
            return Err(self.corrupt(format!("{} is truncated", member.name)));
        }
        Ok(data)
    }
}

impl<R: Read> Read for TarStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends in the middle of a member", self.archive),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Checks a header's checksum (unsigned sum, checksum field counted as spaces; the historic
/// signed sum is accepted too, as GNU tar does).
fn verify_checksum(block: &[u8]) -> Result<(), String> {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let stored =
        u32::from_str_radix(text.trim(), 8).map_err(|_| "bad checksum field".to_owned())?;
    let unsigned: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    let signed: i32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i32::from(b as i8)
            }
        })
        .sum();
    if stored == unsigned || stored as i32 == signed {
        Ok(())
    } else {
        Err("header checksum mismatch".to_owned())
    }
}

/// Parses PAX records: `"<len> <key>=<value>\n"`.
fn parse_pax(mut data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("bad PAX record")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad PAX record length")?;
        if len <= space + 1 || len > data.len() {
            return Err("bad PAX record length".into());
        }
        let record = &data[space + 1..len];
        let record = record
            .strip_suffix(b"\n")
            .ok_or("PAX record without newline")?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without '='")?;
        let key = String::from_utf8(record[..eq].to_vec()).map_err(|_| "PAX key not UTF-8")?;
        let value =
            String::from_utf8(record[eq + 1..].to_vec()).map_err(|_| "PAX value not UTF-8")?;
        out.push((key, value));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(data: &[u8]) -> Result<Vec<(String, u64, MemberKind)>, FormatError> {
        let mut s = TarStream::new(data, "test.tar", &Limits::default());
        let mut out = Vec::new();
        while let Some(m) = s.next_member()? {
            out.push((m.name, m.size, m.kind));
        }
        Ok(out)
    }

    #[test]
    fn reads_gnu_pax_and_long_names() {
        let long = format!("{}.rpm", "x".repeat(150));
        let mut gnu = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        gnu.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        gnu.append_data(&mut h, "pre-apply", io::empty()).unwrap();
        let gnu = gnu.into_inner().unwrap();
        assert_eq!(
            names(&gnu).unwrap(),
            vec![
                (long.clone(), 3, MemberKind::File),
                ("pre-apply".into(), 0, MemberKind::Directory)
            ]
        );

        // PAX path record, as Python 3's default format writes for long names.
        let mut pax = Vec::new();
        let rec = format!(" path={long}\n");
        let len = rec.len() + (rec.len() + 4).to_string().len();
        let rec = format!("{len}{rec}");
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeader").unwrap();
        h.set_size(rec.len() as u64);
        h.set_cksum();
        pax.extend_from_slice(h.as_bytes());
        pax.extend_from_slice(rec.as_bytes());
        pax.resize(round_up(pax.len() as u64, 512) as usize, 0);
        let mut h = tar::Header::new_ustar();
        h.set_path("short").unwrap();
        h.set_size(2);
        h.set_cksum();
        pax.extend_from_slice(h.as_bytes());
        pax.extend_from_slice(b"hi");
        pax.resize(round_up(pax.len() as u64, 512) as usize + 1024, 0);
        assert_eq!(names(&pax).unwrap(), vec![(long, 2, MemberKind::File)]);
    }

    #[test]
    fn refuses_links_bad_checksums_and_truncation() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "evil", "/etc/passwd").unwrap();
        let link = b.into_inner().unwrap();
        assert!(matches!(
            names(&link),
            Err(FormatError::UnsafeMember { .. })
        ));

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        b.append_data(&mut h, "f", &[7u8; 1000][..]).unwrap();
        let good = b.into_inner().unwrap();
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert!(names(&bad).is_err());
        let mut s = TarStream::new(&good[..700], "t", &Limits::default());
        s.next_member().unwrap().unwrap();
        assert!(s.next_member().is_err(), "truncated data must be noticed");

        let limits = Limits {
            max_member_size: 999,
            ..Limits::default()
        };
        let mut s = TarStream::new(&good[..], "t", &limits);
        assert!(matches!(
            s.next_member(),
            Err(FormatError::LimitExceeded(_))
        ));
    }
}
