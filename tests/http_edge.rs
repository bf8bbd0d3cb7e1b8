//! The HTTP edge against the real binary, over raw sockets: slow clients lose their
//! connections within the read timeouts, valid clients are served while many slow
//! ones are open, the connection cap and the open-file limit, malformed bodies and
//! the `Host` header. Each refusal is checked against what the upstream recorded.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn config(upstream_url: &str, server: &str) -> String {
    TestConfig::oauth(upstream_url)
        .server("max_body_bytes: 1024")
        .server(server)
        .audit()
        .build()
}

/// Short timeouts, so each slow pattern is seen to close within the test.
const SHORT: &str = "  header_read_timeout: 1s\n  body_read_timeout: 1s\n  idle_timeout: 2s";

fn addr(gateway: &Gateway) -> String {
    gateway.base.trim_start_matches("http://").to_owned()
}

fn token(gateway: &Gateway) -> String {
    hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"))
}

/// A complete POST of `body`, with `Connection: close` so the answer ends the stream.
fn post(gateway: &Gateway, host_lines: &str, target: &str, body: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\n{host_lines}Authorization: Bearer {}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token(gateway),
        body.len()
    )
}

fn host_line(gateway: &Gateway) -> String {
    format!("Host: {}\r\n", addr(gateway))
}

/// Everything the gateway sends until it closes the connection (at most 15 s),
/// and how long that took.
async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection was still open after 15 s"),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Sends `request` whole and returns the answer, read until the gateway closes.
async fn exchange(gateway: &Gateway, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr(gateway)).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await.0
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// `elapsed` is the read timeout at work: not before it, and not long after.
fn closed_by_timeout(what: &str, elapsed: Duration, timeout: Duration) {
    assert!(
        elapsed >= timeout.mul_f64(0.8)
            && elapsed < timeout.mul_f64(1.5) + Duration::from_millis(300),
        "{what}: closed after {elapsed:?}, expected about {timeout:?}"
    );
}

#[tokio::test]
async fn slow_clients_lose_their_connection_within_the_read_timeouts() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, SHORT)).await;
    let second = Duration::from_secs(1);

    // Connects and sends nothing.
    let silent = async {
        let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
        let (answer, elapsed) = read_to_close(&mut stream).await;
        assert_eq!(answer, "");
        closed_by_timeout("a silent connection", elapsed, second);
    };
    // Half the headers, then silence.
    let partial = async {
        let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
        stream
            .write_all(format!("POST /mcp HTTP/1.1\r\n{}", host_line(&gateway)).as_bytes())
            .await
            .unwrap();
        let (answer, elapsed) = read_to_close(&mut stream).await;
        assert_eq!(answer, "");
        closed_by_timeout("partial headers", elapsed, second);
    };
    // Headers a byte every 200 ms, which would go on for ever.
    let trickle = async {
        let stream = TcpStream::connect(addr(&gateway)).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let started = Instant::now();
        let writing = tokio::spawn(async move {
            let header = format!("POST /mcp HTTP/1.1\r\nX-Long: {}", "a".repeat(1000));
            for byte in header.bytes() {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(15), reader.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        closed_by_timeout("trickled headers", started.elapsed(), second);
        writing.abort();
    };
    // Complete headers announcing 100 bytes of body that never come: 408.
    let no_body = async {
        let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
        let request = post(&gateway, &host_line(&gateway), "/mcp", "");
        let request = request.replace("Content-Length: 0", "Content-Length: 100");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (answer, elapsed) = read_to_close(&mut stream).await;
        assert_eq!(status_of(&answer), 408, "{answer}");
        assert!(
            answer.contains("request body not received within 1s"),
            "{answer}"
        );
        closed_by_timeout("a body that never arrives", elapsed, second);
    };
    // A keep-alive connection after its answer: the idle timeout (2 s), not the
    // header timeout, applies.
    let idle = async {
        let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
        let request = post(&gateway, &host_line(&gateway), "/mcp", TOOLS_LIST)
            .replace("Connection: close\r\n", "");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let n = stream.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(status_of(&answer), 200, "{answer}");
        let (rest, elapsed) = read_to_close(&mut stream).await;
        assert!(!rest.contains("HTTP/1.1"), "{rest}");
        closed_by_timeout("an idle keep-alive connection", elapsed, 2 * second);
    };
    tokio::join!(silent, partial, trickle, no_body, idle);

    // Only the one complete request reached the upstream.
    assert_eq!(upstream.seen().len(), 1);
    let records = audit_records(&gateway, 2).await;
    let timed_out = records
        .iter()
        .find(|record| record["status"] == 408)
        .expect("the 408 is audited");
    assert_eq!(timed_out["action"], "deny");
    assert_eq!(timed_out["reason"], "request body not received within 1s");
}

#[tokio::test]
async fn valid_requests_are_answered_while_300_slow_connections_are_open() {
    let upstream = Upstream::start().await;
    // Long enough for every slow connection to still be open when the check runs.
    let gateway = Gateway::start(&config(&upstream.url, "  header_read_timeout: 20s")).await;
    let mut slow = Vec::new();
    for index in 0..300 {
        let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
        if index % 2 == 0 {
            stream
                .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
                .await
                .unwrap();
        }
        slow.push(stream);
    }
    for _ in 0..3 {
        let started = Instant::now();
        let response = gateway.post(Some(&token(&gateway))).await;
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            started.elapsed()
        );
    }
    // The slow ones were indeed all still open.
    for stream in &mut slow {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "a slow connection was closed early: {read:?}"
        );
    }
    assert_eq!(upstream.seen().len(), 3);
}

/// Opens `count` connections that send nothing.
async fn idle_connections(gateway: &Gateway, count: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        open.push(TcpStream::connect(addr(gateway)).await.unwrap());
    }
    open
}

#[tokio::test]
async fn at_the_connection_cap_a_newcomer_takes_the_place_of_an_idle_connection() {
    let upstream = Upstream::start().await;
    // Timeouts far longer than the test: only the cap can close anything.
    let gateway = Gateway::start(&config(
        &upstream.url,
        "  max_connections: 5\n  header_read_timeout: 30s\n  idle_timeout: 30s",
    ))
    .await;
    assert!(
        gateway
            .stderr()
            .contains("at most 5 client connections (server.max_connections)"),
        "{}",
        gateway.stderr()
    );
    let mut held = idle_connections(&gateway, 5).await;
    let started = Instant::now();
    let response = gateway.post(Some(&token(&gateway))).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    // Exactly one of the five idle connections gave up its place.
    let mut closed = 0;
    for stream in &mut held {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
}

#[tokio::test]
async fn at_the_connection_cap_busy_connections_keep_their_place_and_newcomers_wait() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream.url,
        "  max_connections: 2\n  header_read_timeout: 30s\n  idle_timeout: 30s",
    ))
    .await;
    // Two standing GET streams: requests in progress, each on its own connection.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let response = Request::get(&gateway)
            .bearer(&token(&gateway))
            .header("accept", "text/event-stream")
            .send()
            .await;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        futures_util::StreamExt::next(&mut body)
            .await
            .unwrap()
            .unwrap();
        streams.push(body);
    }
    let token = token(&gateway);
    let mcp = gateway.mcp.clone();
    let started = Instant::now();
    let newcomer = tokio::spawn(async move {
        Gateway::client()
            .post(&mcp)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(TOOLS_LIST)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !newcomer.is_finished(),
        "served while both places were busy"
    );
    // One stream ends: its connection goes idle and makes way.
    upstream.release.notify_one();
    let status = tokio::time::timeout(Duration::from_secs(5), newcomer)
        .await
        .expect("served once a place was free")
        .unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(streams);
}

/// With `idle` idle connections held open, a request is still answered at once and
/// accept never ran out of descriptors.
async fn served_past_idle_connections(gateway: &Gateway, idle: usize) {
    let _held = idle_connections(gateway, idle).await;
    let started = Instant::now();
    let response = gateway.post(Some(&token(gateway))).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert!(
        !gateway.stderr().contains("Too many open files"),
        "{}",
        gateway.stderr()
    );
}

#[tokio::test]
async fn a_low_soft_open_file_limit_is_raised_at_start() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start_with_open_files(
        &config(&upstream.url, "  header_read_timeout: 20s"),
        256,
        4096,
    )
    .await;
    assert!(
        gateway.stderr().contains(
            "open-file limit: 4096 (raised from 256); at most 2016 client connections (derived from the limit)"
        ),
        "{}",
        gateway.stderr()
    );
    // More idle connections than the soft limit it was started with.
    served_past_idle_connections(&gateway, 400).await;
}

#[tokio::test]
async fn at_a_low_hard_limit_the_derived_cap_keeps_accept_working() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start_with_open_files(
        &config(&upstream.url, "  header_read_timeout: 30s"),
        256,
        256,
    )
    .await;
    assert!(
        gateway
            .stderr()
            .contains("open-file limit: 256; at most 96 client connections"),
        "{}",
        gateway.stderr()
    );
    // Idle connections past the cap make way; accept never fails.
    served_past_idle_connections(&gateway, 200).await;
}

#[tokio::test]
async fn malformed_chunked_bodies_are_400_and_oversized_ones_still_413() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, "")).await;
    let chunked = |chunks: &str| {
        post(&gateway, &host_line(&gateway), "/mcp", "")
            .replace("Content-Length: 0", "Transfer-Encoding: chunked")
            + chunks
    };
    let bad_size = chunked("zz\r\n{}\r\n0\r\n\r\n");
    let answer = exchange(&gateway, bad_size.as_bytes()).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("malformed request body"), "{answer}");

    // A tiny body behind a 1 MiB chunk extension.
    let extension = chunked(&format!(
        "{:x};ext={}\r\n{TOOLS_LIST}\r\n0\r\n\r\n",
        TOOLS_LIST.len(),
        "a".repeat(1 << 20)
    ));
    let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    // The gateway answers before the extension is all sent: the write may fail.
    let (_, (answer, _)) = tokio::join!(writer.write_all(extension.as_bytes()), async {
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut received))
            .await
            .expect("answered and closed");
        (String::from_utf8_lossy(&received).into_owned(), ())
    });
    assert_eq!(status_of(&answer), 400, "{answer}");

    // Well-formed chunks adding up to more than max_body_bytes (1024).
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"m":"{}"}}}}}}"#,
        "x".repeat(2000)
    );
    let oversized = chunked(&format!(
        "{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        1000,
        &big[..1000],
        big.len() - 1000,
        &big[1000..]
    ));
    let answer = exchange(&gateway, oversized.as_bytes()).await;
    assert_eq!(status_of(&answer), 413, "{answer}");

    // A valid chunked body still goes through.
    let valid = chunked(&format!(
        "{:x}\r\n{TOOLS_LIST}\r\n0\r\n\r\n",
        TOOLS_LIST.len()
    ));
    let answer = exchange(&gateway, valid.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn requests_without_exactly_one_matching_host_are_400_before_authentication() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, "")).await;
    let host = host_line(&gateway);
    let cases = [
        ("no Host", post(&gateway, "", "/mcp", TOOLS_LIST)),
        (
            "two different Hosts",
            post(
                &gateway,
                &format!("{host}Host: other.example\r\n"),
                "/mcp",
                TOOLS_LIST,
            ),
        ),
        (
            "two identical Hosts",
            post(&gateway, &format!("{host}{host}"), "/mcp", TOOLS_LIST),
        ),
        (
            "a Host that is not host[:port]",
            post(&gateway, "Host: a b\r\n", "/mcp", TOOLS_LIST),
        ),
        (
            "Host other than the absolute-form target",
            post(&gateway, &host, "http://other.example/mcp", TOOLS_LIST),
        ),
        (
            "HTTP/1.0 without Host",
            post(&gateway, "", "/mcp", TOOLS_LIST).replace("HTTP/1.1", "HTTP/1.0"),
        ),
        (
            "no Host and no token (the 400 comes before the 401)",
            "GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
                .to_owned(),
        ),
        (
            "no Host on the metadata document",
            "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nConnection: close\r\n\r\n"
                .to_owned(),
        ),
        (
            "two Hosts on an unknown path",
            format!("GET /elsewhere HTTP/1.1\r\n{host}{host}Connection: close\r\n\r\n"),
        ),
    ];
    for (case, request) in &cases {
        let answer = exchange(&gateway, request.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{case}: {answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("www-authenticate"),
            "{case}: {answer}"
        );
        assert!(
            answer.contains("\"error\":\"invalid_request\""),
            "{case}: {answer}"
        );
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    let records = audit_records(&gateway, cases.len()).await;
    assert!(records.iter().all(|record| record["status"] == 400
        && record["action"] == "deny"
        && record["reason"].as_str().unwrap().contains("Host")));

    // One Host, matching: the same requests pass.
    let answer = exchange(
        &gateway,
        post(&gateway, &host, "/mcp", TOOLS_LIST).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let absolute = format!("http://{}/mcp", addr(&gateway));
    let answer = exchange(
        &gateway,
        post(&gateway, &host, &absolute, TOOLS_LIST).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(upstream.seen().len(), 2);
}

#[tokio::test]
async fn http2_requests_are_served_and_an_idle_http2_connection_is_closed() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, SHORT)).await;
    // h2c with prior knowledge: the authority travels as `:authority`, not `Host`.
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .post(&gateway.mcp)
        .bearer_auth(token(&gateway))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(TOOLS_LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.seen().len(), 1);

    // The connection preface and nothing else: closed like an HTTP/1 one.
    let mut stream = TcpStream::connect(addr(&gateway)).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (_, elapsed) = read_to_close(&mut stream).await;
    closed_by_timeout("an idle HTTP/2 connection", elapsed, Duration::from_secs(1));
}

#[test]
fn bad_connection_settings_exit_78_naming_the_key() {
    for (setting, key) in [
        ("header_read_timeout: 0s", "server.header_read_timeout"),
        ("body_read_timeout: never", "server.body_read_timeout"),
        ("idle_timeout: 0s", "server.idle_timeout"),
        ("max_connections: 0", "server.max_connections"),
        ("max_connections: lots", "server.max_connections"),
    ] {
        let (code, _, stderr) = check_config(
            &format!("server:\n  {setting}\nupstream:\n  url: http://127.0.0.1:1/mcp\n"),
            &[],
        );
        assert_eq!(code, 78, "{setting}: {stderr}");
        assert!(
            stderr.starts_with(&format!("config error: {key}: ")),
            "{setting}: {stderr}"
        );
    }
}
