//! The admin endpoints (`/healthz`, `/readyz`, `/metrics`): in process against a
//! gateway built from config, and against the real binary (requests moving counters).
//! Every `/metrics` answer goes through a strict parser of the Prometheus text format.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use arc_swap::ArcSwap;
use serde_json::Value;

// === a strict parser of the Prometheus text format (0.0.4) ===

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        // Rust also reads `inf` or `infinity`; the format does not.
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            text.parse().map_err(|_| format!("bad value {text:?}"))
        }
        _ => Err(format!("bad value {text:?}")),
    }
}

/// `{a="1",b="x\"y"}` → labels; returns the rest of the line after `}`.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {text:?}"))?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {text:?}")),
                },
                Some((at, '"')) => break at,
                Some((_, '\n')) => return Err("raw newline in a label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {text:?}")),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice in {text:?}"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses an exposition, refusing anything the format does not allow (or that
/// prometheus would reject at scrape): unknown comment lines, samples outside their
/// TYPE'd family, duplicate series, histograms whose buckets do not add up.
fn parse_strict(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("exposition does not end with a newline".into());
    }
    let mut samples = Vec::new();
    let mut helped = HashSet::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut family: Option<(String, String)> = None;
    let mut series = HashSet::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let (kind, rest) = comment.split_once(' ').ok_or("bare comment")?;
            let (name, arg) = rest.split_once(' ').ok_or("comment without text")?;
            if !is_metric_name(name) {
                return Err(format!("bad metric name {name:?}"));
            }
            match kind {
                "HELP" if helped.insert(name.to_owned()) => {}
                "TYPE"
                    if ["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg)
                        && !typed.contains_key(name) =>
                {
                    typed.insert(name.to_owned(), arg.to_owned());
                    family = Some((name.to_owned(), arg.to_owned()));
                }
                _ => return Err(format!("unexpected comment line {line:?}")),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(labelled) => parse_labels(labelled)?,
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before the value in {line:?}"))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or_default())?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("bad timestamp in {line:?}"))?;
        }
        if fields.next().is_some() {
            return Err(format!("trailing fields in {line:?}"));
        }
        let (family_name, family_type) = family
            .as_ref()
            .ok_or_else(|| format!("sample before any TYPE: {line:?}"))?;
        let belongs = match family_type.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{family_name}{suffix}")),
            _ => name == family_name,
        };
        if !belongs {
            return Err(format!("{name} outside its family {family_name}"));
        }
        if name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(format!("bucket without le: {line:?}"));
        }
        if !series.insert((name.to_owned(), labels.clone())) {
            return Err(format!("duplicate series {line:?}"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&samples, &typed)?;
    Ok(samples)
}

/// Buckets are cumulative and the `+Inf` bucket equals `_count`.
fn check_histograms(samples: &[Sample], typed: &HashMap<String, String>) -> Result<(), String> {
    for (family, _) in typed.iter().filter(|(_, kind)| *kind == "histogram") {
        let bucket_name = format!("{family}_bucket");
        let mut previous: Option<f64> = None;
        let mut inf = None;
        for bucket in samples.iter().filter(|s| s.name == bucket_name) {
            if previous.is_some_and(|previous| bucket.value < previous) {
                return Err(format!("{family}: buckets not cumulative"));
            }
            previous = Some(bucket.value);
            if bucket.labels["le"] == "+Inf" {
                inf = Some(bucket.value);
            }
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{family}_count"))
            .map(|s| s.value);
        if inf != count || count.is_none() {
            return Err(format!("{family}: +Inf bucket {inf:?} != count {count:?}"));
        }
    }
    Ok(())
}

/// The sum of the samples named `name` whose labels include every pair in `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn the_strict_parser_refuses_what_the_format_does_not_allow() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\\n\"} 2\n";
    assert_eq!(parse_strict(ok).unwrap()[0].labels["x"], "1\"\n");
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total 1",
        "# TYPE a_total counter\na_total 1\na_total 2\n",
        "# TYPE a_total counter\nb_total 1\n",
        "# TYPE a_total counter\na_total{x=\"1} 1\n",
        "# TYPE a_total counter\na_total{1x=\"1\"} 1\n",
        "# TYPE a_total counter\na_total inf\n",
        "# TYPE a gauge\n# random comment\na 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
    ] {
        assert!(parse_strict(bad).is_err(), "accepted {bad:?}");
    }
}

// === in process: a gateway built from config, the admin router on a loopback port ===

async fn build(yaml: &str) -> mcpgate::gateway::Gateways {
    let config = mcpgate::config::load_from_str(yaml).unwrap();
    let client = mcpgate::auth::jwks::idp_client().unwrap();
    match mcpgate::gateway::Gateways::build(config, &client).await {
        Ok(gateway) => gateway,
        Err(error) => panic!("gateway did not build: {error}"),
    }
}

/// Serves the admin router for `gateway`; its base URL.
async fn serve_admin(gateway: Arc<ArcSwap<mcpgate::gateway::Gateways>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mcpgate::server::admin::serve(
        listener,
        gateway,
        std::future::pending(),
    ));
    base
}

async fn get(base: &str, path: &str) -> (u16, String, String) {
    let response = Gateway::client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

async fn scrape(base: &str) -> Vec<Sample> {
    let (status, content_type, body) = get(base, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    parse_strict(&body).unwrap_or_else(|error| panic!("{error} in\n{body}"))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

fn remote_jwks_config(upstream_url: &str, jwks_url: &str, extra: &str) -> String {
    format!(
        "upstream:\n  url: {upstream_url}\nauth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n    jwks:\n      - url: {jwks_url}\n        algorithms: [RS256]\n{extra}"
    )
}

fn hmac_config(upstream_url: &str) -> String {
    format!(
        "upstream:\n  url: {upstream_url}\nauth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n    jwks:\n      - secret: \"{HMAC_SECRET}\"\n"
    )
}

#[tokio::test]
async fn healthz_readyz_and_metrics_answer_for_a_ready_gateway() {
    let jwks = JwksServer::start(Keys::load().jwks()).await;
    let upstream = Upstream::start().await;
    let gateway = build(&remote_jwks_config(&upstream.url, &jwks.url, "")).await;
    let base = serve_admin(Arc::new(ArcSwap::from_pointee(gateway))).await;

    let (status, content_type, body) = get(&base, "/healthz").await;
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("ok")));
    assert!(content_type.starts_with("application/json"));
    let (status, _, body) = get(&base, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), serde_json::json!({"status": "ready"}));

    let samples = scrape(&base).await;
    let fetched = total(
        &samples,
        "mcpgate_jwks_fetches_total",
        &[("provider", "auth.oauth.jwks[0]"), ("result", "ok")],
    );
    assert!(fetched >= 1.0, "{samples:?}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        total(&samples, "mcpgate_build_info", &[("version", version)]),
        1.0
    );
    for name in [
        "mcpgate_open_streams",
        "mcpgate_open_sessions",
        "mcpgate_audit_records_total",
        "mcpgate_config_reloads_total",
        "mcpgate_config_last_reload_success_timestamp_seconds",
        "mcpgate_request_overhead_seconds_count",
        "mcpgate_upstream_duration_seconds_count",
    ] {
        assert!(samples.iter().any(|s| s.name == name), "{name} missing");
    }

    let (status, _, body) = get(&base, "/nope").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"], "not_found");
}

#[tokio::test]
async fn readyz_names_an_unreachable_upstream() {
    let port = free_port();
    let gateway = build(&hmac_config(&format!("http://127.0.0.1:{port}/mcp"))).await;
    let base = serve_admin(Arc::new(ArcSwap::from_pointee(gateway))).await;
    let (status, _, body) = get(&base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body = json(&body);
    assert_eq!(body["status"], "not_ready");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.contains("upstream") && reason.contains(&format!("127.0.0.1:{port}")),
        "{reason}"
    );
    // The process itself is fine.
    assert_eq!(get(&base, "/healthz").await.0, 200);
}

#[tokio::test]
async fn readyz_waits_for_a_jwks_provider_started_not_ready() {
    let jwks = JwksServer::start(Keys::load().jwks()).await;
    jwks.set_failing(true);
    let upstream = Upstream::start().await;
    let gateway = build(&remote_jwks_config(
        &upstream.url,
        &jwks.url,
        "        start_not_ready: true\n",
    ))
    .await;
    let gateway = Arc::new(ArcSwap::from_pointee(gateway));
    let base = serve_admin(Arc::clone(&gateway)).await;

    let (status, _, body) = get(&base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body = json(&body);
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("auth.oauth.jwks[0]"), "{reasons}");
    assert!(!reasons.contains("upstream"), "{reasons}");
    let samples = scrape(&base).await;
    let failed = total(
        &samples,
        "mcpgate_jwks_fetches_total",
        &[("provider", "auth.oauth.jwks[0]"), ("result", "error")],
    );
    assert!(failed >= 1.0, "{samples:?}");

    // The IdP recovers: the refresher (retrying at once) makes the gateway ready.
    jwks.set_failing(false);
    let client = mcpgate::auth::jwks::idp_client().unwrap();
    let refreshers = gateway
        .load()
        .first()
        .auth
        .as_ref()
        .map(|auth| auth.spawn_refreshers(&client))
        .unwrap_or_default();
    let mut ready = false;
    for _ in 0..100 {
        if get(&base, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "not ready after the JWKS recovered");
    let samples = scrape(&base).await;
    let provider = [("provider", "auth.oauth.jwks[0]")];
    assert_eq!(total(&samples, "mcpgate_jwks_keys", &provider), 1.0);
    let age = total(&samples, "mcpgate_jwks_key_age_seconds", &provider);
    assert!((0.0..60.0).contains(&age), "{age}");
    refreshers.iter().for_each(|refresher| refresher.abort());
}

// === the real binary: requests move the counters ===

#[tokio::test]
async fn requests_move_the_counters_of_the_running_binary() {
    let upstream = Upstream::start().await;
    let admin_port = free_port();
    let config = TestConfig::oauth(&upstream.url)
        .server(&format!("admin_listen: 127.0.0.1:{admin_port}"))
        .scopes("initialize: [mcp:connect]");
    let gateway = Gateway::start(&config.build()).await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    let mut up = false;
    for _ in 0..100 {
        if Gateway::client()
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "admin listener not serving; stderr:\n{}",
        gateway.stderr()
    );
    let (status, _, body) = get(&admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    let counts = |samples: &[Sample]| {
        (
            total(samples, "mcpgate_requests_total", &[("decision", "allow")]),
            total(samples, "mcpgate_requests_total", &[("decision", "deny")]),
            total(samples, "mcpgate_auth_failures_total", &[]),
        )
    };
    let before = counts(&scrape(&admin).await);
    let token = hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"));
    for _ in 0..3 {
        assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    }
    assert_eq!(gateway.post(None).await.status(), 401);
    assert_eq!(gateway.post(Some("not-a-token")).await.status(), 401);

    // A request is counted when its audit record is complete, which may be just after
    // the response: wait for the counts to arrive, then check they stop there.
    let expected = (before.0 + 3.0, before.1 + 2.0, before.2 + 2.0);
    for _ in 0..100 {
        if counts(&scrape(&admin).await) == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let samples = scrape(&admin).await;
    assert_eq!(counts(&samples), expected, "from {before:?}");
    assert_eq!(
        total(
            &samples,
            "mcpgate_requests_total",
            &[
                ("http_method", "POST"),
                ("method", "tools/list"),
                ("decision", "allow"),
                ("status", "200")
            ]
        ),
        3.0
    );
    assert_eq!(
        total(
            &samples,
            "mcpgate_auth_failures_total",
            &[("reason", "missing")]
        ),
        1.0
    );
    assert!(total(&samples, "mcpgate_upstream_duration_seconds_count", &[]) >= 3.0);
}
