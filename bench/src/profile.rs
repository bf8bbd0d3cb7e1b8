//! `--callgrind N`: what one request costs mcpgate in instructions, counted by
//! valgrind's callgrind. Unlike seconds, the count does not move with what else the
//! machine is doing, so two builds (or two scenarios) compare exactly, on a shared
//! machine too. Only the requests are counted: the gateway starts with
//! instrumentation off, is warmed up, and `callgrind_control` turns counting on for
//! exactly `N` requests and dumps the counts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::gateway::Gateway;
use crate::load::{self, Target};
use crate::scenario::{self, Bench, Scenario};
use crate::upstream::MCP_PATH;

/// Requests before counting starts: caches filled, connections pooled, code paths
/// taken once.
pub const WARMUP_REQUESTS: usize = 200;

/// Functions listed per scenario in the report.
const TOP_FUNCTIONS: usize = 12;

/// One scenario's count.
pub struct Counted {
    pub scenario: Scenario,
    pub requests: usize,
    pub instructions: u64,
    /// `callgrind_annotate`'s heaviest functions (exclusive counts), as printed.
    pub top: Vec<String>,
}

impl Counted {
    pub fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }
}

/// Whether valgrind and its tools are installed.
pub fn check_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["valgrind", "callgrind_control", "callgrind_annotate"] {
        if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
            bail!("{tool} not found: install valgrind (Debian: apt-get install valgrind)");
        }
    }
    Ok(())
}

/// Counts `requests` requests of `scenario` through a gateway run under callgrind.
pub async fn count(bench: &Bench, scenario: Scenario, requests: usize) -> Result<Counted> {
    if !scenario.through_gateway() {
        bail!("{} does not go through mcpgate", scenario.name());
    }
    let mut notes = Vec::new();
    // A fresh-token pool large enough for the probe, the warm-up and the count.
    let credential =
        scenario::credential(bench, scenario, WARMUP_REQUESTS + requests + 10, &mut notes)?;
    let (wrapper, out) = wrapper(scenario.name())?;
    let mut gateway = scenario::spawn_gateway(bench, scenario, &wrapper)?
        .context("the scenario has no gateway")?;
    let target = Target::new(gateway.addr, MCP_PATH, scenario.body(), credential)?;
    gateway
        .wait_ready_within(&target, Duration::from_secs(180))
        .await?;
    scenario::check_answer(scenario, &target, bench.settings.tools)
        .await
        .with_context(|| format!("{}: wrong answer\n{}", scenario.name(), gateway.log_tail()))?;
    let (instructions, top) =
        count_running(&gateway, &out, &target, WARMUP_REQUESTS, requests).await?;
    Ok(Counted {
        scenario,
        requests,
        instructions,
        top,
    })
}

/// The valgrind command line a counted gateway runs under, and the dump file it
/// writes (named after `name`, in [`dump_dir`]). An old dump of that name is removed.
pub fn wrapper(name: &str) -> Result<(Vec<String>, PathBuf)> {
    let out = dump_dir()?.join(format!("{name}.callgrind"));
    let _ = std::fs::remove_file(first_dump_path(&out));
    let wrapper = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        "--instr-atstart=no".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    Ok((wrapper, out))
}

/// Counts `requests` requests to `target` through `gateway` (started with
/// [`wrapper`]'s command line, ready, its answers checked), after `warmup` uncounted
/// ones. Returns the instructions and the heaviest functions.
pub async fn count_running(
    gateway: &Gateway,
    out: &Path,
    target: &Target,
    warmup: usize,
    requests: usize,
) -> Result<(u64, Vec<String>)> {
    load::sequential(target, warmup).await?;
    control(gateway.pid, "--instr=on")?;
    let errors = load::sequential(target, requests).await?;
    control(gateway.pid, "--dump=counted")?;
    control(gateway.pid, "--instr=off")?;
    if errors > 0 {
        bail!(
            "{errors} of {requests} requests failed:\n{}",
            gateway.log_tail()
        );
    }
    let dump = first_dump(out)?;
    Ok((total(&dump)?, annotate(&dump)?))
}

fn control(pid: u32, action: &str) -> Result<()> {
    let output = Command::new("callgrind_control")
        .arg(action)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// callgrind names a dump requested while running `<out-file>.1` (and the final one,
/// at exit, `<out-file>`).
fn first_dump(out: &Path) -> Result<PathBuf> {
    let path = first_dump_path(out);
    // The dump is written by the gateway after callgrind_control returns.
    for _ in 0..100 {
        if std::fs::metadata(&path).is_ok_and(|meta| meta.len() > 0) {
            std::thread::sleep(Duration::from_millis(200));
            return Ok(path);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("callgrind wrote no dump at {}", path.display())
}

fn first_dump_path(out: &Path) -> PathBuf {
    let mut path = out.as_os_str().to_owned();
    path.push(".1");
    PathBuf::from(path)
}

/// Where dumps are kept after the run, for `callgrind_annotate` or KCachegrind:
/// `bench/target/callgrind/`.
pub fn dump_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("callgrind");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The `summary:` (or `totals:`) line of a dump: every instruction counted.
fn total(dump: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(dump).with_context(|| format!("reading {}", dump.display()))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .context("the dump has no summary line")?
        .parse()
        .context("the dump's summary is not a number")
}

/// The heaviest functions by their own instructions, from `callgrind_annotate`.
fn annotate(dump: &Path) -> Result<Vec<String>> {
    let output = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg(dump)
        .output()
        .context("running callgrind_annotate")?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| line.contains('(') && line.contains(':') && line.contains('%'))
        .take(TOP_FUNCTIONS)
        .map(shorten)
        .collect())
}

/// `1,234 (5.6%)  /path/to/file.rs:crate::function [/path/binary]` → `5.6% crate::function`.
fn shorten(line: &str) -> String {
    let share = line
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("", |(share, _)| share);
    let name = line
        .split_once(')')
        .map_or(line, |(_, rest)| rest.trim())
        .rsplit_once(" [")
        .map_or_else(|| line.trim(), |(name, _)| name);
    let name = name.split_once(':').map_or(name, |(file, function)| {
        if file.contains('/') || file.starts_with("???") {
            function
        } else {
            name
        }
    });
    let name: String = name.chars().take(110).collect();
    format!("{share} {name}")
}

/// The markdown section: instructions per request, against the passthrough.
pub fn render(date: &str, command: &str, counted: &[Counted]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "## Instructions per request (callgrind), {date}\n");
    let _ = writeln!(text, "- Command: `{command}`");
    let _ = writeln!(
        text,
        "- Counted: the requests only, after {WARMUP_REQUESTS} uncounted ones, one connection, one request at a time"
    );
    let _ = writeln!(
        text,
        "- Dumps: `bench/target/callgrind/<scenario>.callgrind.1` (`callgrind_annotate --inclusive=yes FILE`)\n"
    );
    let passthrough = counted
        .iter()
        .find(|counted| counted.scenario == Scenario::Passthrough)
        .map(Counted::per_request);
    let _ = writeln!(
        text,
        "| scenario | requests | instructions / request | × passthrough | added vs passthrough |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|");
    for entry in counted {
        let per = entry.per_request();
        let (ratio, added) = match passthrough {
            Some(base) if base > 0.0 => {
                (format!("{:.2}", per / base), format!("{:+.0}", per - base))
            }
            _ => ("—".to_owned(), "—".to_owned()),
        };
        let _ = writeln!(
            text,
            "| {} | {} | {:.0} | {ratio} | {added} |",
            entry.scenario.name(),
            entry.requests,
            per
        );
    }
    for entry in counted {
        let _ = writeln!(
            text,
            "\n<details><summary>{}: heaviest functions (own instructions)</summary>\n\n```",
            entry.scenario.name()
        );
        for line in &entry.top {
            let _ = writeln!(text, "{line}");
        }
        let _ = writeln!(text, "```\n</details>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_share_and_function() {
        let line = "1,234,567 (12.34%)  ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S:__memmove_avx_unaligned_erms [/usr/lib/x86_64-linux-gnu/libc.so.6]";
        assert_eq!(shorten(line), "12.34% __memmove_avx_unaligned_erms");
        let line = "9 (0.01%)  ???:mcpgate::auth::bearer::extract [/tmp/mcpgate]";
        assert_eq!(shorten(line), "0.01% mcpgate::auth::bearer::extract");
    }

    #[test]
    fn total_reads_the_summary_line() {
        let dir = std::env::temp_dir().join(format!("bench-profile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dump");
        std::fs::write(&path, "version: 1\nevents: Ir\nsummary: 4242\nfn=x\n").unwrap();
        assert_eq!(total(&path).unwrap(), 4242);
        std::fs::write(&path, "events: Ir\n").unwrap();
        assert!(total(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
