//! A blocking reader fed by the async side: how a streamed request body reaches code that
//! reads (verifies, hashes, stages) on a blocking thread.

/// A blocking `Read` over chunks arriving on a channel from the async side.
pub(crate) struct ChannelReader {
    pub(crate) rx: tokio::sync::mpsc::Receiver<std::io::Result<axum::body::Bytes>>,
    pub(crate) current: axum::body::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
