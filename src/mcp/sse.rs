//! An event-by-event editor for Server-Sent Events byte streams.
//!
//! An MCP server may answer a `tools/list`-style request inside a
//! `text/event-stream`, and mcpgate must still cut that answer to what the caller
//! may use. This module re-frames the upstream bytes into events (WHATWG "event
//! stream" rules), hands each event's data to an [`EventEditor`] and streams
//! everything it does not rewrite through byte for byte. Events are only re-framed
//! while something still needs looking at: once the editor is done the rest of the
//! stream is forwarded chunk by chunk, without buffering or parsing.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;

/// What becomes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// It passes through byte for byte.
    Keep,
    /// Its data lines are replaced by this data; its other fields stay.
    Replace(String),
    /// It is removed, every line of it.
    Drop,
}

/// Decides, event by event, what to rewrite.
pub trait EventEditor: Send + 'static {
    /// Called with the data of each event that has a `data` field (its values joined
    /// by '\n', per the SSE spec), as bytes: what a client makes of bytes that are not
    /// UTF-8 (it decodes them leniently) is for the editor to weigh.
    fn edit(&mut self, data: &[u8]) -> Edit;
    /// True once no further event needs looking at: from then on the rest of the stream
    /// passes through untouched, without buffering or parsing.
    fn done(&self) -> bool;
}

/// Why an edited stream stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// One event grew past this many bytes before its end; cut off rather than buffered.
    #[error("an upstream event exceeds {0} bytes")]
    EventTooLarge(usize),
    /// The upstream's body failed mid-stream; the cause.
    #[error("upstream stream failed: {0}")]
    Upstream(String),
}

/// Wraps `upstream`, yielding the same bytes except for the events the editor rewrites.
///
/// An event that grows past `max_event_bytes` (not counting the line ending of its
/// closing blank line) ends the stream with [`SseError::EventTooLarge`]: it cannot
/// be looked at, so it must not pass. A partial event left at the end of the
/// stream is still shown to the editor, so cut-off content cannot slip through.
pub fn edit_events<S, B, E, Ed>(
    upstream: S,
    editor: Ed,
    max_event_bytes: usize,
) -> impl Stream<Item = Result<Bytes, SseError>> + Send + 'static
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: Into<Bytes> + 'static,
    E: std::fmt::Display + 'static,
    Ed: EventEditor,
{
    let mut state = EventStream {
        upstream: Some(Box::pin(upstream)),
        editor,
        max: max_event_bytes,
        buf: BytesMut::new(),
        emit_upto: 0,
        scan: 0,
        after_cr: AfterCr::None,
        bom_pending: true,
        mode: Mode::Editing,
        swallow_lf: false,
        out: VecDeque::new(),
    };
    // `poll_fn` keeps the state unpinned, so the editor need not be `Unpin`.
    futures_util::stream::poll_fn(move |cx| state.poll_next(cx))
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Buffering and parsing events.
    Editing,
    /// The editor is done: chunks go straight through.
    PassThrough,
    /// Nothing more will be yielded once `out` is drained.
    Finished,
}

/// A line that ended with a CR as the last buffered byte: an LF at the start of the
/// next chunk is the second half of that line ending, not an empty line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCr {
    None,
    /// The CR ended a line inside the event being buffered; the LF belongs to it.
    InEvent,
    /// The CR closed an event that went out as it was; the LF goes out as it is.
    Raw,
    /// The CR closed an event that was rewritten with its own line endings; the LF
    /// would be a stray extra line ending, so it is dropped.
    Rewritten,
}

struct EventStream<S, Ed> {
    /// `None` once finished, so the upstream connection is released promptly.
    upstream: Option<Pin<Box<S>>>,
    editor: Ed,
    max: usize,
    /// `buf[..emit_upto]` is decided and goes out unchanged; the event being
    /// buffered starts at `emit_upto`.
    buf: BytesMut,
    emit_upto: usize,
    /// Bytes before `scan` have been split into lines already; it is always at the
    /// start of a line, so a new chunk is searched only from there.
    scan: usize,
    after_cr: AfterCr,
    /// A BOM is only special as the first bytes of the stream, and it may arrive split.
    bom_pending: bool,
    mode: Mode,
    /// Carries `AfterCr::Rewritten` into pass-through mode.
    swallow_lf: bool,
    out: VecDeque<Result<Bytes, SseError>>,
}

impl<S, B, E, Ed> EventStream<S, Ed>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: std::fmt::Display,
    Ed: EventEditor,
{
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, SseError>>> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Poll::Ready(Some(item));
            }
            let Some(upstream) = self.upstream.as_mut() else {
                return Poll::Ready(None);
            };
            match upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => self.on_chunk(chunk.into()),
                Poll::Ready(Some(Err(error))) => {
                    self.fail(SseError::Upstream(error.to_string()));
                }
                Poll::Ready(None) => self.on_eof(),
            }
        }
    }
}

impl<S, Ed: EventEditor> EventStream<S, Ed> {
    fn on_chunk(&mut self, chunk: Bytes) {
        if self.mode == Mode::Editing && self.editor.done() {
            self.pass_through_from_now();
        }
        match self.mode {
            Mode::Editing => {
                self.buf.extend_from_slice(&chunk);
                self.process();
            }
            Mode::PassThrough => {
                let mut chunk = chunk;
                if self.swallow_lf && !chunk.is_empty() {
                    self.swallow_lf = false;
                    if chunk.first() == Some(&b'\n') {
                        chunk = chunk.slice(1..);
                    }
                }
                if !chunk.is_empty() {
                    self.out.push_back(Ok(chunk));
                }
            }
            Mode::Finished => {}
        }
    }

    fn on_eof(&mut self) {
        if self.mode == Mode::Editing {
            // Whatever is left is the start of an event that never got its blank line.
            if self.emit_upto < self.buf.len() && !self.editor.done() {
                self.finish_event(self.buf.len());
            }
            self.flush_all();
        }
        self.finish();
    }

    /// Splits the newly buffered bytes into events, deciding each complete one.
    fn process(&mut self) {
        if self.bom_pending {
            let head = self
                .buf
                .get(..BOM.len().min(self.buf.len()))
                .unwrap_or_default();
            if head.len() < BOM.len() && BOM.starts_with(head) {
                return;
            }
            if head == BOM {
                self.emit_upto = BOM.len();
                self.scan = BOM.len();
            }
            self.bom_pending = false;
        }

        if self.after_cr != AfterCr::None
            && let Some(&next) = self.buf.get(self.scan)
        {
            if next == b'\n' {
                match self.after_cr {
                    AfterCr::InEvent => self.scan += 1,
                    AfterCr::Raw => {
                        self.scan += 1;
                        self.emit_upto = self.scan;
                    }
                    AfterCr::Rewritten => {
                        // Only set when the CR was the last buffered byte, and the
                        // rewrite consumed everything before it.
                        if self.emit_upto == 0 && self.scan == 0 {
                            self.buf.advance(1);
                        }
                    }
                    AfterCr::None => {}
                }
            }
            self.after_cr = AfterCr::None;
        }

        while self.mode == Mode::Editing {
            let rest = self.buf.get(self.scan..).unwrap_or_default();
            let Some(offset) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                break;
            };
            let line_start = self.scan;
            let content_end = line_start + offset;
            let (next, cr_at_end) = match (rest.get(offset), rest.get(offset + 1)) {
                (Some(b'\r'), Some(b'\n')) => (content_end + 2, false),
                (Some(b'\r'), None) => (content_end + 1, true),
                _ => (content_end + 1, false),
            };
            self.scan = next;
            if content_end > line_start {
                if cr_at_end {
                    self.after_cr = AfterCr::InEvent;
                }
                continue;
            }
            // An empty line: the event is complete.
            if line_start.saturating_sub(self.emit_upto) > self.max {
                self.fail(SseError::EventTooLarge(self.max));
                return;
            }
            let rewritten = self.finish_event(next);
            if cr_at_end {
                self.after_cr = if rewritten {
                    AfterCr::Rewritten
                } else {
                    AfterCr::Raw
                };
            }
            if self.editor.done() {
                self.pass_through_from_now();
            }
        }

        if self.mode == Mode::Editing {
            if self.buf.len().saturating_sub(self.emit_upto) > self.max {
                self.fail(SseError::EventTooLarge(self.max));
                return;
            }
            self.flush_decided();
        }
    }

    /// Decides the event in `buf[emit_upto..end]`; true when it was rewritten or
    /// dropped.
    fn finish_event(&mut self, end: usize) -> bool {
        let Some(event) = self.buf.get(self.emit_upto..end) else {
            return false;
        };
        let Some(rewritten) = rewrite_event(&mut self.editor, event) else {
            self.emit_upto = end;
            return false;
        };
        let consumed = end.saturating_sub(self.emit_upto);
        self.flush_decided();
        let consumed = consumed.min(self.buf.len());
        self.buf.advance(consumed);
        self.scan = self.scan.saturating_sub(consumed);
        // A dropped event leaves nothing behind.
        if !rewritten.is_empty() {
            self.out.push_back(Ok(rewritten));
        }
        true
    }

    /// Sends out the bytes already decided to go through unchanged, without copying.
    fn flush_decided(&mut self) {
        let decided = self.emit_upto.min(self.buf.len());
        if decided > 0 {
            self.out.push_back(Ok(self.buf.split_to(decided).freeze()));
            self.scan = self.scan.saturating_sub(decided);
        }
        self.emit_upto = 0;
    }

    fn flush_all(&mut self) {
        if !self.buf.is_empty() {
            self.out.push_back(Ok(self.buf.split().freeze()));
        }
        self.emit_upto = 0;
        self.scan = 0;
    }

    fn pass_through_from_now(&mut self) {
        self.flush_all();
        self.swallow_lf = self.after_cr == AfterCr::Rewritten;
        self.after_cr = AfterCr::None;
        self.bom_pending = false;
        self.mode = Mode::PassThrough;
    }

    /// Ends the stream with `error`. Events decided before it still go out; the one
    /// being buffered does not, as nobody has looked at it.
    fn fail(&mut self, error: SseError) {
        if self.mode == Mode::Editing {
            self.flush_decided();
        }
        self.out.push_back(Err(error));
        self.finish();
    }

    fn finish(&mut self) {
        self.buf = BytesMut::new();
        self.emit_upto = 0;
        self.scan = 0;
        self.mode = Mode::Finished;
        self.upstream = None;
    }
}

/// One line of an event: its content and the line ending that closed it (empty for
/// a last line cut off by the end of the stream).
struct Line<'a> {
    content: &'a [u8],
    eol: &'a [u8],
}

/// The lines of a buffered event. A CR at the very end is a whole line ending: the
/// scanner has already attributed any LF after it.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(offset) = self.rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
            let content = std::mem::take(&mut self.rest);
            return Some(Line { content, eol: &[] });
        };
        let eol_len = match (self.rest.get(offset), self.rest.get(offset + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            _ => 1,
        };
        let (content, tail) = self.rest.split_at_checked(offset)?;
        let (eol, rest) = tail.split_at_checked(eol_len)?;
        self.rest = rest;
        Some(Line { content, eol })
    }
}

/// The value of a `data` field line, `None` for any other line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let (name, value) = line.split_at_checked(colon)?;
            (name, value.get(1..).unwrap_or_default())
        }
        None => (line, &[][..]),
    };
    (name == b"data").then(|| value.strip_prefix(b" ").unwrap_or(value))
}

/// Shows the event's data to the editor and, if it asks for a change, frames the new
/// event (empty for a dropped one). Every line of the rewrite uses one line ending so
/// that a CR-ended line can never run into an LF that follows it and lose the blank
/// line closing the event.
fn rewrite_event<Ed: EventEditor>(editor: &mut Ed, event: &[u8]) -> Option<Bytes> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut eol: &[u8] = b"";
    for line in (Lines { rest: event }) {
        // The first line ending is the one the rewrite uses throughout.
        if eol.is_empty() {
            eol = line.eol;
        }
        if let Some(value) = data_value(line.content) {
            match &mut data {
                None => data = Some(Cow::Borrowed(value)),
                Some(joined) => {
                    let joined = joined.to_mut();
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                }
            }
        }
    }
    let data = data?;
    let new_data = match editor.edit(&data) {
        Edit::Keep => return None,
        Edit::Drop => return Some(Bytes::new()),
        Edit::Replace(new_data) => new_data,
    };
    if eol.is_empty() {
        eol = b"\n";
    }

    let mut out = BytesMut::with_capacity(event.len() + new_data.len() + 16);
    let mut placed = false;
    for line in (Lines { rest: event }) {
        if line.content.is_empty() {
            continue;
        }
        if data_value(line.content).is_none() {
            out.extend_from_slice(line.content);
            out.extend_from_slice(eol);
        } else if !placed {
            placed = true;
            // A CR in the new data would end the line in the client and could forge
            // fields, so every kind of line break becomes a new data line.
            for piece in new_data
                .split("\r\n")
                .flat_map(|part| part.split(['\r', '\n']))
            {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(piece.as_bytes());
                out.extend_from_slice(eol);
            }
        }
    }
    out.extend_from_slice(eol);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Never changes anything.
    struct Keep;

    impl EventEditor for Keep {
        fn edit(&mut self, _: &[u8]) -> Edit {
            Edit::Keep
        }
        fn done(&self) -> bool {
            false
        }
    }

    /// Uppercases every event's UTF-8 data, counting the calls; done after `limit`
    /// edits.
    struct Upper {
        seen: Vec<String>,
        limit: usize,
    }

    impl Upper {
        fn new() -> Self {
            Self::limited(usize::MAX)
        }
        fn limited(limit: usize) -> Self {
            Self {
                seen: Vec::new(),
                limit,
            }
        }
    }

    impl EventEditor for Upper {
        fn edit(&mut self, data: &[u8]) -> Edit {
            let Ok(data) = std::str::from_utf8(data) else {
                return Edit::Keep;
            };
            self.seen.push(data.to_owned());
            Edit::Replace(data.to_uppercase())
        }
        fn done(&self) -> bool {
            self.seen.len() >= self.limit
        }
    }

    /// Drops `tools` named "secret" from JSON-RPC answers; done after one answer.
    struct ToolFilter {
        done: bool,
    }

    impl EventEditor for ToolFilter {
        fn edit(&mut self, data: &[u8]) -> Edit {
            let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
                return Edit::Keep;
            };
            let Some(tools) = value
                .pointer_mut("/result/tools")
                .and_then(Value::as_array_mut)
            else {
                return Edit::Keep;
            };
            tools.retain(|tool| tool["name"] != "secret");
            self.done = true;
            Edit::Replace(value.to_string())
        }
        fn done(&self) -> bool {
            self.done
        }
    }

    /// Records what the editor is shown, through a shared log (the editor is moved
    /// into the stream).
    struct Spy {
        log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl EventEditor for Spy {
        fn edit(&mut self, data: &[u8]) -> Edit {
            self.log
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(data).into_owned());
            Edit::Keep
        }
        fn done(&self) -> bool {
            false
        }
    }

    /// Runs the stream to its end: all bytes until the first error, and that error.
    async fn run_chunks<Ed: EventEditor>(
        chunks: Vec<Vec<u8>>,
        editor: Ed,
        max: usize,
    ) -> (Vec<u8>, Option<String>) {
        let upstream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<Bytes, std::io::Error>(Bytes::from(chunk))),
        );
        collect(edit_events(upstream, editor, max)).await
    }

    async fn collect(
        stream: impl Stream<Item = Result<Bytes, SseError>>,
    ) -> (Vec<u8>, Option<String>) {
        let mut stream = std::pin::pin!(stream);
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(error) => {
                    assert!(stream.next().await.is_none(), "items after an error");
                    return (out, Some(error.to_string()));
                }
            }
        }
        (out, None)
    }

    fn run<Ed: EventEditor>(chunks: &[&[u8]], editor: Ed) -> Vec<u8> {
        let (out, error) = block_on(run_chunks(
            chunks.iter().map(|c| c.to_vec()).collect(),
            editor,
            1 << 20,
        ));
        assert_eq!(error, None);
        out
    }

    /// The test upstreams never wait, so polling with a no-op waker finishes them.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }

    /// Feeds `input` split at each given index.
    fn split_at(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, input.len());
            chunks.push(input[start..cut].to_vec());
            start = cut;
        }
        chunks.push(input[start..].to_vec());
        chunks
    }

    /// The intended wiring: a reqwest body in, an axum body out.
    #[test]
    fn fits_reqwest_and_axum() {
        fn wire(response: reqwest::Response) -> axum::body::Body {
            axum::body::Body::from_stream(edit_events(response.bytes_stream(), Keep, 1024))
        }
        let _ = wire as fn(reqwest::Response) -> axum::body::Body;
    }

    const MIXED: &[u8] = b": keep-alive\n\nid: 7\nevent: message\ndata: {\"a\":1}\n\nretry: 100\r\ndata:two\r\ndata\r\n\r\n:c\rdata: r\r\r\n\n";

    #[test]
    fn unedited_stream_is_byte_exact() {
        assert_eq!(run(&[MIXED], Keep), MIXED);
    }

    #[test]
    fn editor_sees_joined_data_and_rewrite_keeps_other_lines() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        run(&[MIXED], Spy { log: log.clone() });
        assert_eq!(
            *log.lock().unwrap(),
            vec!["{\"a\":1}", "two\n", "r"],
            "comment-only and retry-only events are not shown"
        );

        // The last event's lines end in CR, its closing blank line in CRLF; rewritten,
        // it ends in CR throughout, so the extra empty line after it becomes the LF
        // half of that CR. A client sees the same events either way.
        let out = run(&[MIXED], Upper::new());
        assert_eq!(
            out,
            b": keep-alive\n\nid: 7\nevent: message\ndata: {\"A\":1}\n\nretry: 100\r\ndata: TWO\r\ndata: \r\n\r\n:c\rdata: R\r\r\n"
        );
    }

    #[test]
    fn rewrite_places_data_at_first_data_line() {
        let input = b"data: a\nid: 1\ndata: b\nevent: x\n\n";
        let out = run(&[input], Upper::new());
        assert_eq!(out, b"data: A\ndata: B\nid: 1\nevent: x\n\n");
    }

    #[test]
    fn multi_line_new_data_becomes_several_data_lines() {
        struct Lines3;
        impl EventEditor for Lines3 {
            fn edit(&mut self, _: &[u8]) -> Edit {
                Edit::Replace("one\ntwo\r\nthree\rfour".into())
            }
            fn done(&self) -> bool {
                false
            }
        }
        let out = run(&[b"id: 9\r\ndata: x\r\n\r\n"], Lines3);
        assert_eq!(
            out,
            b"id: 9\r\ndata: one\r\ndata: two\r\ndata: three\r\ndata: four\r\n\r\n"
        );
    }

    #[test]
    fn data_field_forms() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let input = b"data:a\ndata: b\ndata\ndata:  c\ndatum: no\n:data: no\n\n";
        assert_eq!(run(&[input], Spy { log: log.clone() }), input);
        assert_eq!(*log.lock().unwrap(), vec!["a\nb\n\n c"]);
    }

    #[test]
    fn json_filter_rewrites_only_the_list_answer() {
        let input = b"event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"ok\"},{\"name\":\"secret\"}]}}\n\ndata: {\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n";
        let out = run(&[input], ToolFilter { done: false });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"ok\"}]}}\n\n\
             data: {\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n",
            "the editor is done after the first answer"
        );
    }

    #[test]
    fn every_split_point_gives_the_same_output() {
        let input: Vec<u8> = [BOM, MIXED, "data: é€😀\r\n\r\n".as_bytes(), b"data: tail"].concat();
        let whole = block_on(run_chunks(vec![input.clone()], Upper::new(), 1 << 20));
        let kept = block_on(run_chunks(vec![input.clone()], Keep, 1 << 20));
        assert_eq!(kept, (input.clone(), None));
        for i in 0..=input.len() {
            let chunks = split_at(&input, &[i]);
            assert_eq!(
                block_on(run_chunks(chunks.clone(), Upper::new(), 1 << 20)),
                whole,
                "split at {i}"
            );
            assert_eq!(
                block_on(run_chunks(chunks, Keep, 1 << 20)).0,
                input,
                "split at {i}"
            );
            for j in i..=input.len() {
                let chunks = split_at(&input, &[i, j]);
                assert_eq!(
                    block_on(run_chunks(chunks, Upper::new(), 1 << 20)),
                    whole,
                    "split at {i}, {j}"
                );
            }
        }
        let bytewise: Vec<Vec<u8>> = input.iter().map(|&b| vec![b]).collect();
        assert_eq!(block_on(run_chunks(bytewise, Upper::new(), 1 << 20)), whole);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        // Split inside the CRLF that closes the event: the LF must not read as a
        // second (empty) line, nor survive after the rewrite's own CRLF.
        let out = run(&[b"data: a\r\n\r", b"\ndata: b\r\n\r\n"], Upper::new());
        assert_eq!(out, b"data: A\r\n\r\ndata: B\r\n\r\n");
        let out = run(&[b"data: a\r\n\r", b"\ndata: b\r\n\r\n"], Keep);
        assert_eq!(out, b"data: a\r\n\r\ndata: b\r\n\r\n");
        // Split inside a CRLF within the event.
        let out = run(&[b"data: a\r", b"\ndata: b\r\n\r\n"], Upper::new());
        assert_eq!(out, b"data: A\r\ndata: B\r\n\r\n");
        // A lone CR at the end of a chunk followed by something else.
        let out = run(&[b"data: a\r", b"\r"], Upper::new());
        assert_eq!(out, b"data: A\r\r");
        // The editor is done right after an event closed by a split CRLF.
        let out = run(&[b"data: a\r\n\r", b"\ndata: b\r\n\r\n"], Upper::limited(1));
        assert_eq!(out, b"data: A\r\n\r\ndata: b\r\n\r\n");
    }

    #[test]
    fn cr_only_stream() {
        let input = b"id: 1\rdata: x\r\rdata: y\r\r";
        assert_eq!(run(&[input], Keep), input);
        assert_eq!(
            run(&[input], Upper::new()),
            b"id: 1\rdata: X\r\rdata: Y\r\r"
        );
    }

    #[test]
    fn bom_passes_through_and_is_not_part_of_the_first_field() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let input = [BOM, b"data: x\n\n"].concat();
        assert_eq!(run(&[&input], Spy { log: log.clone() }), input);
        assert_eq!(*log.lock().unwrap(), vec!["x"]);
        assert_eq!(
            run(&[&input[..1], &input[1..2], &input[2..]], Upper::new()),
            [BOM, b"data: X\n\n"].concat()
        );
        // Only the first BOM is special; a second one is part of the field name.
        let twice = [BOM, BOM, b"data: x\n\n"].concat();
        assert_eq!(run(&[&twice], Upper::new()), twice);
        // A stream that is nothing but a BOM prefix.
        assert_eq!(run(&[&BOM[..2]], Upper::new()), &BOM[..2]);
    }

    #[test]
    fn done_switches_to_raw_pass_through() {
        let mut editor = Upper::limited(1);
        let input: &[&[u8]] = &[b"data: a\n\ndata: b\n\n", b"data: c\n", b"\ndata"];
        let out = run(input, Upper::limited(1));
        assert_eq!(out, b"data: A\n\ndata: b\n\ndata: c\n\ndata");
        // Done from the start: nothing is parsed, not even a too-large event.
        editor.seen.push(String::new());
        let big = vec![b'x'; 100];
        let (out, error) = block_on(run_chunks(vec![big.clone()], editor, 10));
        assert_eq!((out, error), (big, None));
    }

    #[test]
    fn pass_through_forwards_chunks_without_copying() {
        let chunk = Bytes::from_static(b"data: later\n\n");
        let upstream = futures_util::stream::iter(vec![
            Ok::<Bytes, std::io::Error>(Bytes::from_static(b"data: a\n\n")),
            Ok(chunk.clone()),
        ]);
        let items: Vec<Bytes> = block_on(
            edit_events(upstream, Upper::limited(1), 1024)
                .map(Result::unwrap)
                .collect(),
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn event_too_large_fails_closed() {
        // Complete in one chunk.
        let (out, error) = block_on(run_chunks(
            vec![b"data: ok\n\ndata: 0123456789\n\ndata: never\n\n".to_vec()],
            Keep,
            10,
        ));
        assert_eq!(out, b"data: ok\n\n");
        assert_eq!(error.as_deref(), Some("an upstream event exceeds 10 bytes"));
        // Growing across chunks without an end.
        let (out, error) = block_on(run_chunks(
            vec![b"data: ok\n\ndata: 01".to_vec(), b"23456789".to_vec()],
            Keep,
            10,
        ));
        assert_eq!(out, b"data: ok\n\n");
        assert!(error.is_some());
        // Exactly at the limit is fine; the closing blank line does not count.
        let input = b"data: 0123\r\n\r\n".to_vec();
        let (out, error) = block_on(run_chunks(vec![input.clone()], Keep, 12));
        assert_eq!((out, error), (input, None));
    }

    #[test]
    fn upstream_error_ends_the_stream() {
        let upstream = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"data: a\n\ndata: partial")),
            Err(std::io::Error::other("connection reset")),
            Ok(Bytes::from_static(b"\n\n")),
        ]);
        let (out, error) = block_on(collect(edit_events(upstream, Keep, 1024)));
        assert_eq!(out, b"data: a\n\n", "the partial event is not let through");
        assert_eq!(
            error.as_deref(),
            Some("upstream stream failed: connection reset")
        );
    }

    #[test]
    fn partial_final_event_is_still_edited() {
        assert_eq!(
            run(&[b"data: a\n\nid: 2\ndata: b"], Upper::new()),
            b"data: A\n\nid: 2\ndata: B\n\n"
        );
        assert_eq!(
            run(&[b"data: a\r\nid: 2\r"], Upper::new()),
            b"data: A\r\nid: 2\r\n\r\n"
        );
        assert_eq!(
            run(&[b"data: a\n\nid: 2\ndata: b"], Keep),
            b"data: a\n\nid: 2\ndata: b"
        );
        // Without data there is nothing to edit.
        assert_eq!(
            run(&[b"data: a\n\nid: 2"], Upper::new()),
            b"data: A\n\nid: 2"
        );
    }

    #[test]
    fn data_that_is_not_utf8_is_shown_to_the_editor_as_it_is() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let input = b"data: \xff\xfe\n\ndata: ok\n\n";
        assert_eq!(run(&[input], Spy { log: log.clone() }), input);
        assert_eq!(*log.lock().unwrap(), vec!["\u{fffd}\u{fffd}", "ok"]);
        // This editor leaves what it cannot read alone; the list filter refuses it.
        assert_eq!(
            run(&[input], Upper::new()),
            b"data: \xff\xfe\n\ndata: OK\n\n"
        );
    }

    /// Drops events whose data starts with "drop", uppercases the rest.
    struct Dropper;

    impl EventEditor for Dropper {
        fn edit(&mut self, data: &[u8]) -> Edit {
            if data.starts_with(b"drop") {
                return Edit::Drop;
            }
            Edit::Replace(String::from_utf8_lossy(data).to_uppercase())
        }
        fn done(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_dropped_event_leaves_no_line_behind() {
        let input: &[u8] = b"id: 1\nevent: message\ndata: a\n\nid: 2\nevent: message\ndata: drop me\n\n: c\n\ndata: b\n\n";
        let expected: &[u8] = b"id: 1\nevent: message\ndata: A\n\n: c\n\ndata: B\n\n";
        assert_eq!(run(&[input], Dropper), expected);
        for i in 0..=input.len() {
            assert_eq!(
                run(
                    &split_at(input, &[i])[..]
                        .iter()
                        .map(Vec::as_slice)
                        .collect::<Vec<_>>(),
                    Dropper
                ),
                expected,
                "split at {i}"
            );
        }
        // Closed by a CRLF split across chunks: the LF does not survive the drop.
        assert_eq!(
            run(&[b"data: drop\r\n\r", b"\ndata: b\r\n\r\n"], Dropper),
            b"data: B\r\n\r\n"
        );
        // A cut-off last event is dropped too.
        assert_eq!(run(&[b"data: a\n\ndata: drop"], Dropper), b"data: A\n\n");
    }

    #[test]
    fn empty_input_and_empty_chunks() {
        assert_eq!(run(&[], Upper::new()), b"");
        assert_eq!(
            run(&[b"", b"data: a\r", b"", b"\n\r", b"", b"\n"], Upper::new()),
            b"data: A\r\n\r\n"
        );
    }

    /// Pieces that make interesting streams: field forms, every line ending, a BOM,
    /// multi-byte and invalid UTF-8.
    const TOKENS: &[&[u8]] = &[
        b"data:",
        b"data: ",
        b"data",
        b"id: 1",
        b"event: message",
        b"retry: 5",
        b": comment",
        b":",
        b"x",
        b" ",
        b"{\"a\":[1,2]}",
        "é😀".as_bytes(),
        b"\xff",
        b"\xEF\xBB\xBF",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\r\n\r\n",
    ];

    const FIELDS: &[&[u8]] = &[b"data: ", b"data:", b"id: ", b": ", b"event:"];
    const EOLS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];

    fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
        let token = prop::sample::select(TOKENS);
        let structured = prop::collection::vec(
            (
                prop::collection::vec(
                    (
                        prop::sample::select(FIELDS),
                        "[a-zé😀 ]{0,8}",
                        prop::sample::select(EOLS),
                    ),
                    0..4,
                ),
                prop::sample::select(EOLS),
            ),
            0..6,
        )
        .prop_map(|events| {
            let mut out = Vec::new();
            for (lines, end) in events {
                for (field, value, eol) in lines {
                    out.extend_from_slice(field);
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(end);
            }
            out
        });
        let tokens = prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat());
        prop_oneof![structured, tokens]
    }

    /// One block of lines up to an empty line (or the end of the stream), as a
    /// WHATWG client reads it.
    #[derive(Debug)]
    struct Block {
        had_data: bool,
        data: Vec<u8>,
        event: Vec<u8>,
        id: Vec<u8>,
        terminated: bool,
    }

    /// A straightforward reference reading of the event stream rules.
    fn blocks(stream: &[u8]) -> Vec<Block> {
        let stream = stream.strip_prefix(BOM).unwrap_or(stream);
        let mut lines = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < stream.len() {
            match stream[i] {
                b'\n' => {
                    lines.push((&stream[start..i], true));
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    lines.push((&stream[start..i], true));
                    i += if stream.get(i + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    start = i;
                }
                _ => i += 1,
            }
        }
        if start < stream.len() {
            lines.push((&stream[start..], false));
        }
        let mut out = Vec::new();
        let mut id = Vec::new();
        let new_block = |id: &Vec<u8>| Block {
            had_data: false,
            data: Vec::new(),
            event: Vec::new(),
            id: id.clone(),
            terminated: false,
        };
        let mut block = new_block(&id);
        let mut open = false;
        for (line, _) in lines {
            if line.is_empty() {
                block.terminated = true;
                block.id = id.clone();
                out.push(std::mem::replace(&mut block, new_block(&id)));
                open = false;
                continue;
            }
            open = true;
            if line[0] == b':' {
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match name {
                b"data" => {
                    if block.had_data {
                        block.data.push(b'\n');
                    }
                    block.had_data = true;
                    block.data.extend_from_slice(value);
                }
                b"event" => block.event = value.to_vec(),
                b"id" if !value.contains(&0) => id = value.to_vec(),
                _ => {}
            }
        }
        if open {
            block.id = id;
            out.push(block);
        }
        out
    }

    /// The (event type, data, last event id) a client dispatches.
    fn dispatched(blocks: impl IntoIterator<Item = Block>) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        blocks
            .into_iter()
            .filter(|b| b.terminated && !b.data.is_empty())
            .map(|b| (b.event, b.data, b.id))
            .collect()
    }

    /// What a client should see after `Upper::limited(limit)` edited `input`: the
    /// first `limit` events with readable data uppercased, a cut-off last event
    /// closed if it was edited.
    fn expected_upper(input: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let mut edits = 0;
        let blocks = blocks(input).into_iter().map(|mut block| {
            if edits < limit
                && block.had_data
                && let Ok(text) = std::str::from_utf8(&block.data)
            {
                block.data = text.to_uppercase().into_bytes();
                block.terminated = true;
                edits += 1;
            }
            block
        });
        dispatched(blocks.collect::<Vec<_>>())
    }

    fn chunked(input: Vec<u8>, cuts: Vec<usize>) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        split_at(&input, &cuts)
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_output(
            input in stream_bytes(),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            limit in 0usize..4,
            max in prop_oneof![Just(1usize << 20), 0usize..40],
        ) {
            let chunks = chunked(input.clone(), cuts);

            let kept = block_on(run_chunks(chunks.clone(), Keep, 1 << 20));
            prop_assert_eq!(&kept, &(input.clone(), None));

            let whole = block_on(run_chunks(vec![input.clone()], Upper::new(), max));
            let split = block_on(run_chunks(chunks.clone(), Upper::new(), max));
            prop_assert_eq!(whole, split);

            let whole = block_on(run_chunks(vec![input.clone()], Upper::limited(limit), max));
            let split = block_on(run_chunks(chunks, Upper::limited(limit), max));
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn a_client_reads_the_edited_events(
            input in stream_bytes(),
            limit in prop_oneof![Just(usize::MAX), 0usize..4],
        ) {
            let (out, error) = block_on(run_chunks(vec![input.clone()], Upper::limited(limit), 1 << 20));
            prop_assert_eq!(error, None);
            prop_assert_eq!(dispatched(blocks(&out)), expected_upper(&input, limit));
        }
    }
}
