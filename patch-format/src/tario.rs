//! Low-level tar pieces shared by the writer and reader: headers for bare-named members,
//! padding, sizes, and counting writers.

use std::io::{self, Write};

/// Tar block size.
pub(crate) const BLOCK: u64 = 512;
/// Python's `tarfile` (and GNU tar) pad every archive to a multiple of this record size.
pub(crate) const RECORD: u64 = 20 * BLOCK;

/// Rounds `n` up to a multiple of `to`.
pub(crate) fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// A GNU-format header for a regular file with a bare name (at most 100 bytes), as Python 2's
/// `tarfile` writes them: owner root, the given mode and mtime.
pub(crate) fn file_header(name: &str, size: u64, mode: u32, mtime: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("root")?;
    header.set_groupname("root")?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

/// The bytes a `tar::Builder` spends on headers (including GNU long-name records) for a member
/// called `name`, found by appending an empty member to a counting sink. Used to know
/// `software.tar`'s size before streaming it.
pub(crate) fn header_overhead(name: &str, mode: u32, mtime: u64) -> io::Result<u64> {
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    let mut counter = CountingWriter::new(io::sink());
    {
        let mut builder = tar::Builder::new(&mut counter);
        builder.mode(tar::HeaderMode::Complete);
        builder.append_data(&mut header, name, io::empty())?;
        // Do not write the end-of-archive blocks into the count.
        let _ = builder.into_inner();
    }
    // into_inner() finishes the archive (1024 bytes); take them back off.
    Ok(counter.count() - 2 * BLOCK)
}

/// Writes `len` zero bytes.
pub(crate) fn write_zeros(w: &mut impl Write, len: u64) -> io::Result<()> {
    io::copy(&mut io::Read::take(io::repeat(0), len), w).map(|_| ())
}

/// A writer that counts the bytes passing through.
pub(crate) struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a whole tar member (header, data, padding) with a bare name.
pub(crate) fn write_member(
    w: &mut impl Write,
    name: &str,
    data: &[u8],
    mode: u32,
    mtime: u64,
) -> io::Result<()> {
    let header = file_header(name, data.len() as u64, mode, mtime)?;
    w.write_all(header.as_bytes())?;
    w.write_all(data)?;
    write_zeros(w, round_up(data.len() as u64, BLOCK) - data.len() as u64)
}

/// Ends an archive of `written` bytes: two zero blocks, then zero padding to a full record.
pub(crate) fn finish_archive(w: &mut impl Write, written: u64) -> io::Result<u64> {
    let end = round_up(written + 2 * BLOCK, RECORD);
    write_zeros(w, end - written)?;
    Ok(end)
}

/// Builds a small in-memory tar (metadata.tar, semantics.tar) of bare-named members.
pub(crate) fn small_tar(members: &[(&str, &[u8], u32)], mtime: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (name, data, mode) in members {
        write_member(&mut out, name, data, *mode, mtime)?;
    }
    let written = out.len() as u64;
    finish_archive(&mut out, written)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_one_block_or_a_long_name_record() {
        assert_eq!(header_overhead("a-1-1.x86_64.rpm", 0o644, 0).unwrap(), 512);
        let long = format!("{}-1-1.x86_64.rpm", "n".repeat(120));
        // GNU ././@LongLink header + the name (NUL-terminated) padded + the real header.
        assert_eq!(header_overhead(&long, 0o644, 0).unwrap(), 512 + 512 + 512);
    }

    #[test]
    fn small_tar_is_readable_and_record_padded() {
        let tar = small_tar(&[("metadata.xml", b"<patch/>", 0o644)], 1_600_000_000).unwrap();
        assert_eq!(tar.len() as u64 % RECORD, 0);
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["metadata.xml"]);
    }
}
