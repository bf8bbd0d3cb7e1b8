//! Idle memory per open session: many clients that have initialized a session and
//! hold its standalone SSE stream open (GET), silent, as MCP clients do between
//! calls. mcpgate holds each one's client connection, upstream connection, stream
//! task and session entry; what that costs is its resident memory (`VmRSS`) with
//! the sessions open, less what it was before, per session.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::gateway::{self, Auth, Gateway};
use crate::keys::{self, Alg, Audience};
use crate::load::{self, Credential, Target};
use crate::measure;
use crate::scenario::Bench;
use crate::upstream::{MCP_PATH, SESSION_HEADER};

/// File descriptors each session costs the harness (its client socket, and the
/// upstream's end of mcpgate's connection): the limit is raised to fit.
const FDS_PER_SESSION: u64 = 2;

/// Memory is linear in the sessions when every step between two levels is within
/// this fraction of the mean step.
const LINEAR: f64 = 0.10;

/// What one level of open sessions cost.
pub struct Level {
    pub sessions: usize,
    pub rss_kib: u64,
}

pub struct Idle {
    pub baseline_kib: u64,
    pub levels: Vec<Level>,
    pub notes: Vec<String>,
}

impl Idle {
    /// KiB of resident memory per open session at `level`.
    pub fn per_session_kib(&self, level: &Level) -> f64 {
        level.rss_kib.saturating_sub(self.baseline_kib) as f64 / level.sessions.max(1) as f64
    }

    /// KiB per session between each two consecutive levels: what one more session
    /// costs there, whatever the baseline.
    pub fn steps(&self) -> Vec<f64> {
        self.levels
            .windows(2)
            .filter_map(|pair| match pair {
                [low, high] if high.sessions > low.sessions => Some(
                    (high.rss_kib as f64 - low.rss_kib as f64)
                        / (high.sessions - low.sessions) as f64,
                ),
                _ => None,
            })
            .collect()
    }

    /// Whether memory grows linearly with the sessions: every step within
    /// [`LINEAR`] of the mean step. `None` with fewer than two steps.
    pub fn linearity(&self) -> Option<String> {
        let steps = self.steps();
        if steps.len() < 2 {
            return None;
        }
        let mean = steps.iter().sum::<f64>() / steps.len() as f64;
        let worst = steps
            .iter()
            .map(|step| (step - mean).abs() / mean.abs().max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max);
        let verdict = if worst <= LINEAR {
            format!("**linear (within {:.0} %)**", LINEAR * 100.0)
        } else {
            "**not linear**".to_owned()
        };
        Some(format!(
            "Memory per session: {} KiB per added session between consecutive rows, {mean:.1} \
             on average, the furthest {:.1} % from it: {verdict}",
            steps
                .iter()
                .map(|step| format!("{step:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            worst * 100.0
        ))
    }
}

/// An open session: its connection, and the stream's response kept unread.
struct OpenSession {
    _sender: SendRequest<Full<Bytes>>,
    _stream: hyper::Response<Incoming>,
}

/// Raises the open-file limit so that `sessions` fit, before any gateway starts (it
/// inherits the limit). Returns how many sessions fit the limit obtained.
pub fn raise_file_limit(sessions: usize) -> usize {
    let wanted = sessions as u64 * FDS_PER_SESSION + 1024;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.max(limit.rlim_cur),
                rlim_max: wanted.max(limit.rlim_max),
            };
            // Raising the hard limit needs CAP_SYS_RESOURCE; else up to the hard one.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                let soft = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            }
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    (limit.rlim_cur.saturating_sub(1024) / FDS_PER_SESSION) as usize
}

/// Opens sessions up to each of `levels` (ascending) and reads mcpgate's memory at each.
pub async fn measure(bench: &Bench, levels: &[usize]) -> Result<Idle> {
    let mut notes = Vec::new();
    let token = keys::bearer(&bench.keys.mint(
        Alg::Hs256,
        &Audience {
            issuer: gateway::ISSUER.to_owned(),
            audience: gateway::AUDIENCE.to_owned(),
        },
        0,
    )?)?;
    let auth = Auth::Hs256 {
        secret: bench.keys.hmac_secret.clone(),
    };
    // Sessions kept in memory (the default store), unlike the other scenarios.
    let config = gateway::config(gateway::free_addr()?, &bench.upstream.mcp_url(), &auth)
        .replace("session:\n  stateless: true\n", "");
    let mut gateway = Gateway::spawn(
        &[],
        &bench.binary,
        &bench.workdir.0,
        "idle-sessions",
        &config,
        &bench.pinning.gateway,
    )?;
    let probe = Target::new(
        gateway.addr,
        MCP_PATH,
        crate::scenario::Scenario::JwtHs256.body(),
        Credential::One(token.clone()),
    )?;
    gateway.wait_ready(&probe).await?;
    // Warm-up: the paths a session takes, once each, so first-use allocations (and
    // the allocator's arenas) are in the baseline, not charged to the sessions.
    load::sequential(&probe, 200).await?;
    let mut open = Vec::new();
    for _ in 0..50 {
        open.push(open_session(&gateway, &token).await?);
    }
    drop(open);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline_kib = measure::rss_kib(gateway.pid)?;

    let mut sessions: Vec<OpenSession> = Vec::new();
    let mut results = Vec::new();
    for &level in levels {
        while sessions.len() < level {
            let session = open_session(&gateway, &token)
                .await
                .with_context(|| format!("opening session {}", sessions.len() + 1))?;
            sessions.push(session);
        }
        // Let the gateway finish what the last opens started.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_kib = measure::rss_kib(gateway.pid)?;
        eprintln!(
            "  {level} open sessions: RSS {} KiB ({:+} KiB)",
            rss_kib,
            rss_kib as i64 - baseline_kib as i64
        );
        results.push(Level {
            sessions: level,
            rss_kib,
        });
    }
    notes.push(format!(
        "each session: an initialize (HS256 token, in-memory session store), then a GET \
         whose SSE stream stays open and silent; {} sessions at most",
        levels.iter().max().copied().unwrap_or(0)
    ));
    drop(sessions);
    Ok(Idle {
        baseline_kib,
        levels: results,
        notes,
    })
}

/// A new connection, an initialize, then the session's standing GET stream on it.
async fn open_session(gateway: &Gateway, token: &HeaderValue) -> Result<OpenSession> {
    let mut sender = load::connect(gateway.addr).await?;
    let initialize = request(
        gateway,
        Method::POST,
        token,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#,
    )?;
    sender.ready().await?;
    let response = sender.send_request(initialize).await?;
    let status = response.status();
    let session = response.headers().get(SESSION_HEADER).cloned();
    let body = response.into_body().collect().await?.to_bytes();
    let Some(session) = session.filter(|_| status == StatusCode::OK) else {
        bail!(
            "initialize answered {status} without a session: {}",
            String::from_utf8_lossy(&body)
        );
    };
    let get = request(gateway, Method::GET, token, Some(session), "")?;
    sender.ready().await?;
    let stream = sender.send_request(get).await?;
    if stream.status() != StatusCode::OK {
        bail!("the session's GET stream answered {}", stream.status());
    }
    Ok(OpenSession {
        _sender: sender,
        _stream: stream,
    })
}

fn request(
    gateway: &Gateway,
    method: Method,
    token: &HeaderValue,
    session: Option<HeaderValue>,
    body: &str,
) -> Result<Request<Full<Bytes>>> {
    let accept = if method == Method::GET {
        "text/event-stream"
    } else {
        "application/json, text/event-stream"
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(MCP_PATH)
        .header(header::HOST, gateway.addr.to_string())
        .header(header::ACCEPT, accept)
        .header(header::AUTHORIZATION, token.clone())
        .header("mcp-protocol-version", "2025-06-18");
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(session) = session {
        builder = builder.header(SESSION_HEADER, session);
    }
    Ok(builder.body(Full::new(Bytes::copy_from_slice(body.as_bytes())))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(levels: &[(usize, u64)]) -> Idle {
        Idle {
            baseline_kib: 10_000,
            levels: levels
                .iter()
                .map(|&(sessions, rss_kib)| Level { sessions, rss_kib })
                .collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn steps_are_kib_per_session_between_levels() {
        let linear = idle(&[(100, 12_000), (1_000, 30_000), (3_000, 70_000)]);
        assert_eq!(linear.steps(), vec![20.0, 20.0]);
        assert!(linear.linearity().unwrap().contains("**linear"));
        let bent = idle(&[(100, 12_000), (1_000, 30_000), (3_000, 90_000)]);
        assert_eq!(bent.steps(), vec![20.0, 30.0]);
        assert!(bent.linearity().unwrap().contains("**not linear**"));
        assert!(
            idle(&[(100, 12_000), (1_000, 30_000)])
                .linearity()
                .is_none()
        );
    }
}
