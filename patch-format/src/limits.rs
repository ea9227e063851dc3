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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_members: 10_000,
            max_member_size: 8 << 30,
            max_total_size: 16 << 30,
            max_xml_size: 4 << 20,
            max_rpm_header_size: 64 << 20,
        }
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
