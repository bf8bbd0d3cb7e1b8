//! Byte framing on both sides of the stdio layer: newline-delimited lines from the
//! child (bounded, so a child that never ends a line cannot exhaust memory), and
//! Server-Sent Events towards the HTTP client.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much is asked of the pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What the next read produced.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// One line, without its `\n` (or `\r\n`).
    Complete(Bytes),
    /// A line grew past the cap before its end: its first `cap` bytes. The rest of
    /// it is skipped; reading goes on at the next line.
    TooLong(Bytes),
}

/// Splits a byte stream into lines of at most `cap` bytes.
pub(super) struct Lines<R> {
    reader: R,
    buf: BytesMut,
    /// Bytes of `buf` already searched for `\n`.
    scanned: usize,
    cap: usize,
    /// Inside a line that was already reported as too long.
    skipping: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub(super) fn new(reader: R, cap: usize) -> Self {
        Self {
            reader,
            buf: BytesMut::new(),
            scanned: 0,
            cap,
            skipping: false,
            eof: false,
        }
    }

    /// The next line, `None` at the end of the stream. A last line without its
    /// newline still counts (a child may exit without one).
    pub(super) async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            // `scanned` never passes the buffer's end: it is set to the buffer's length,
            // or to 0 when the buffer is split.
            let newline = self
                .buf
                .get(self.scanned..)
                .and_then(|unscanned| unscanned.iter().position(|&b| b == b'\n'));
            if let Some(offset) = newline {
                let end = self.scanned + offset;
                let mut line = self.buf.split_to(end + 1).freeze();
                self.scanned = 0;
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                if line.len() > self.cap {
                    return Ok(Some(Line::TooLong(line.slice(..self.cap))));
                }
                return Ok(Some(Line::Complete(line)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.cap {
                let head = self.buf.split().freeze().slice(..self.cap);
                self.scanned = 0;
                if !std::mem::replace(&mut self.skipping, true) {
                    return Ok(Some(Line::TooLong(head)));
                }
            }
            if self.eof {
                self.scanned = 0;
                if self.buf.is_empty() || std::mem::take(&mut self.skipping) {
                    self.buf.clear();
                    return Ok(None);
                }
                return Ok(Some(Line::Complete(self.buf.split().freeze())));
            }
            self.buf.reserve(READ_CHUNK);
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }
}

/// One SSE event carrying one JSON-RPC message. `json` is compact JSON, which has no
/// raw line breaks, so it is always exactly one `data:` line. No `id:` field: the
/// stdio layer keeps no replay buffer, so it offers no resumption (`Last-Event-ID`).
pub(super) fn sse_event(json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 24);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// Shortens text for a log line, on a character boundary.
pub(super) fn truncate_for_log(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    format!("{}… ({} bytes)", crate::char_prefix(text, max), text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], cap: usize) -> Vec<Line> {
        // A reader that hands out 3 bytes at a time, so lines straddle reads.
        let reader = tokio_test_reader(input);
        let mut lines = Lines::new(reader, cap);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await.unwrap() {
            out.push(line);
        }
        out
    }

    fn tokio_test_reader(input: &[u8]) -> impl AsyncRead + Unpin {
        let chunks: Vec<Bytes> = input.chunks(3).map(Bytes::copy_from_slice).collect();
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        StreamReader::new(stream)
    }

    /// A minimal `StreamReader` (tokio-util is not a dependency).
    struct StreamReader<S> {
        stream: S,
        current: Bytes,
    }

    impl<S> StreamReader<S> {
        fn new(stream: S) -> Self {
            Self {
                stream,
                current: Bytes::new(),
            }
        }
    }

    impl<S> AsyncRead for StreamReader<S>
    where
        S: futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin,
    {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            use futures_util::StreamExt;
            loop {
                if !self.current.is_empty() {
                    let n = self.current.len().min(buf.remaining());
                    let chunk = self.current.split_to(n);
                    buf.put_slice(&chunk);
                    return std::task::Poll::Ready(Ok(()));
                }
                match self.stream.poll_next_unpin(cx) {
                    std::task::Poll::Ready(Some(Ok(chunk))) => self.current = chunk,
                    std::task::Poll::Ready(Some(Err(error))) => {
                        return std::task::Poll::Ready(Err(error));
                    }
                    std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(())),
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                }
            }
        }
    }

    fn complete(text: &str) -> Line {
        Line::Complete(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[tokio::test]
    async fn lines_split_on_lf_and_drop_a_trailing_cr() {
        assert_eq!(
            lines(b"{\"a\":1}\r\nbanner\n\n{\"b\":2}", 100).await,
            vec![
                complete("{\"a\":1}"),
                complete("banner"),
                complete(""),
                complete("{\"b\":2}")
            ]
        );
        assert_eq!(lines(b"", 100).await, vec![]);
    }

    #[tokio::test]
    async fn an_overlong_line_is_reported_once_and_skipped() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 50));
        input.extend(b"\nnext\n");
        assert_eq!(
            lines(&input, 10).await,
            vec![
                complete("short"),
                Line::TooLong(Bytes::from_static(b"xxxxxxxxxx")),
                complete("next")
            ]
        );
        // Exactly at the cap is fine; an overlong last line without a newline is reported.
        assert_eq!(
            lines(b"0123456789\n", 10).await,
            vec![complete("0123456789")]
        );
        assert_eq!(
            lines(b"0123456789abc", 10).await,
            vec![Line::TooLong(Bytes::from_static(b"0123456789"))]
        );
    }

    #[test]
    fn sse_events_are_single_data_lines() {
        assert_eq!(
            &sse_event(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#)[..],
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
        );
    }

    #[test]
    fn log_lines_are_cut_on_char_boundaries() {
        assert_eq!(truncate_for_log("short", 10), "short");
        assert_eq!(truncate_for_log("ééééé", 3), "é… (10 bytes)");
    }
}
