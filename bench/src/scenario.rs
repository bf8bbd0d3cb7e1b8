//! The scenarios: what is in front of the upstream, which credential each request
//! carries, and which MCP request it is. Each one starts its own gateway, checks that
//! the answers are right, warms up, then measures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::gateway::{self, AUDIENCE, Auth, Gateway, ISSUER, WorkDir};
use crate::kernel;
use crate::keys::{self, Alg, Audience, Keys};
use crate::load::{self, Credential, Pace, Target, TokenPool};
use crate::measure;
use crate::results::{Measured, Sample};
use crate::upstream::{self, MCP_PATH};
use crate::verify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Direct,
    DirectList,
    Nginx,
    NginxList,
    Passthrough,
    PassthroughList,
    JwtHs256,
    JwtHs256Limited,
    JwtHs256LimitedRedis,
    JwtRs256,
    JwtEs256,
    JwtRs256Fresh,
    ApiKey,
    Introspected,
    ListFiltered,
    VerifyRs256,
}

/// The order scenarios run and are reported in. Passthrough runs before the fresh-token
/// scenario so its throughput can size the token pool.
pub const ALL: [Scenario; 16] = [
    Scenario::Direct,
    Scenario::DirectList,
    Scenario::Nginx,
    Scenario::NginxList,
    Scenario::Passthrough,
    Scenario::PassthroughList,
    Scenario::JwtHs256,
    Scenario::JwtHs256Limited,
    Scenario::JwtHs256LimitedRedis,
    Scenario::JwtRs256,
    Scenario::JwtEs256,
    Scenario::JwtRs256Fresh,
    Scenario::ApiKey,
    Scenario::Introspected,
    Scenario::ListFiltered,
    Scenario::VerifyRs256,
];

/// Which credential a scenario's requests carry.
enum Credentials {
    None,
    /// One token for the whole run: a verified-token cache hit after the first request.
    Token(Alg),
    /// A new token on every request: a cache miss, a full signature verification.
    Fresh(Alg),
    ApiKey,
    /// An opaque token, introspected once and then cached.
    Opaque,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::DirectList => "direct-list-1000",
            Self::Nginx => "nginx",
            Self::NginxList => "nginx-list-1000",
            Self::Passthrough => "passthrough",
            Self::PassthroughList => "passthrough-list-1000",
            Self::JwtHs256 => "jwt-hs256",
            Self::JwtHs256Limited => "jwt-hs256-limited",
            Self::JwtHs256LimitedRedis => "jwt-hs256-limited-redis",
            Self::JwtRs256 => "jwt-rs256",
            Self::JwtEs256 => "jwt-es256",
            Self::JwtRs256Fresh => "jwt-rs256-fresh",
            Self::ApiKey => "api-key",
            Self::Introspected => "introspected",
            Self::ListFiltered => "list-1000-filtered",
            Self::VerifyRs256 => "verify-rs256",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Direct => "tools/call straight to the upstream, no gateway",
            Self::DirectList => "tools/list (all tools) straight to the upstream",
            Self::Nginx => {
                "tools/call through a bare nginx reverse proxy (keep-alive, no buffering)"
            }
            Self::NginxList => "tools/list (all tools) through the same bare nginx",
            Self::Passthrough => "tools/call through mcpgate with auth off",
            Self::PassthroughList => {
                "tools/list (all tools) through mcpgate with auth off: no filtering"
            }
            Self::JwtHs256 => "tools/call, HS256 JWT, one token (cache hit)",
            Self::JwtHs256Limited => {
                "jwt-hs256 with two rate limits (per subject, per subject and tool) that never refuse"
            }
            Self::JwtHs256LimitedRedis => {
                "jwt-hs256-limited with the limits counted in a local redis-server (shared by replicas)"
            }
            Self::JwtRs256 => "tools/call, RS256 JWT from a JWKS, one token (cache hit)",
            Self::JwtEs256 => "tools/call, ES256 JWT from a JWKS, one token (cache hit)",
            Self::JwtRs256Fresh => "tools/call, RS256 JWT, a new token per request (cache miss)",
            Self::ApiKey => "tools/call with an argon2id API key (cached after the first)",
            Self::Introspected => "tools/call, opaque token, RFC 7662 introspection (cached)",
            Self::ListFiltered => "tools/list, HS256 JWT, half of the tools hidden by a glob rule",
            Self::VerifyRs256 => "raw RS256 verification on one core, no HTTP (crypto limit)",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        ALL.into_iter().find(|scenario| scenario.name() == name)
    }

    /// Whether the scenario sends `tools/list` (else `tools/call`).
    pub fn lists(self) -> bool {
        matches!(
            self,
            Self::DirectList | Self::NginxList | Self::PassthroughList | Self::ListFiltered
        )
    }

    pub fn through_gateway(self) -> bool {
        !matches!(self, Self::Direct | Self::DirectList | Self::VerifyRs256)
    }

    fn credentials(self) -> Credentials {
        match self {
            Self::Direct
            | Self::DirectList
            | Self::Nginx
            | Self::NginxList
            | Self::Passthrough
            | Self::PassthroughList
            | Self::VerifyRs256 => Credentials::None,
            Self::JwtHs256
            | Self::JwtHs256Limited
            | Self::JwtHs256LimitedRedis
            | Self::ListFiltered => Credentials::Token(Alg::Hs256),
            Self::JwtRs256 => Credentials::Token(Alg::Rs256),
            Self::JwtEs256 => Credentials::Token(Alg::Es256),
            Self::JwtRs256Fresh => Credentials::Fresh(Alg::Rs256),
            Self::ApiKey => Credentials::ApiKey,
            Self::Introspected => Credentials::Opaque,
        }
    }

    pub fn body(self) -> &'static str {
        if self.lists() {
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#
        } else {
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#
        }
    }
}

/// How a run is set up, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    /// Requests per second of the fixed-rate runs; 0 skips them.
    pub rate: f64,
    pub tools: usize,
    /// Size of the fresh-token pool; `None` sizes it from the passthrough's throughput.
    pub fresh_tokens: Option<usize>,
    /// Times every scenario runs; the least contended round is reported.
    pub rounds: usize,
    /// Count the gateway's system calls and wake-ups with `perf stat` (closed loop).
    pub kernel_counters: bool,
}

/// Which cores the harness and the gateway run on; empty means unpinned.
#[derive(Debug, Clone, Default)]
pub struct Pinning {
    pub harness: Vec<usize>,
    pub gateway: Vec<usize>,
    pub all: Vec<usize>,
}

/// Everything the scenarios share.
pub struct Bench {
    pub settings: Settings,
    pub binary: PathBuf,
    pub keys: Arc<Keys>,
    pub upstream: upstream::Running,
    /// An API key and its argon2id hash.
    pub api_key: (String, String),
    pub pinning: Pinning,
    pub workdir: WorkDir,
    /// Started when a scenario counts its limits in Redis.
    pub redis: Option<crate::redis::Redis>,
}

/// Runs one scenario. `passthrough_rps` (if measured already) sizes the token pool.
pub async fn run(
    bench: &Bench,
    scenario: Scenario,
    passthrough_rps: Option<f64>,
) -> Result<Measured> {
    let mut measured = Measured {
        scenario,
        closed: None,
        rate: None,
        verified: None,
        notes: Vec::new(),
    };
    if scenario == Scenario::VerifyRs256 {
        measured.verified = Some(crypto_limit(bench).await?);
        return Ok(measured);
    }
    let settings = &bench.settings;
    // Credentials first: minting a pool is CPU-heavy and must finish before the
    // gateway runs.
    let warmup_tokens = settings
        .fresh_tokens
        .unwrap_or_else(|| warmup_pool_size(settings, passthrough_rps));
    let credential = credential(bench, scenario, warmup_tokens, &mut measured.notes)?;
    let mut gateway = spawn_gateway(bench, scenario, &[])?;
    let addr = gateway
        .as_ref()
        .map_or(bench.upstream.addr, |gateway| gateway.addr);
    let target = Arc::new(Target::new(addr, MCP_PATH, scenario.body(), credential)?);
    if let Some(gateway) = gateway.as_mut() {
        gateway.wait_ready(&target).await?;
    }
    check_answer(scenario, &target, settings.tools)
        .await
        .with_context(|| {
            let log = gateway.as_ref().map(Gateway::log_tail).unwrap_or_default();
            format!("{}: wrong answer\n{log}", scenario.name())
        })?;

    let warmup = load::run(
        Arc::clone(&target),
        Pace::Closed,
        settings.connections,
        settings.warmup,
    )
    .await?;
    // Fresh tokens for the measured runs, as many as the warm-up's pace calls for
    // (unless --fresh-tokens fixed one pool for everything).
    let target = match scenario.credentials() {
        Credentials::Fresh(alg) if settings.fresh_tokens.is_none() => {
            let count = measured_pool_size(settings, warmup.throughput());
            let pool = fresh_pool(bench, alg, count, warmup_tokens as u64, &mut measured.notes)?;
            Arc::new(Target::new(addr, MCP_PATH, scenario.body(), pool)?)
        }
        _ => target,
    };
    let closed = sample(
        &target,
        gateway.as_ref(),
        Pace::Closed,
        settings,
        &bench.workdir.0,
    )
    .await?;
    if closed.outcome.exhausted {
        measured.notes.push(format!(
            "the token pool ran out after {:.1} s of the closed-loop run",
            closed.outcome.elapsed.as_secs_f64()
        ));
    }
    measured.closed = Some(closed);
    if settings.rate > 0.0 {
        let rate = sample(
            &target,
            gateway.as_ref(),
            Pace::Rate(settings.rate),
            settings,
            &bench.workdir.0,
        )
        .await?;
        if rate.outcome.exhausted {
            measured.notes.push(format!(
                "the token pool ran out after {:.1} s of the fixed-rate run",
                rate.outcome.elapsed.as_secs_f64()
            ));
        }
        measured.rate = Some(rate);
    }
    Ok(measured)
}

/// The scenario's gateway (none for the direct scenarios), run by `wrapper` when it
/// is not empty.
pub fn spawn_gateway(
    bench: &Bench,
    scenario: Scenario,
    wrapper: &[String],
) -> Result<Option<Gateway>> {
    spawn_gateway_on(bench, scenario, wrapper, &bench.pinning.gateway)
}

/// [`spawn_gateway`] on the cores `cpus` (every core when empty).
pub fn spawn_gateway_on(
    bench: &Bench,
    scenario: Scenario,
    wrapper: &[String],
    cpus: &[usize],
) -> Result<Option<Gateway>> {
    if !scenario.through_gateway() {
        return Ok(None);
    }
    if matches!(scenario, Scenario::Nginx | Scenario::NginxList) {
        return crate::nginx::spawn(&bench.workdir.0, bench.upstream.addr, cpus).map(Some);
    }
    let auth = match scenario.credentials() {
        Credentials::None => Auth::Off,
        Credentials::Token(Alg::Hs256) => Auth::Hs256 {
            secret: bench.keys.hmac_secret.clone(),
        },
        Credentials::Token(_) | Credentials::Fresh(_) => Auth::Jwks {
            url: bench.upstream.jwks_url(),
        },
        Credentials::ApiKey => Auth::ApiKey {
            hash: bench.api_key.1.clone(),
        },
        Credentials::Opaque => Auth::Introspection {
            url: bench.upstream.introspection_url(),
        },
    };
    let mut config = gateway::config(gateway::free_addr()?, &bench.upstream.mcp_url(), &auth);
    if matches!(
        scenario,
        Scenario::JwtHs256Limited | Scenario::JwtHs256LimitedRedis
    ) {
        // Rates no load reaches: every request pays for two charges, none is refused.
        config.push_str(
            "limits:\n  rules:\n    \
             - { name: per-user, key: subject, rate: 1000000000/s }\n    \
             - { name: per-user-tool, key: [subject, tool], rate: 1000000000/s }\n",
        );
    }
    if scenario == Scenario::JwtRs256Fresh {
        // Every request brings a token never seen, all from one address: the
        // built-in per-address limit would refuse most (it is what it is for).
        config.push_str("limits:\n  unauthenticated: { enabled: false, rate: 1/s }\n");
    }
    if scenario == Scenario::JwtHs256LimitedRedis {
        let redis = bench
            .redis
            .as_ref()
            .context("the redis scenario needs the harness's redis-server")?;
        // Stateless still connects to a Redis `store`, for the limits.
        config = config.replacen(
            "session:\n  stateless: true\n",
            &format!("session:\n  stateless: true\n  store: {}\n", redis.url()),
            1,
        );
    }
    Gateway::spawn(
        wrapper,
        &bench.binary,
        &bench.workdir.0,
        scenario.name(),
        &config,
        cpus,
    )
    .map(Some)
}

/// The credential of the warm-up (and, for all but fresh tokens, of every run).
/// `tokens` is the size of a fresh-token pool.
pub fn credential(
    bench: &Bench,
    scenario: Scenario,
    tokens: usize,
    notes: &mut Vec<String>,
) -> Result<Credential> {
    Ok(match scenario.credentials() {
        Credentials::None => Credential::None,
        Credentials::Token(alg) => {
            Credential::One(keys::bearer(&bench.keys.mint(alg, &audience(), 0)?)?)
        }
        Credentials::ApiKey => Credential::One(keys::bearer(&bench.api_key.0)?),
        Credentials::Opaque => Credential::One(keys::bearer(upstream::OPAQUE_TOKEN)?),
        Credentials::Fresh(alg) => fresh_pool(bench, alg, tokens, 0, notes)?,
    })
}

pub fn audience() -> Audience {
    Audience {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
    }
}

/// `count` new tokens, serials from `first` on (so no two pools share a token).
/// Minted while no load runs: RSA signing is costly, and must not compete with the
/// gateway for CPU during a measurement.
fn fresh_pool(
    bench: &Bench,
    alg: Alg,
    count: usize,
    first: u64,
    notes: &mut Vec<String>,
) -> Result<Credential> {
    let cores = bench.pinning.all.len().max(1);
    eprintln!(
        "  minting {count} {} tokens on {cores} core(s)…",
        alg.name()
    );
    let started = Instant::now();
    let pool = keys::mint_pool(
        &bench.keys,
        alg,
        &audience(),
        first..first + count as u64,
        cores,
        &bench.pinning.all,
    )?;
    let took = started.elapsed().as_secs_f64();
    notes.push(format!(
        "{count} tokens minted in {took:.1} s ({:.0} signatures/s on {cores} core(s)) while no \
         load ran",
        count as f64 / took
    ));
    Ok(Credential::Pool(Arc::new(TokenPool::new(pool))))
}

/// Fresh tokens for the warm-up: a cache miss is no faster than the passthrough.
fn warmup_pool_size(settings: &Settings, passthrough_rps: Option<f64>) -> usize {
    let rps = passthrough_rps.unwrap_or(10_000.0);
    ((rps * settings.warmup.as_secs_f64() * 1.1) as usize + 100).clamp(1_000, 100_000)
}

/// Fresh tokens for the measured runs, sized from the rate the warm-up reached (with
/// a margin), plus the fixed-rate run's. Bounded: RSA signing runs at a few thousand
/// per second per core, and each token is used once.
fn measured_pool_size(settings: &Settings, warmup_rps: f64) -> usize {
    let seconds = settings.duration.as_secs_f64();
    let wanted = warmup_rps.max(1_000.0) * seconds * 1.25 + settings.rate * seconds + 1_000.0;
    (wanted as usize).clamp(5_000, 300_000)
}

/// One request through the scenario, checked for the answer it must give: the echo,
/// or a tool list of the right length.
pub async fn check_answer(scenario: Scenario, target: &Target, tools: usize) -> Result<()> {
    let (status, body) = load::probe(target).await?;
    if status != http::StatusCode::OK {
        bail!("status {status}: {}", String::from_utf8_lossy(&body));
    }
    let answer: Value = serde_json::from_slice(&body).context("answer is not JSON")?;
    if scenario.lists() {
        let expected = if scenario == Scenario::ListFiltered {
            upstream::visible_tools(tools)
        } else {
            tools
        };
        let got = answer
            .pointer("/result/tools")
            .and_then(Value::as_array)
            .map(Vec::len);
        if got != Some(expected) {
            bail!("expected {expected} tools, got {got:?}");
        }
    } else if answer.pointer("/result/content/0/text") != Some(&Value::from("hello")) {
        bail!("expected the echo, got {answer}");
    }
    Ok(())
}

/// A measured run, with the gateway's CPU time and memory around it.
pub async fn sample(
    target: &Arc<Target>,
    gateway: Option<&Gateway>,
    pace: Pace,
    settings: &Settings,
    workdir: &Path,
) -> Result<Sample> {
    let pid = gateway.map(|gateway| gateway.pid);
    let own = std::process::id();
    let counting = match pid {
        Some(pid) if settings.kernel_counters && matches!(pace, Pace::Closed) => Some(
            kernel::start(pid, &workdir.join(format!("perf-stat-{pid}.csv")))?,
        ),
        _ => None,
    };
    let gateway_before = pid.map(measure::cpu_split).transpose()?;
    let switches_before = pid.map(measure::context_switches).transpose()?;
    let harness_before = measure::cpu_seconds(own)?;
    let machine_before = measure::machine_busy_seconds()?;
    let outcome = load::run(
        Arc::clone(target),
        pace,
        settings.connections,
        settings.duration,
    )
    .await?;
    let harness_cpu = measure::cpu_seconds(own)? - harness_before;
    let gateway_split = match (pid, gateway_before) {
        (Some(pid), Some(before)) => Some(measure::cpu_split(pid)? - before),
        _ => None,
    };
    let gateway_switches = match (pid, switches_before) {
        (Some(pid), Some(before)) => Some(measure::context_switches(pid)? - before),
        _ => None,
    };
    let gateway_kernel = counting.map(kernel::Counting::stop).transpose()?;
    let gateway_cpu = gateway_split.map(|split| split.user + split.system);
    let machine = measure::machine_busy_seconds()? - machine_before;
    let gateway_rss_kib = pid.map(measure::peak_rss_kib).transpose()?;
    Ok(Sample {
        outcome,
        gateway_cpu,
        gateway_split,
        gateway_switches,
        gateway_kernel,
        harness_cpu,
        gateway_rss_kib,
        others_cpu: (machine - harness_cpu - gateway_cpu.unwrap_or(0.0)).max(0.0),
    })
}

/// verify-rs256, on the gateway's core when the gateway has one: the same core the
/// fresh-token scenario's verifications run on.
async fn crypto_limit(bench: &Bench) -> Result<verify::Verified> {
    let token = bench.keys.mint(Alg::Rs256, &audience(), 0)?;
    let jwk = bench.keys.rsa_jwk.clone();
    let cpus = bench.pinning.gateway.clone();
    let duration = bench.settings.duration;
    let thread = std::thread::spawn(move || {
        measure::pin_current_thread(&cpus);
        verify::run(&token, &jwk, duration)
    });
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("verification thread panicked"))?
}
