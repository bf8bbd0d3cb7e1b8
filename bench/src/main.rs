//! mcpgate's benchmark harness (issue #7): starts a fast MCP upstream, runs mcpgate's
//! release binary in front of it under each scenario's configuration, drives load
//! through it, and reports throughput, latency, CPU per request and memory.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml -- --help`

mod cores;
mod curves;
mod gateway;
mod idle;
mod kernel;
mod keys;
mod load;
mod measure;
mod nginx;
mod profile;
mod redis;
mod report;
mod results;
mod scenario;
mod upstream;
mod verify;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Parser;

use scenario::{Bench, Pinning, Scenario, Settings};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks mcpgate against a fast in-process MCP upstream")]
struct Args {
    /// Length of each measured run (closed-loop and fixed-rate alike).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before each closed-loop run that is not measured.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Scenarios to run, comma-separated (default: all; see --list).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Run every scenario this many times, interleaved; each is reported from the
    /// round in which other processes used the least CPU (for shared machines).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second of the fixed-rate latency runs; 0 skips them.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Tools in the upstream's tools/list answer.
    #[arg(long, default_value_t = 1000)]
    tools: usize,
    /// Tokens to pre-mint for jwt-rs256-fresh (default: sized from the passthrough run).
    #[arg(long)]
    fresh_tokens: Option<usize>,
    /// Also write the report into this markdown file, between the harness's markers.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The gateway binary; given, nothing is built.
    #[arg(long)]
    mcpgate: Option<PathBuf>,
    /// Use target/release/mcpgate as it is, without `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// Leave the gateway and the harness free to run on every core.
    #[arg(long)]
    no_pin: bool,
    /// Print the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Instead of timing, count mcpgate's instructions for this many requests per
    /// scenario under valgrind's callgrind (repeatable on a busy machine). The report
    /// goes between its own markers in the --out file.
    #[arg(long, value_name = "REQUESTS")]
    callgrind: Option<usize>,
    /// Open sessions (each holding an SSE stream) at which mcpgate's memory is read,
    /// ascending, comma-separated; measured when no --scenarios are given or when
    /// they include `idle-sessions`.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    idle_sessions: Vec<usize>,
    /// Instead of timing, count mcpgate's instructions for this many requests at every
    /// point of each curve (`curve-*` in --list; lists count fewer as they grow), and
    /// read its memory at each of --curve-sessions open sessions. The report goes
    /// between its own markers in the --out file.
    #[arg(long, value_name = "REQUESTS", conflicts_with = "callgrind")]
    curves: Option<usize>,
    /// Count the gateway's system calls (by name) and the wake-ups it issues during
    /// each closed-loop run with `perf stat` attached to it (nginx's too), for the
    /// table of kernel and user time per request. Needs perf and tracepoints; the
    /// counting slows each system call a little.
    #[arg(long)]
    kernel_counters: bool,
    /// Open sessions at which --curves reads mcpgate's memory, ascending.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,3000,9000")]
    curve_sessions: Vec<usize>,
}

/// The name that selects the idle-sessions measurement in --scenarios.
const IDLE_SESSIONS: &str = "idle-sessions";
/// The name that selects the one-core-against-two runs in --scenarios.
const CORES: &str = "one-vs-two-cores";

fn main() -> Result<()> {
    let args = Args::parse();
    if args.list {
        for scenario in scenario::ALL {
            println!("{:<22} {}", scenario.name(), scenario.describe());
        }
        println!(
            "{IDLE_SESSIONS:<22} memory per open session, at each of --idle-sessions SSE streams held open"
        );
        println!(
            "{CORES:<22} {} closed loop with mcpgate on one core, then on every core (timed)",
            cores::SCENARIO.name()
        );
        println!("with --curves:");
        for curve in curves::ALL {
            println!("{:<22} {}", curve.name(), curve.describe());
        }
        println!(
            "{IDLE_SESSIONS:<22} memory per open session, at each of --curve-sessions SSE streams held open"
        );
        return Ok(());
    }
    let wants = |special: &str| {
        args.scenarios.is_empty() || args.scenarios.iter().any(|name| name.trim() == special)
    };
    let wants_idle = wants(IDLE_SESSIONS);
    let wants_cores = wants(CORES) && args.callgrind.is_none() && args.curves.is_none();
    let named: Vec<String> = args
        .scenarios
        .iter()
        .filter(|name| ![IDLE_SESSIONS, CORES].contains(&name.trim()))
        .cloned()
        .collect();
    let chosen_curves = if args.curves.is_some() && (!named.is_empty() || args.scenarios.is_empty())
    {
        selected_curves(&named)?
    } else {
        Vec::new()
    };
    let mut scenarios = if args.curves.is_some() || (named.is_empty() && !args.scenarios.is_empty())
    {
        Vec::new()
    } else {
        selected(&named)?
    };
    if scenarios
        .iter()
        .any(|scenario| matches!(scenario, Scenario::Nginx | Scenario::NginxList))
        && let Err(error) = nginx::binary()
    {
        eprintln!("skipping the nginx scenarios: {error:#}");
        scenarios.retain(|scenario| !matches!(scenario, Scenario::Nginx | Scenario::NginxList));
    }
    if args.connections == 0 || args.duration.is_zero() || args.rounds == 0 {
        bail!("--connections, --duration and --rounds must be greater than zero");
    }

    // Before anything starts: the gateway inherits the limit.
    let mut idle_levels: Vec<usize> = Vec::new();
    if wants_idle && args.callgrind.is_none() {
        idle_levels = if args.curves.is_some() {
            args.curve_sessions.clone()
        } else {
            args.idle_sessions.clone()
        };
        idle_levels.sort_unstable();
        idle_levels.dedup();
        idle_levels.retain(|&level| level > 0);
        let fits = idle::raise_file_limit(idle_levels.last().copied().unwrap_or(0));
        if idle_levels.iter().any(|&level| level > fits) {
            // Measured at the most the limit allows rather than not at all.
            let largest = fits / 1000 * 1000;
            eprintln!(
                "the open-file limit allows {fits} sessions: measuring at {largest} instead of more"
            );
            idle_levels.retain(|&level| level <= fits);
            if largest > 0 && !idle_levels.contains(&largest) {
                idle_levels.push(largest);
            }
        }
    }
    let pinning = pinning(args.no_pin);
    // Before the runtime starts, so its worker threads inherit the harness's cores.
    measure::pin_current_thread(&pinning.harness);
    let workers = if pinning.harness.is_empty() {
        pinning.all.len()
    } else {
        pinning.harness.len()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()?;
    let wanted = Wanted {
        scenarios,
        curves: chosen_curves,
        idle_levels,
        cores: wants_cores,
    };
    runtime.block_on(run(args, wanted, pinning))
}

/// What a run measures, from --scenarios.
struct Wanted {
    scenarios: Vec<Scenario>,
    curves: Vec<curves::Curve>,
    idle_levels: Vec<usize>,
    cores: bool,
}

async fn run(args: Args, wanted: Wanted, pinning: Pinning) -> Result<()> {
    let Wanted {
        scenarios,
        curves: chosen_curves,
        idle_levels,
        cores: wants_cores,
    } = wanted;
    let binary = gateway_binary(&args)?;
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    eprintln!("gateway: {} ({version})", binary.display());

    let workdir = gateway::WorkDir::create()?;
    let interrupted_workdir = workdir.0.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping the gateway");
            gateway::kill_all();
            let _ = std::fs::remove_dir_all(&interrupted_workdir);
            std::process::exit(130);
        }
    });

    let keys = Arc::new(keys::Keys::generate()?);
    let api_key = gateway::make_api_key(&binary)?;
    let upstream = upstream::start(args.tools, keys.jwks.clone()).await?;
    let settings = Settings {
        duration: args.duration,
        warmup: args.warmup,
        connections: args.connections,
        rate: args.rate.max(0.0),
        tools: args.tools,
        fresh_tokens: args.fresh_tokens,
        rounds: args.rounds,
        kernel_counters: args.kernel_counters,
    };
    let bench = Bench {
        settings: settings.clone(),
        binary,
        keys,
        upstream,
        api_key,
        pinning: pinning.clone(),
        workdir,
        redis: if scenarios.contains(&Scenario::JwtHs256LimitedRedis) {
            Some(redis::Redis::start()?)
        } else {
            None
        },
    };

    if let Some(requests) = args.callgrind {
        return count_instructions(&bench, &scenarios, requests, args.out.as_deref()).await;
    }
    if let Some(requests) = args.curves {
        return count_curves(
            &bench,
            &chosen_curves,
            &idle_levels,
            requests,
            args.out.as_deref(),
        )
        .await;
    }

    let mut rounds: Vec<Vec<results::Measured>> = scenarios.iter().map(|_| Vec::new()).collect();
    let mut passthrough_rps = None;
    let mut invalid = false;
    for round in 1..=args.rounds {
        for (i, scenario) in scenarios.iter().enumerate() {
            let round_tag = if args.rounds > 1 {
                format!("round {round}/{}, ", args.rounds)
            } else {
                String::new()
            };
            eprintln!(
                "[{round_tag}{}/{}] {}: {}",
                i + 1,
                scenarios.len(),
                scenario.name(),
                scenario.describe()
            );
            let measured = scenario::run(&bench, *scenario, passthrough_rps)
                .await
                .with_context(|| format!("scenario {}", scenario.name()))?;
            progress(&measured);
            if let (Scenario::Passthrough, Some(closed)) = (scenario, &measured.closed) {
                passthrough_rps = Some(closed.outcome.throughput());
            }
            invalid |= [&measured.closed, &measured.rate]
                .into_iter()
                .flatten()
                .any(|sample| sample.outcome.errors > 0);
            rounds[i].push(measured);
        }
    }
    let per_round = report::round_ratios(&rounds);
    let results: Vec<results::Measured> = rounds
        .into_iter()
        .filter_map(results::Measured::least_contended)
        .collect();
    let idle = if idle_levels.is_empty() {
        None
    } else {
        eprintln!("{IDLE_SESSIONS}: opening {idle_levels:?} sessions…");
        Some(
            idle::measure(&bench, &idle_levels)
                .await
                .context(IDLE_SESSIONS)?,
        )
    };

    let cores = if wants_cores {
        eprintln!("{CORES}: one core, then every core…");
        match cores::measure(&bench).await {
            Ok(cores) => Some(cores),
            Err(error) => {
                eprintln!("skipping {CORES}: {error:#}");
                None
            }
        }
    } else {
        None
    };
    if let Some(cores) = &cores {
        invalid |= [&cores.one, &cores.all]
            .iter()
            .any(|run| run.sample.outcome.errors > 0);
    }

    let info = report::RunInfo {
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        online_cpus: measure::online_cpus(),
        cpu_model: measure::cpu_model(),
        command: command_line(),
        gateway: format!("`target/release/mcpgate` ({version})"),
        settings,
        pinning,
    };
    let section = report::render(&info, &results, &per_round, idle.as_ref(), cores.as_ref());
    println!("{section}");
    if let Some(path) = &args.out {
        report::write(path, &section)?;
        eprintln!("report written to {}", path.display());
    }
    if invalid {
        bail!("some runs had errors (non-200 answers): see the notes");
    }
    Ok(())
}

/// `--callgrind`: instruction counts instead of timings, for every selected scenario
/// that goes through the gateway.
async fn count_instructions(
    bench: &Bench,
    scenarios: &[Scenario],
    requests: usize,
    out: Option<&Path>,
) -> Result<()> {
    profile::check_tools()?;
    if requests == 0 {
        bail!("--callgrind needs at least one request");
    }
    let mut counted = Vec::new();
    // nginx is the yardstick of the timed runs; callgrind counts mcpgate only.
    for scenario in scenarios.iter().filter(|scenario| {
        scenario.through_gateway() && !matches!(scenario, Scenario::Nginx | Scenario::NginxList)
    }) {
        eprintln!(
            "{}: counting {requests} requests under callgrind…",
            scenario.name()
        );
        let entry = profile::count(bench, *scenario, requests)
            .await
            .with_context(|| format!("scenario {}", scenario.name()))?;
        eprintln!("  {:.0} instructions per request", entry.per_request());
        counted.push(entry);
    }
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let section = profile::render(&date, &command_line(), &counted);
    println!("{section}");
    if let Some(path) = out {
        report::write_marked(path, "callgrind", &section)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// `--curves`: every chosen curve counted under callgrind, then memory per session
/// at each of `levels` (not under callgrind: resident memory is read as it is).
async fn count_curves(
    bench: &Bench,
    chosen: &[curves::Curve],
    levels: &[usize],
    requests: usize,
    out: Option<&Path>,
) -> Result<()> {
    if requests == 0 {
        bail!("--curves needs at least one request");
    }
    if !chosen.is_empty() {
        profile::check_tools()?;
    }
    let mut counted = Vec::new();
    for curve in chosen {
        counted.push(
            curves::count(bench, *curve, requests)
                .await
                .with_context(|| curve.name())?,
        );
    }
    let sessions = if levels.is_empty() {
        None
    } else {
        eprintln!("{IDLE_SESSIONS}: opening {levels:?} sessions…");
        Some(idle::measure(bench, levels).await.context(IDLE_SESSIONS)?)
    };
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let section = curves::render(&date, &command_line(), &counted, sessions.as_ref());
    println!("{section}");
    if let Some(path) = out {
        report::write_marked(path, "curves", &section)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// One line per run on stderr, so a long benchmark shows it is alive.
fn progress(measured: &results::Measured) {
    for (kind, sample) in [("closed", &measured.closed), ("rate", &measured.rate)] {
        if let Some(sample) = sample {
            let outcome = &sample.outcome;
            eprintln!(
                "  {kind}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors, others {:.2} cores",
                outcome.throughput(),
                outcome.percentile_ms(0.5),
                outcome.percentile_ms(0.99),
                outcome.errors,
                sample.competition()
            );
        }
    }
    if let Some(verified) = &measured.verified {
        eprintln!("  {:.0} verifications/s", verified.rate());
    }
}

fn selected(names: &[String]) -> Result<Vec<Scenario>> {
    if names.is_empty() {
        return Ok(scenario::ALL.to_vec());
    }
    let mut chosen = Vec::new();
    for name in names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
    {
        match Scenario::parse(name) {
            Some(scenario) => chosen.push(scenario),
            None => bail!("unknown scenario {name:?} (see --list)"),
        }
    }
    // Always in the canonical order: passthrough sizes the fresh-token pool.
    Ok(scenario::ALL
        .into_iter()
        .filter(|scenario| chosen.contains(scenario))
        .collect())
}

/// The curves named in --scenarios (every curve when none is).
fn selected_curves(names: &[String]) -> Result<Vec<curves::Curve>> {
    let names: Vec<&str> = names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(curves::ALL.to_vec());
    }
    let mut chosen = Vec::new();
    for name in names {
        match curves::Curve::parse(name) {
            Some(curve) => chosen.push(curve),
            None => bail!("unknown curve {name:?} (see --list)"),
        }
    }
    Ok(curves::ALL
        .into_iter()
        .filter(|curve| chosen.contains(curve))
        .collect())
}

/// On two or more cores, mcpgate gets the last one to itself and the harness the
/// rest, so load generation does not eat into what is measured and mcpgate's CPU
/// figures are per core. The load generator and the upstream still share their cores.
fn pinning(disabled: bool) -> Pinning {
    let all = measure::allowed_cpus();
    match all.split_last() {
        Some((&last, rest)) if !disabled && !rest.is_empty() => Pinning {
            harness: rest.to_vec(),
            gateway: vec![last],
            all,
        },
        _ => Pinning {
            all,
            ..Pinning::default()
        },
    }
}

/// The mcpgate binary to measure. By default the repository's release build, brought
/// up to date first: `cargo build --release` is a no-op when nothing changed, and it
/// keeps the figures from describing a stale binary.
fn gateway_binary(args: &Args) -> Result<PathBuf> {
    if let Some(binary) = &args.mcpgate {
        return Ok(binary.clone());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has no parent directory")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target_dir.join("release").join("mcpgate");
    if !args.no_build {
        eprintln!(
            "building mcpgate (cargo build --release) in {}",
            root.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "mcpgate"])
            .current_dir(root)
            .status()
            .context("running cargo build --release")?;
        if !status.success() {
            bail!("cargo build --release failed ({status})");
        }
    }
    if !binary.is_file() {
        bail!(
            "{} does not exist: run `cargo build --release` in the repository root",
            binary.display()
        );
    }
    Ok(binary)
}

/// The command that reproduces this run, as a user would type it.
fn command_line() -> String {
    let mut command = "cargo run --release --manifest-path bench/Cargo.toml --".to_owned();
    for arg in std::env::args().skip(1) {
        command.push(' ');
        if arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:@".contains(c))
        {
            command.push_str(&arg);
        } else {
            command.push('\'');
            command.push_str(&arg.replace('\'', r"'\''"));
            command.push('\'');
        }
    }
    command
}
