//! Digests of the inner tars, computed while their bytes stream past.

use std::io::{self, Read, Write};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::Md5Combination;

/// Running digests over a patch's inner tars: one MD5 per member (for `signature`) and one
/// SHA-256 over all members concatenated in the order they are fed (for `signature.v2`).
///
/// Feed the members in signing order (`metadata.tar`, `software.tar`, `semantics.tar`).
#[derive(Clone, Default)]
pub struct InnerDigests {
    sha256: Sha256,
    done: Vec<MemberDigest>,
    current: Option<(String, Md5, u64)>,
}

/// The finished digest of one inner tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDigest {
    /// Member name, e.g. `software.tar`.
    pub name: String,
    /// MD5 of the member's bytes.
    pub md5: [u8; 16],
    /// Number of bytes hashed.
    pub len: u64,
}

/// The result of [`InnerDigests::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerDigestSums {
    /// Each member's MD5, in the order fed.
    pub members: Vec<MemberDigest>,
    /// SHA-256 over all members concatenated.
    pub sha256: [u8; 32],
}

impl InnerDigestSums {
    /// The md5 combination (`signature`) of these members.
    pub fn md5_combination(&self) -> Md5Combination {
        Md5Combination::from_md5s(self.members.iter().map(|m| &m.md5))
    }
}

impl InnerDigests {
    /// Empty digests, no member started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Finishes the current member (if any) and starts the next one.
    pub fn member(&mut self, name: &str) -> &mut Self {
        self.close_current();
        self.current = Some((name.to_owned(), Md5::new(), 0));
        self
    }

    /// Hashes bytes of the current member. Bytes fed before any [`member`](Self::member) call
    /// go into the SHA-256 only.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.sha256.update(data);
        if let Some((_, md5, len)) = &mut self.current {
            md5.update(data);
            *len += data.len() as u64;
        }
        self
    }

    /// Finishes the last member and returns every digest.
    pub fn finish(mut self) -> InnerDigestSums {
        self.close_current();
        InnerDigestSums {
            members: self.done,
            sha256: self.sha256.finalize().into(),
        }
    }

    fn close_current(&mut self) {
        if let Some((name, md5, len)) = self.current.take() {
            self.done.push(MemberDigest {
                name,
                md5: md5.finalize().into(),
                len,
            });
        }
    }
}

/// A writer that hashes every byte into an [`InnerDigests`] on its way to `inner`.
pub struct DigestingWriter<'a, W> {
    inner: W,
    digests: &'a mut InnerDigests,
    written: u64,
}

impl<'a, W: Write> DigestingWriter<'a, W> {
    /// Wraps `inner`; bytes are hashed as the current member of `digests`.
    pub fn new(inner: W, digests: &'a mut InnerDigests) -> Self {
        Self {
            inner,
            digests,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Returns the wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for DigestingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digests.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes every byte read from `inner` into an [`InnerDigests`].
pub struct DigestingReader<'a, R> {
    inner: R,
    digests: &'a mut InnerDigests,
    read: u64,
}

impl<'a, R: Read> DigestingReader<'a, R> {
    /// Wraps `inner`; bytes are hashed as the current member of `digests`.
    pub fn new(inner: R, digests: &'a mut InnerDigests) -> Self {
        Self {
            inner,
            digests,
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn read_so_far(&self) -> u64 {
        self.read
    }

    /// Reads and hashes whatever is left in `inner`; returns how many bytes that was.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<R: Read> Read for DigestingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digests.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// SHA-256 and length of everything `reader` yields, in one pass.
pub fn sha256_of(mut reader: impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, sha.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot() {
        let meta = b"metadata".repeat(1000);
        let soft = b"software".repeat(5000);
        let mut d = InnerDigests::new();
        {
            d.member("metadata.tar");
            let mut w = DigestingWriter::new(Vec::new(), &mut d);
            for chunk in meta.chunks(7) {
                w.write_all(chunk).unwrap();
            }
            assert_eq!(w.written(), meta.len() as u64);
        }
        d.member("software.tar");
        let mut r = DigestingReader::new(&soft[..], &mut d);
        let mut first = [0u8; 100];
        r.read_exact(&mut first).unwrap();
        r.drain().unwrap();
        let sums = d.finish();

        let mut both = meta.clone();
        both.extend_from_slice(&soft);
        assert_eq!(sums.sha256, <[u8; 32]>::from(Sha256::digest(&both)));
        assert_eq!(sums.members[0].md5, <[u8; 16]>::from(Md5::digest(&meta)));
        assert_eq!(sums.members[1].md5, <[u8; 16]>::from(Md5::digest(&soft)));
        assert_eq!(sums.members[1].len, soft.len() as u64);
        assert_eq!(sums.members[1].name, "software.tar");
    }
}
