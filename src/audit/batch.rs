//! The bytes waiting to be written and the records they hold. A write that fails or
//! stops part-way leaves exactly the unwritten bytes, so a retry neither loses nor
//! repeats a line.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};

use tokio::sync::OwnedSemaphorePermit;

/// Lines queued for one target, in order.
#[derive(Debug, Default)]
pub(super) struct Batch {
    bytes: Vec<u8>,
    lines: VecDeque<Line>,
    /// Bytes of the first line that already reached the target (a write stopped mid-line).
    written: usize,
}

#[derive(Debug)]
struct Line {
    /// With its newline.
    len: usize,
    /// The record's place in the queue, given back only once the line is written: a
    /// target that keeps failing then holds the queue full and requests wait, instead
    /// of records piling up in memory or being dropped.
    _permit: OwnedSemaphorePermit,
}

impl Batch {
    pub(super) fn push(&mut self, line: &str, permit: OwnedSemaphorePermit) {
        self.bytes.extend_from_slice(line.as_bytes());
        self.bytes.push(b'\n');
        self.lines.push_back(Line {
            len: line.len() + 1,
            _permit: permit,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub(super) fn lines(&self) -> usize {
        self.lines.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Writes what is pending; returns how many lines were completed, and the error that
    /// stopped it, if any. Completed lines leave the batch (and free their queue slots).
    pub(super) fn write_to(&mut self, out: &mut dyn Write) -> (usize, io::Result<()>) {
        let mut offset = self.written;
        let result = loop {
            let Some(rest) = self.bytes.get(offset..).filter(|rest| !rest.is_empty()) else {
                break Ok(());
            };
            match out.write(rest) {
                Ok(0) => break Err(io::Error::from(ErrorKind::WriteZero)),
                Ok(n) => offset += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => break Err(error),
            }
        };
        (self.settle(offset), result)
    }

    /// Drops the lines wholly within the first `offset` bytes.
    fn settle(&mut self, offset: usize) -> usize {
        let mut consumed = 0;
        let mut completed = 0;
        while let Some(line) = self.lines.front() {
            if consumed + line.len > offset {
                break;
            }
            consumed += line.len;
            completed += 1;
            self.lines.pop_front();
        }
        self.bytes.drain(..consumed);
        self.written = offset - consumed;
        completed
    }

    /// The target changed: a line cut short on the old one is written whole to the new
    /// one (the old keeps a fragment, but the record is complete somewhere). Returns
    /// whether that happened.
    pub(super) fn restart_line(&mut self) -> bool {
        std::mem::take(&mut self.written) > 0
    }

    /// Gives up on every pending line; returns how many were dropped.
    pub(super) fn discard(&mut self) -> usize {
        let dropped = self.lines.len();
        *self = Self::default();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    /// Accepts at most `room` bytes in total, `chunk` per call, then fails like a full disk.
    struct Tight {
        data: Vec<u8>,
        room: usize,
        chunk: usize,
    }

    impl Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk).min(self.room - self.data.len());
            if n == 0 {
                return Err(io::Error::new(ErrorKind::StorageFull, "full"));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn tight(room: usize, chunk: usize) -> Tight {
        Tight {
            data: Vec::new(),
            room,
            chunk,
        }
    }

    fn filled(permits: &Arc<Semaphore>, lines: &[&str]) -> Batch {
        let mut batch = Batch::default();
        for line in lines {
            let permit = Arc::clone(permits)
                .try_acquire_owned()
                .expect("test permit");
            batch.push(line, permit);
        }
        batch
    }

    #[test]
    fn writes_all_lines_through_short_writes() {
        let permits = Arc::new(Semaphore::new(3));
        let mut batch = filled(&permits, &["one", "two", "three"]);
        assert_eq!(permits.available_permits(), 0);
        let mut out = tight(usize::MAX, 3);
        let (done, result) = batch.write_to(&mut out);
        assert!(result.is_ok());
        assert_eq!(done, 3);
        assert_eq!(out.data, b"one\ntwo\nthree\n");
        assert!(batch.is_empty());
        assert_eq!(batch.bytes(), 0);
        assert_eq!(
            permits.available_permits(),
            3,
            "written lines free their slot"
        );
    }

    #[test]
    fn a_failed_write_keeps_exactly_the_unwritten_bytes() {
        let permits = Arc::new(Semaphore::new(3));
        let mut batch = filled(&permits, &["aaaa", "bbbb", "cccc"]);
        // Room for the first line and half of the second.
        let mut out = tight(7, 100);
        let (done, result) = batch.write_to(&mut out);
        assert!(result.is_err());
        assert_eq!(done, 1);
        assert_eq!(batch.lines(), 2);
        assert_eq!(
            permits.available_permits(),
            1,
            "only the written line is released"
        );

        // Space is freed on the same target: the retry continues mid-line.
        out.room = usize::MAX;
        let (done, result) = batch.write_to(&mut out);
        assert!(result.is_ok());
        assert_eq!(done, 2);
        assert_eq!(
            out.data, b"aaaa\nbbbb\ncccc\n",
            "nothing lost, nothing repeated"
        );
        assert_eq!(permits.available_permits(), 3);
    }

    #[test]
    fn a_new_target_gets_the_cut_line_whole() {
        let permits = Arc::new(Semaphore::new(2));
        let mut batch = filled(&permits, &["aaaa", "bbbb"]);
        let mut old = tight(7, 100);
        let (done, _) = batch.write_to(&mut old);
        assert_eq!(done, 1);
        assert!(batch.restart_line(), "a line was cut");
        assert!(!batch.restart_line());

        let mut new = tight(usize::MAX, 100);
        let (done, result) = batch.write_to(&mut new);
        assert!(result.is_ok());
        assert_eq!(done, 1);
        assert_eq!(new.data, b"bbbb\n");
    }

    #[test]
    fn discard_counts_and_frees_everything() {
        let permits = Arc::new(Semaphore::new(2));
        let mut batch = filled(&permits, &["x", "y"]);
        assert_eq!(batch.discard(), 2);
        assert!(batch.is_empty());
        assert_eq!(permits.available_permits(), 2);
    }
}
