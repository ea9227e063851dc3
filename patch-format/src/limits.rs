//! Bounds on untrusted archives.

use std::io::{self, Read};

/// Limits applied while reading an untrusted patch. The defaults suit real patches (the largest
/// StarlingX patches are a few GiB of RPMs) while refusing gzip bombs and absurd archives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most members in the outer archive or in any inner tar.
    pub max_members: usize,
    /// Largest single member (outer or inner), in bytes.
    pub max_member_size: u64,
    /// Most bytes decompressed from the outer gzip stream in total.
    pub max_total_size: u64,
    /// Largest `metadata.xml`, and largest `signature` / `signature.v2` member.
    pub max_xml_size: u64,
    /// Largest RPM header area (lead + signature header + header) read when inspecting an RPM.
    pub max_rpm_header_size: u64,
    /// Most decompressed bytes per compressed byte read, once `expansion_allowance` bytes
    /// have been decompressed. RPM payloads are compressed already, so a real patch expands
    /// about 1:1 (text-only RPMs with uncompressed payloads perhaps 10:1); a gzip bomb
    /// expands about 1000:1 and is refused within the allowance, before it costs time or disk.
    pub max_expansion_ratio: u64,
    /// Decompressed bytes always allowed, whatever the ratio.
    pub expansion_allowance: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_members: 10_000,
            max_member_size: 8 << 30,
            max_total_size: 16 << 30,
            max_xml_size: 4 << 20,
            max_rpm_header_size: 64 << 20,
            max_expansion_ratio: 50,
            expansion_allowance: 64 << 20,
        }
    }
}

impl Limits {
    /// These limits for a patch known to be `compressed_len` bytes long (a file's size, an
    /// upload's Content-Length): it cannot decompress to more than the expansion guard allows
    /// for that many bytes, so a member declaring more is refused at its header, before
    /// anything is decompressed or written.
    pub fn for_compressed_size(mut self, compressed_len: u64) -> Limits {
        let expandable = self
            .expansion_allowance
            .saturating_add(self.max_expansion_ratio.saturating_mul(compressed_len));
        self.max_total_size = self.max_total_size.min(expandable);
        self
    }
}

/// The error carried inside an `io::Error` when a [`LimitedReader`] runs past its bound.
#[derive(Debug)]
pub(crate) struct LimitError(pub String);

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitError {}

/// A reader that fails (rather than silently truncating, as `Read::take` does) once more than
/// `limit` bytes have come through.
pub(crate) struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    what: &'static str,
    limit: u64,
}

impl<R: Read> LimitedReader<R> {
    pub(crate) fn new(inner: R, limit: u64, what: &'static str) -> Self {
        Self {
            inner,
            remaining: limit,
            what,
            limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Read one byte past the limit so that exactly-at-limit input still succeeds.
        let want = buf
            .len()
            .min(self.remaining.saturating_add(1).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LimitError(format!("{} is larger than {} bytes", self.what, self.limit)),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Counts the bytes read through it, for an [`ExpansionGuard`] on the far side of a
/// decompressor.
pub(crate) struct Counted<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R> Counted<R> {
    pub(crate) fn new(inner: R) -> (Self, std::rc::Rc<std::cell::Cell<u64>>) {
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        (
            Counted {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl<R: io::BufRead> io::BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.count.set(self.count.get() + amount as u64);
        self.inner.consume(amount);
    }
}

/// Fails once the decompressed bytes exceed `allowance + ratio × compressed bytes read`: a
/// gzip bomb stops within the allowance instead of after its full size.
pub(crate) struct ExpansionGuard<R> {
    inner: R,
    compressed: std::rc::Rc<std::cell::Cell<u64>>,
    decompressed: u64,
    ratio: u64,
    allowance: u64,
}

impl<R> ExpansionGuard<R> {
    pub(crate) fn new(
        inner: R,
        compressed: std::rc::Rc<std::cell::Cell<u64>>,
        limits: &Limits,
    ) -> Self {
        ExpansionGuard {
            inner,
            compressed,
            decompressed: 0,
            ratio: limits.max_expansion_ratio,
            allowance: limits.expansion_allowance,
        }
    }
}

impl<R: Read> Read for ExpansionGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.decompressed += n as u64;
        let allowed = self
            .allowance
            .saturating_add(self.ratio.saturating_mul(self.compressed.get()));
        if self.decompressed > allowed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LimitError(format!(
                    "the patch expands more than {}:1 ({} bytes from {} compressed): a real patch's RPMs are compressed already; this looks like a decompression bomb",
                    self.ratio,
                    self.decompressed,
                    self.compressed.get()
                )),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_limit_passes_one_more_byte_fails() {
        let data = [1u8; 100];
        let mut ok = LimitedReader::new(&data[..], 100, "x");
        assert_eq!(io::copy(&mut ok, &mut io::sink()).unwrap(), 100);
        let mut over = LimitedReader::new(&data[..], 99, "x");
        let err = io::copy(&mut over, &mut io::sink()).unwrap_err();
        assert!(
            err.get_ref()
                .unwrap()
                .downcast_ref::<LimitError>()
                .is_some()
        );
    }
}
