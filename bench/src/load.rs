//! The load generator: HTTP/1.1 keep-alive connections on hyper's low-level client
//! (no pool, no retries, nothing between the request and the socket), driven either
//! closed-loop (each connection sends its next request when the last one is answered:
//! peak throughput) or at a fixed rate (requests on a schedule: latency at a load the
//! gateway can carry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A fixed-rate request sent more than this after its slot counts as late: the
/// generator (or the server) could not keep the schedule. Tokio's timer has 1 ms
/// resolution, so small lags are the timer's, not a backlog.
const LATE_AFTER: Duration = Duration::from_millis(5);

/// Highest latency the histograms hold; slower answers are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Where requests go and what they carry.
pub struct Target {
    pub addr: SocketAddr,
    uri: Uri,
    body: Bytes,
    headers: HeaderMap,
    credential: Credential,
}

/// The `Authorization` a request carries.
pub enum Credential {
    None,
    /// The same value on every request (the verified-token cache hits).
    One(HeaderValue),
    /// A different value on every request, each used once.
    Pool(Arc<TokenPool>),
}

/// Pre-minted tokens handed out in order, each once, across all connections.
pub struct TokenPool {
    tokens: Vec<HeaderValue>,
    next: AtomicUsize,
}

impl TokenPool {
    pub fn new(tokens: Vec<HeaderValue>) -> Self {
        Self {
            tokens,
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<&HeaderValue> {
        self.tokens.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

impl Target {
    pub fn new(addr: SocketAddr, path: &str, body: &str, credential: Credential) -> Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(&addr.to_string())?);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // What an MCP client sends on a Streamable HTTP POST.
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        Ok(Self {
            addr,
            uri: path.parse().context("request path")?,
            body: Bytes::copy_from_slice(body.as_bytes()),
            headers,
            credential,
        })
    }

    /// The next request, or `None` when the token pool has run dry.
    fn request(&self) -> Option<Request<Full<Bytes>>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let authorization = match &self.credential {
            Credential::None => None,
            Credential::One(value) => Some(value),
            Credential::Pool(pool) => Some(pool.take()?),
        };
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, value.clone());
        }
        Some(request)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Every connection keeps one request in flight.
    Closed,
    /// Requests per second, spread over the connections on a fixed schedule.
    Rate(f64),
}

/// What one run measured.
pub struct Outcome {
    /// Answers with status 200.
    pub ok: u64,
    /// Anything else: another status, a transport error. A valid run has none.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of the successful requests, in nanoseconds, from sending to the last
    /// byte of the body.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// Fixed rate only: requests sent more than [`LATE_AFTER`] after their slot.
    pub late: u64,
    /// The token pool ran out before the duration was over.
    pub exhausted: bool,
}

impl Outcome {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// A percentile in milliseconds.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1e6
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.late += other.late;
        self.exhausted |= other.exhausted;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

/// One connection's counts, merged at the end so workers never share a lock.
struct Tally {
    ok: u64,
    errors: u64,
    late: u64,
    exhausted: bool,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            late: 0,
            exhausted: false,
            first_error: None,
            latency: histogram(),
        }
    }

    fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

fn histogram() -> Histogram<u64> {
    // Three significant digits from 1 ns to a minute: ~0.1% resolution everywhere.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}

/// Runs `connections` connections against `target` for `duration`.
pub async fn run(
    target: Arc<Target>,
    pace: Pace,
    connections: usize,
    duration: Duration,
) -> Result<Outcome> {
    // Every connection is open before the clock starts, so the run measures requests,
    // not handshakes.
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        senders.push(connect(target.addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let slots = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            let target = Arc::clone(&target);
            let slots = Arc::clone(&slots);
            tokio::spawn(async move {
                match pace {
                    Pace::Closed => closed_loop(&target, sender, deadline).await,
                    Pace::Rate(per_second) => {
                        let schedule = Schedule {
                            start,
                            deadline,
                            per_second,
                            slots,
                        };
                        fixed_rate(&target, sender, &schedule).await
                    }
                }
            })
        })
        .collect();
    let mut outcome = Outcome {
        ok: 0,
        errors: 0,
        first_error: None,
        latency: histogram(),
        elapsed: Duration::ZERO,
        late: 0,
        exhausted: false,
    };
    for worker in workers {
        outcome.merge(worker.await.context("load worker panicked")?);
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

async fn closed_loop(
    target: &Target,
    mut sender: SendRequest<Full<Bytes>>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < deadline {
        let Some(request) = target.request() else {
            tally.exhausted = true;
            break;
        };
        if !exchange(target, &mut sender, request, &mut tally).await {
            // The connection is gone: open another rather than end this worker.
            match reconnect(target.addr, deadline).await {
                Some(fresh) => sender = fresh,
                None => break,
            }
        }
    }
    tally
}

struct Schedule {
    start: Instant,
    deadline: Instant,
    per_second: f64,
    /// The next slot to take, shared by all connections of the run.
    slots: Arc<AtomicU64>,
}

async fn fixed_rate(
    target: &Target,
    mut sender: SendRequest<Full<Bytes>>,
    schedule: &Schedule,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let slot = schedule.slots.fetch_add(1, Ordering::Relaxed);
        let due = schedule.start + Duration::from_secs_f64(slot as f64 / schedule.per_second);
        if due >= schedule.deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        if due.elapsed() > LATE_AFTER {
            tally.late += 1;
        }
        let Some(request) = target.request() else {
            tally.exhausted = true;
            break;
        };
        if !exchange(target, &mut sender, request, &mut tally).await {
            match reconnect(target.addr, schedule.deadline).await {
                Some(fresh) => sender = fresh,
                None => break,
            }
        }
    }
    tally
}

/// Sends one request and reads the whole answer. Returns whether the connection can
/// carry the next request.
async fn exchange(
    target: &Target,
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    tally: &mut Tally,
) -> bool {
    let sent = Instant::now();
    let answer = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    }
    .await;
    match answer {
        Ok((StatusCode::OK, _)) => {
            tally.ok += 1;
            let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(MAX_LATENCY_NS);
            tally.latency.saturating_record(nanos.min(MAX_LATENCY_NS));
            true
        }
        Ok((status, body)) => {
            tally.error(|| {
                format!(
                    "{} answered {status}: {}",
                    target.addr,
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )
            });
            true
        }
        Err(error) => {
            tally.error(|| format!("{}: {error}", target.addr));
            false
        }
    }
}

pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    // Requests are small and answered at once: Nagle would add delay, not save packets.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the connection closes; a failure shows up on the next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Opens a replacement connection, retrying briefly until `deadline`.
async fn reconnect(addr: SocketAddr, deadline: Instant) -> Option<SendRequest<Full<Bytes>>> {
    while Instant::now() < deadline {
        if let Ok(sender) = connect(addr).await {
            return Some(sender);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// One request, outside any measurement: a readiness probe and a check that the
/// scenario answers what it should. Returns the status and the body.
pub async fn probe(target: &Target) -> Result<(StatusCode, Bytes)> {
    let mut sender = connect(target.addr).await?;
    let request = target.request().context("token pool is empty")?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Sends `count` requests one after another on one connection, outside any timing:
/// for instruction counts, where only the number of requests matters. Returns how
/// many were not answered 200.
pub async fn sequential(target: &Target, count: usize) -> Result<usize> {
    let mut sender = connect(target.addr).await?;
    let mut tally = Tally::new();
    for _ in 0..count {
        let request = target.request().context("token pool is empty")?;
        if !exchange(target, &mut sender, request, &mut tally).await {
            sender = connect(target.addr).await?;
        }
    }
    if let Some(error) = &tally.first_error {
        eprintln!("  first error: {error}");
    }
    Ok(tally.errors as usize)
}
