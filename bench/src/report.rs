//! The markdown report: tables of what each scenario measured, the ratios that the
//! targets of issue #7 are stated in, and how the run was made. Ratios lead, because
//! absolute figures move from machine to machine.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cores::{self, Cores};
use crate::idle::Idle;
use crate::results::{Measured, Sample};
use crate::scenario::{Pinning, Scenario, Settings};

/// How the run was made, for the report's header.
pub struct RunInfo {
    pub date: String,
    pub online_cpus: usize,
    pub cpu_model: String,
    pub command: String,
    pub gateway: String,
    pub settings: Settings,
    pub pinning: Pinning,
}

pub fn render(
    info: &RunInfo,
    results: &[Measured],
    per_round: &str,
    idle: Option<&Idle>,
    cores: Option<&Cores>,
) -> String {
    let mut out = String::new();
    header(&mut out, info);
    closed_table(&mut out, info, results);
    kernel_table(&mut out, results);
    rate_table(&mut out, info, results);
    if let Some(idle) = idle {
        idle_table(&mut out, idle);
    }
    if let Some(cores) = cores {
        cores_table(&mut out, info, cores);
    }
    targets(&mut out, results, idle);
    out.push_str(per_round);
    notes(&mut out, info, results);
    out
}

fn header(out: &mut String, info: &RunInfo) {
    let s = &info.settings;
    let _ = writeln!(out, "## Results of {}\n", info.date);
    let _ = writeln!(
        out,
        "- Machine: {} cores online, {}",
        info.online_cpus, info.cpu_model
    );
    let _ = writeln!(out, "- Command: `{}`", info.command);
    let _ = writeln!(out, "- Gateway: {}", info.gateway);
    let pinning = if info.pinning.gateway.is_empty() {
        "none: mcpgate and the harness share every core".to_owned()
    } else {
        format!(
            "mcpgate on CPU {}, the harness (load generator and upstream) on CPU {}",
            cpus(&info.pinning.gateway),
            cpus(&info.pinning.harness)
        )
    };
    let _ = writeln!(out, "- Pinning: {pinning}");
    let _ = writeln!(
        out,
        "- Load: {} keep-alive HTTP/1.1 connections; every run {} after a {} warm-up; \
         upstream `tools/list` has {} tools",
        s.connections,
        humantime::format_duration(s.duration),
        humantime::format_duration(s.warmup),
        s.tools
    );
    if s.rounds > 1 {
        let _ = writeln!(
            out,
            "- Rounds: {}, interleaved; each row is the round in which other processes used \
             the least CPU",
            s.rounds
        );
    }
    out.push('\n');
}

/// The passthrough's closed-loop run for the same MCP method as `scenario`.
fn passthrough(results: &[Measured], scenario: Scenario) -> Option<&Sample> {
    let base = if scenario.lists() {
        Scenario::PassthroughList
    } else {
        Scenario::Passthrough
    };
    results
        .iter()
        .find(|m| m.scenario == base)
        .and_then(|m| m.closed.as_ref())
}

/// Requests per CPU-second of mcpgate: what one dedicated, saturated core would
/// serve. Unlike req/s, it does not depend on how much CPU the gateway was given.
fn per_cpu_second(sample: &Sample) -> Option<f64> {
    sample
        .gateway_cpu
        .filter(|&cpu| cpu > 0.0)
        .map(|cpu| sample.outcome.ok as f64 / cpu)
}

fn closed_table(out: &mut String, info: &RunInfo, results: &[Measured]) {
    let _ = writeln!(
        out,
        "### Peak throughput (closed loop, {} connections)\n",
        info.settings.connections
    );
    let _ = writeln!(
        out,
        "| scenario | req/s | p50 ms | p99 ms | mcpgate CPU-s / 10k req | \
         × passthrough, req/s | × passthrough, per CPU-s | mcpgate peak RSS MiB | \
         harness cores busy | other processes, cores | errors |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for measured in results {
        if let Some(verified) = &measured.verified {
            let per_second = verified.count as f64 / verified.elapsed.as_secs_f64();
            let _ = writeln!(
                out,
                "| {} | {} verifications/s | {:.3} | {:.3} | {:.2} (one core, no HTTP) | — | — | — | — | — | 0 |",
                measured.scenario.name(),
                thousands(per_second),
                verified.latency.value_at_quantile(0.5) as f64 / 1e6,
                verified.latency.value_at_quantile(0.99) as f64 / 1e6,
                10_000.0 / per_second,
            );
            continue;
        }
        let Some(sample) = &measured.closed else {
            continue;
        };
        let base = passthrough(results, measured.scenario);
        let by_rps = base.map(|base| sample.outcome.throughput() / base.outcome.throughput());
        let by_cpu = base
            .and_then(per_cpu_second)
            .zip(per_cpu_second(sample))
            .map(|(base, this)| this / base);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            measured.scenario.name(),
            thousands(sample.outcome.throughput()),
            sample.outcome.percentile_ms(0.5),
            sample.outcome.percentile_ms(0.99),
            cpu_per_10k(sample),
            ratio(by_rps),
            ratio(by_cpu),
            rss_mib(sample),
            sample.harness_cpu / sample.outcome.elapsed.as_secs_f64(),
            sample.competition(),
            sample.outcome.errors,
        );
    }
    out.push('\n');
}

/// Where each closed-loop request's CPU went: the process's own code (user) or the
/// kernel's work for it (system), how often its threads stopped, and (with
/// `--kernel-counters`) its system calls, against nginx's hop in the same run.
fn kernel_table(out: &mut String, results: &[Measured]) {
    let rows: Vec<(Scenario, &Sample)> = results
        .iter()
        .filter_map(|m| Some((m.scenario, m.closed.as_ref()?)))
        .filter(|(_, sample)| sample.gateway_split.is_some() && sample.outcome.ok > 0)
        .collect();
    if rows.is_empty() {
        return;
    }
    let per_request = |sample: &Sample, value: f64| value / sample.outcome.ok as f64;
    let nginx = |scenario: Scenario| {
        let base = if scenario.lists() {
            Scenario::NginxList
        } else {
            Scenario::Nginx
        };
        rows.iter()
            .find(|(other, _)| *other == base)
            .and_then(|(_, sample)| Some((*sample, sample.gateway_split?)))
    };
    let counted = rows.iter().any(|(_, s)| s.gateway_kernel.is_some());
    let _ = writeln!(
        out,
        "### User and kernel time per request (closed loop)\n\n\
         From the kernel's accounting of the gateway process (`/proc/PID/stat` utime and \
         stime, every thread's `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches`); \
         the × nginx columns divide by the nginx row of the same kind (list or not).\n"
    );
    let mut head = "| scenario | CPU µs / req | user µs / req | system µs / req | system share | \
         × nginx, user | × nginx, system | sleeps / req | preempted / req |"
        .to_owned();
    let mut rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned();
    if counted {
        head.push_str(" syscalls / req |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for (scenario, sample) in &rows {
        let Some(split) = sample.gateway_split else {
            continue;
        };
        let us = |seconds: f64| format!("{:.1}", per_request(sample, seconds) * 1e6);
        let total = split.user + split.system;
        let (by_user, by_system) = match nginx(*scenario) {
            Some((base, base_split)) if base_split.user > 0.0 && base_split.system > 0.0 => (
                ratio(Some(
                    per_request(sample, split.user) / per_request(base, base_split.user),
                )),
                ratio(Some(
                    per_request(sample, split.system) / per_request(base, base_split.system),
                )),
            ),
            _ => ("—".to_owned(), "—".to_owned()),
        };
        let switches = |pick: fn(&crate::measure::Switches) -> u64| {
            sample.gateway_switches.map_or("—".to_owned(), |switches| {
                format!("{:.2}", per_request(sample, pick(&switches) as f64))
            })
        };
        let mut line = format!(
            "| {} | {} | {} | {} | {:.0} % | {by_user} | {by_system} | {} | {} |",
            scenario.name(),
            us(total),
            us(split.user),
            us(split.system),
            if total > 0.0 {
                split.system / total * 100.0
            } else {
                0.0
            },
            switches(|s| s.voluntary),
            switches(|s| s.involuntary),
        );
        if counted {
            match &sample.gateway_kernel {
                Some(counts) => {
                    let _ = write!(
                        line,
                        " {:.2} |",
                        per_request(sample, counts.syscalls as f64)
                    );
                }
                None => line.push_str(" — |"),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    if counted {
        syscall_table(out, &rows);
    }
}

/// System calls per request by name, for the runs perf counted; a name no run made
/// is left out.
fn syscall_table(out: &mut String, rows: &[(Scenario, &Sample)]) {
    let names: Vec<&str> = crate::kernel::BY_NAME
        .iter()
        .copied()
        .filter(|name| {
            rows.iter().any(|(_, sample)| {
                sample.gateway_kernel.as_ref().is_some_and(|counts| {
                    counts
                        .by_name
                        .iter()
                        .any(|(counted, value)| counted == name && *value > 0)
                })
            })
        })
        .collect();
    let _ = writeln!(
        out,
        "### System calls per request by name (closed loop, `perf stat` tracepoints)\n"
    );
    let _ = writeln!(
        out,
        "| scenario | {} | other |",
        names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|{}---:|", "---:|".repeat(names.len()));
    for (scenario, sample) in rows {
        let Some(counts) = &sample.gateway_kernel else {
            continue;
        };
        let requests = sample.outcome.ok as f64;
        let mut named = 0;
        let cells: Vec<String> = names
            .iter()
            .map(|name| {
                let value = counts
                    .by_name
                    .iter()
                    .find(|(counted, _)| counted == name)
                    .map_or(0, |(_, value)| *value);
                named += value;
                format!("{:.2}", value as f64 / requests)
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} |",
            scenario.name(),
            cells.join(" | "),
            counts.syscalls.saturating_sub(named) as f64 / requests
        );
    }
    out.push('\n');
}

fn rate_table(out: &mut String, info: &RunInfo, results: &[Measured]) {
    if info.settings.rate <= 0.0 {
        return;
    }
    let direct_p99 = |list: bool| {
        let base = if list {
            Scenario::DirectList
        } else {
            Scenario::Direct
        };
        results
            .iter()
            .find(|m| m.scenario == base)
            .and_then(|m| m.rate.as_ref())
            .map(|s| s.outcome.percentile_ms(0.99))
    };
    let _ = writeln!(
        out,
        "### Latency at a fixed {} req/s\n",
        thousands(info.settings.rate)
    );
    let _ = writeln!(
        out,
        "| scenario | req/s | p50 ms | p99 ms | p99.9 ms | p99 added vs direct, ms | \
         mcpgate CPU-s / 10k req | other processes, cores | errors | late |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for measured in results {
        let Some(sample) = &measured.rate else {
            continue;
        };
        let lists = matches!(
            measured.scenario,
            Scenario::DirectList | Scenario::PassthroughList | Scenario::ListFiltered
        );
        let added = match (measured.scenario, direct_p99(lists)) {
            (Scenario::Direct | Scenario::DirectList, _) | (_, None) => "—".to_owned(),
            (_, Some(direct)) => format!("{:+.3}", sample.outcome.percentile_ms(0.99) - direct),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {added} | {} | {:.2} | {} | {} |",
            measured.scenario.name(),
            thousands(sample.outcome.throughput()),
            sample.outcome.percentile_ms(0.5),
            sample.outcome.percentile_ms(0.99),
            sample.outcome.percentile_ms(0.999),
            cpu_per_10k(sample),
            sample.competition(),
            sample.outcome.errors,
            sample.outcome.late,
        );
    }
    out.push('\n');
}

/// Throughput on one core against every core, and what the second core adds.
fn cores_table(out: &mut String, info: &RunInfo, cores: &Cores) {
    let _ = writeln!(
        out,
        "### Throughput on one core versus two ({}, closed loop, {} connections)\n",
        cores::SCENARIO.name(),
        info.settings.connections
    );
    let _ = writeln!(
        out,
        "| mcpgate on CPU | req/s | p50 ms | p99 ms | mcpgate cores busy | mcpgate CPU-s / 10k req | harness cores busy | other processes, cores | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in [&cores.one, &cores.all] {
        let sample = &run.sample;
        let seconds = sample.outcome.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {} | {} | {:.2} | {:.2} | {} |",
            cpus(&run.gateway_cpus),
            thousands(sample.outcome.throughput()),
            sample.outcome.percentile_ms(0.5),
            sample.outcome.percentile_ms(0.99),
            sample
                .gateway_cpu
                .map_or("—".to_owned(), |cpu| format!("{:.2}", cpu / seconds)),
            cpu_per_10k(sample),
            sample.harness_cpu / seconds,
            sample.competition(),
            sample.outcome.errors,
        );
    }
    let _ = writeln!(
        out,
        "\n- Every core over one: {:.2}× the requests per second. The load generator and the \
         upstream stay on CPU {} in both runs, so with mcpgate allowed every core they share \
         one with it: the second core is not mcpgate's alone.\n",
        cores.scaling(),
        cpus(&cores.harness_cpus)
    );
}

/// Memory per open session, with what each step between two counts added per session
/// (the curve is linear when those steps agree).
pub fn idle_table(out: &mut String, idle: &Idle) {
    let _ = writeln!(out, "### Idle open sessions (SSE streams held open)\n");
    let _ = writeln!(
        out,
        "| open sessions | mcpgate RSS MiB | above the baseline ({:.1} MiB), MiB | KiB per session | KiB per session since the previous row |",
        idle.baseline_kib as f64 / 1024.0
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    let steps = idle.steps();
    for (index, level) in idle.levels.iter().enumerate() {
        let step = index
            .checked_sub(1)
            .and_then(|previous| steps.get(previous))
            .map_or("—".to_owned(), |step| format!("{step:.1}"));
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {step} |",
            thousands(level.sessions as f64),
            level.rss_kib as f64 / 1024.0,
            level.rss_kib.saturating_sub(idle.baseline_kib) as f64 / 1024.0,
            idle.per_session_kib(level)
        );
    }
    if let Some(linearity) = idle.linearity() {
        let _ = writeln!(out, "\n- {linearity}.");
    }
    for note in &idle.notes {
        let _ = writeln!(out, "\n- {note}.");
    }
    out.push('\n');
}

/// The targets of issue #7, each with its verdict.
/// The cached-token ratios of every round, each from that round's own runs: on a
/// shared machine the rounds can differ by more than the margin a target is judged
/// on, and a ratio must never mix a scenario from one round with a passthrough from
/// another. `rounds` is indexed by scenario, then by round.
pub fn round_ratios(rounds: &[Vec<Measured>]) -> String {
    let mut out = String::new();
    let count = rounds.iter().map(Vec::len).max().unwrap_or(0);
    if count < 2 {
        return out;
    }
    let in_round = |scenario: Scenario, round: usize| {
        rounds
            .iter()
            .find(|runs| runs.first().is_some_and(|m| m.scenario == scenario))
            .and_then(|runs| runs.get(round))
            .and_then(|m| m.closed.as_ref())
    };
    let mut lines = Vec::new();
    for scenario in [
        Scenario::JwtHs256,
        Scenario::JwtHs256Limited,
        Scenario::JwtHs256LimitedRedis,
        Scenario::JwtRs256,
        Scenario::JwtEs256,
        Scenario::Introspected,
    ] {
        let mut ratios: Vec<f64> = (0..count)
            .filter_map(|round| {
                let sample = in_round(scenario, round)?;
                let base = in_round(Scenario::Passthrough, round)?;
                Some(per_cpu_second(sample)? / per_cpu_second(base)?)
            })
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let cells: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
        ratios.sort_by(f64::total_cmp);
        let median = median(&ratios);
        lines.push(format!(
            "| {} | {} | {median:.2}× | {} |",
            scenario.name(),
            cells.join(" | "),
            if median >= 0.85 { "met" } else { "**not met**" }
        ));
    }
    if lines.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "### Cached token against passthrough, round by round\n\n\
         Per mcpgate CPU-second, each ratio from one round's own runs; the target \
         (≥ 0.85×) is judged on the median.\n"
    );
    let heads: Vec<String> = (1..=count).map(|round| format!("round {round}")).collect();
    let _ = writeln!(out, "| scenario | {} | median | |", heads.join(" | "));
    let _ = writeln!(out, "|---|{}---:|---|", "---:|".repeat(count));
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    out
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    match (sorted.get(middle.wrapping_sub(1)), sorted.get(middle)) {
        (Some(low), Some(high)) if sorted.len().is_multiple_of(2) => (low + high) / 2.0,
        (_, Some(value)) => *value,
        _ => f64::NAN,
    }
}

fn targets(out: &mut String, results: &[Measured], idle: Option<&Idle>) {
    let find = |scenario: Scenario| results.iter().find(|m| m.scenario == scenario);
    let closed = |scenario: Scenario| find(scenario).and_then(|m| m.closed.as_ref());
    let rate = |scenario: Scenario| find(scenario).and_then(|m| m.rate.as_ref());
    let cpu_ms_per_request = |sample: &Sample| {
        sample
            .gateway_cpu
            .filter(|_| sample.outcome.ok > 0)
            .map(|cpu| cpu / sample.outcome.ok as f64 * 1e3)
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();

    for scenario in [
        Scenario::JwtHs256,
        Scenario::JwtHs256Limited,
        Scenario::JwtHs256LimitedRedis,
        Scenario::JwtRs256,
        Scenario::JwtEs256,
        Scenario::Introspected,
    ] {
        let (Some(sample), Some(base)) = (closed(scenario), passthrough(results, scenario)) else {
            continue;
        };
        let Some(by_cpu) = per_cpu_second(sample)
            .zip(per_cpu_second(base))
            .map(|(this, base)| this / base)
        else {
            continue;
        };
        let by_rps = sample.outcome.throughput() / base.outcome.throughput();
        rows.push((
            format!(
                "{}: cached token ≥ 0.85× passthrough throughput (per mcpgate CPU-second)",
                scenario.name()
            ),
            format!("{by_cpu:.2}× (req/s: {by_rps:.2}×)"),
            verdict(by_cpu >= 0.85, &[sample, base]),
        ));
    }

    let verified = find(Scenario::VerifyRs256).and_then(|m| m.verified.as_ref());
    if let (Some(fresh), Some(verified)) = (closed(Scenario::JwtRs256Fresh), verified) {
        let limit = verified.count as f64 / verified.elapsed.as_secs_f64();
        let rps = fresh.outcome.throughput();
        rows.push((
            "jwt-rs256-fresh: throughput vs raw verifications/s on one core".to_owned(),
            format!(
                "{} / {} = {:.2}×",
                thousands(rps),
                thousands(limit),
                rps / limit
            ),
            "(context)".to_owned(),
        ));
        if let Some(fresh_cpu) = cpu_ms_per_request(fresh) {
            let per_core = 1e3 / fresh_cpu;
            rows.push((
                "jwt-rs256-fresh: whole requests per mcpgate CPU-second vs raw verifications/s"
                    .to_owned(),
                format!(
                    "{} / {} = {:.2}×",
                    thousands(per_core),
                    thousands(limit),
                    per_core / limit
                ),
                "(context)".to_owned(),
            ));
            // Issue #21: what a never-seen token adds to a request whose token is
            // cached, against one raw verification on one core.
            if let Some((cached, cached_cpu)) = closed(Scenario::JwtRs256)
                .and_then(|cached| cpu_ms_per_request(cached).map(|cpu| (cached, cpu)))
            {
                let extra_us = (fresh_cpu - cached_cpu) * 1e3;
                let raw_us = 1e6 / limit;
                rows.push((
                    "jwt-rs256-fresh: extra CPU of a never-seen token over a cached one \
                     ≤ 1.3× one raw verification (#21)"
                        .to_owned(),
                    format!(
                        "{extra_us:.1} µs / {raw_us:.1} µs = {:.2}×",
                        extra_us / raw_us
                    ),
                    verdict(extra_us / raw_us <= 1.3, &[fresh, cached]),
                ));
            }
        }
    }

    // Issue #21: every scenario, each against the upstream answering the same request.
    for scenario in crate::scenario::ALL.iter().copied().filter(|scenario| {
        scenario.through_gateway() && !matches!(scenario, Scenario::Nginx | Scenario::NginxList)
    }) {
        let direct = if scenario.lists() {
            Scenario::DirectList
        } else {
            Scenario::Direct
        };
        if let (Some(sample), Some(direct)) = (rate(scenario), rate(direct)) {
            let added = sample.outcome.percentile_ms(0.99) - direct.outcome.percentile_ms(0.99);
            rows.push((
                format!(
                    "{}: p99 added latency ≤ 1 ms at the fixed rate",
                    scenario.name()
                ),
                format!("{added:+.3} ms"),
                verdict(added <= 1.0, &[sample, direct]),
            ));
        }
    }
    let lists = closed(Scenario::ListFiltered).zip(closed(Scenario::PassthroughList));
    if let Some((filtered_run, unfiltered_run)) = lists
        && let (Some(filtered), Some(unfiltered)) = (
            cpu_ms_per_request(filtered_run),
            cpu_ms_per_request(unfiltered_run),
        )
    {
        let added = filtered - unfiltered;
        rows.push((
            "list-1000-filtered: filtering a 1,000-tool list ≤ 1 ms (mcpgate CPU per list, \
             filtered minus passthrough-list; includes the cached JWT check)"
                .to_owned(),
            format!("{filtered:.3} − {unfiltered:.3} = {added:.3} ms"),
            verdict(added <= 1.0, &[filtered_run, unfiltered_run]),
        ));
    }
    // Issue #21: against a bare nginx on the same request, CPU and peak RSS.
    for (scenario, yardstick, bound) in [
        (Scenario::Passthrough, Scenario::Nginx, 1.3),
        (Scenario::PassthroughList, Scenario::NginxList, 1.3),
        (Scenario::JwtHs256, Scenario::Nginx, 1.5),
        (Scenario::JwtRs256, Scenario::Nginx, 1.5),
        (Scenario::JwtEs256, Scenario::Nginx, 1.5),
        (Scenario::Introspected, Scenario::Nginx, 1.5),
        (Scenario::ApiKey, Scenario::Nginx, 1.5),
        (Scenario::ListFiltered, Scenario::NginxList, 1.5),
    ] {
        let (Some(sample), Some(nginx)) = (closed(scenario), closed(yardstick)) else {
            continue;
        };
        if let Some(cpu) = cpu_ms_per_request(sample)
            .zip(cpu_ms_per_request(nginx))
            .map(|(this, nginx)| this / nginx)
        {
            rows.push((
                format!(
                    "{}: CPU per request ≤ {bound}× {}'s (#21)",
                    scenario.name(),
                    yardstick.name()
                ),
                format!("{cpu:.2}×"),
                verdict(cpu <= bound, &[sample, nginx]),
            ));
        }
        if let Some(rss) = sample
            .gateway_rss_kib
            .zip(nginx.gateway_rss_kib)
            .map(|(this, nginx)| this as f64 / nginx as f64)
        {
            rows.push((
                format!(
                    "{}: peak RSS ≤ 2× {}'s (#21)",
                    scenario.name(),
                    yardstick.name()
                ),
                format!("{rss:.2}×"),
                verdict(rss <= 2.0, &[sample, nginx]),
            ));
        }
    }
    if let Some(idle) = idle {
        for level in &idle.levels {
            let per = idle.per_session_kib(level);
            rows.push((
                format!(
                    "≤ 20 KiB RSS per idle open session, at {} SSE streams",
                    thousands(level.sessions as f64)
                ),
                format!("{per:.1} KiB"),
                if per <= 20.0 { "met" } else { "**not met**" }.to_owned(),
            ));
        }
    }

    let _ = writeln!(out, "### Against the targets of issues #7 and #21\n");
    let _ = writeln!(out, "| target | measured | |");
    let _ = writeln!(out, "|---|---|---|");
    for (target, measured, verdict) in rows {
        let _ = writeln!(out, "| {target} | {measured} | {verdict} |");
    }
    out.push('\n');
}

fn notes(out: &mut String, info: &RunInfo, results: &[Measured]) {
    let mut lines = Vec::new();
    for measured in results {
        let name = measured.scenario.name();
        for note in &measured.notes {
            lines.push(format!("{name}: {note}."));
        }
        for (kind, sample) in [
            ("closed-loop", &measured.closed),
            ("fixed-rate", &measured.rate),
        ] {
            let Some(sample) = sample else { continue };
            if sample.outcome.errors > 0 {
                lines.push(format!(
                    "**{name} ({kind}) is not a valid run: {} errors**; the first: {}",
                    sample.outcome.errors,
                    sample.outcome.first_error.as_deref().unwrap_or("?")
                ));
            }
            if sample.outcome.late > sample.outcome.ok / 100 {
                lines.push(format!(
                    "{name} ({kind}): {} requests left more than 5 ms after their slot: \
                     the rate was not held.",
                    sample.outcome.late
                ));
            }
        }
        let harness_cores = info.pinning.harness.len().max(1) as f64;
        if let Some(sample) = &measured.closed {
            let busy = sample.harness_cpu / sample.outcome.elapsed.as_secs_f64();
            if !info.pinning.harness.is_empty() && busy > 0.9 * harness_cores {
                lines.push(format!(
                    "{name}: the harness used {busy:.2} of its {harness_cores} core(s): its \
                     peak throughput may be the load generator's limit, not the gateway's."
                ));
            }
        }
    }
    let contended = results
        .iter()
        .flat_map(|m| [&m.closed, &m.rate])
        .flatten()
        .map(Sample::competition)
        .fold(0.0, f64::max);
    if contended > CONTENDED {
        lines.push(format!(
            "**Other processes competed for the CPU** (up to {contended:.2} cores during a run; \
             see the column; verdicts resting on such a run say so). Competition lowers req/s \
             and raises latency; it also raises mcpgate's CPU per request (fewer requests per \
             wake-up, caches shared with the intruder), though less. Trust the rows with the \
             least competition, or run with `--rounds N` to report each scenario's least \
             contended round."
        ));
    }
    lines.push(
        "The throughput targets are judged on requests per mcpgate CPU-second: the \
         throughput of one saturated core given to mcpgate alone, which req/s only shows on \
         an otherwise idle machine."
            .to_owned(),
    );
    lines.push(
        "Latency is from writing the request to reading the last byte of the answer. \
         Fixed-rate requests are sent on a schedule over the same connections; `late` counts \
         those sent more than 5 ms after their slot (the schedule slipped)."
            .to_owned(),
    );
    lines.push(
        "CPU seconds come from the kernel's accounting of the mcpgate process \
         (`/proc/PID/stat` utime + stime); peak RSS is its `VmHWM` after the closed-loop run."
            .to_owned(),
    );
    let _ = writeln!(out, "### Notes\n");
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
}

fn cpu_per_10k(sample: &Sample) -> String {
    match sample.gateway_cpu {
        Some(cpu) if sample.outcome.ok > 0 => {
            format!("{:.2}", cpu / sample.outcome.ok as f64 * 10_000.0)
        }
        _ => "—".to_owned(),
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("—".to_owned(), |value| format!("{value:.2}"))
}

fn rss_mib(sample: &Sample) -> String {
    sample.gateway_rss_kib.map_or("—".to_owned(), |kib| {
        format!("{:.1}", kib as f64 / 1024.0)
    })
}

/// Other processes using more than this many cores during a run make its figures
/// doubtful.
const CONTENDED: f64 = 0.1;

/// "met" or "not met", flagged when a run it rests on had competition for the CPU.
fn verdict(met: bool, samples: &[&Sample]) -> String {
    let verdict = if met { "met" } else { "**not met**" };
    if samples
        .iter()
        .any(|sample| sample.competition() > CONTENDED)
    {
        format!("{verdict} (contended run)")
    } else {
        verdict.to_owned()
    }
}

fn cpus(list: &[usize]) -> String {
    list.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `12345.6` → `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Puts `section` into `path` between the harness's markers, keeping everything else
/// in the file (the profile findings written by hand, for instance). A file without
/// markers gets the section appended; a missing file is created.
pub fn write(path: &Path, section: &str) -> Result<()> {
    write_marked(path, "bench", section)
}

/// Writes `section` between the markers named `marker` (one file holds the load
/// figures and the instruction counts, each rewritten by its own kind of run).
pub fn write_marked(path: &Path, marker: &str, section: &str) -> Result<()> {
    let begin_prefix = format!("<!-- {marker}:begin");
    let end = format!("<!-- {marker}:end -->");
    let block = format!(
        "{begin_prefix} (written by the harness; edits here are overwritten) -->\n{section}{end}\n"
    );
    let existing = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let text = match existing {
        None => format!(
            "# Benchmarks\n\nWhat mcpgate costs per request, measured by the harness in `bench/` \
             (see issue #7). Re-run it with the command below; the section between the \
             markers is rewritten, the rest of this file is kept.\n\n{block}"
        ),
        Some(text) => match (text.find(&begin_prefix), text.find(&end)) {
            (Some(at), Some(until)) if at < until => {
                format!(
                    "{}{block}{}",
                    &text[..at],
                    text[until + end.len()..].trim_start_matches('\n')
                )
            }
            _ => format!("{}\n\n{block}", text.trim_end()),
        },
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(scenario: Scenario, ok: u64, cpu: f64) -> Measured {
        Measured {
            scenario,
            closed: Some(Sample {
                outcome: crate::load::Outcome {
                    ok,
                    errors: 0,
                    first_error: None,
                    latency: hdrhistogram::Histogram::new(3).unwrap(),
                    elapsed: std::time::Duration::from_secs(10),
                    late: 0,
                    exhausted: false,
                },
                gateway_cpu: Some(cpu),
                gateway_split: None,
                gateway_switches: None,
                gateway_kernel: None,
                harness_cpu: 1.0,
                gateway_rss_kib: None,
                others_cpu: 0.0,
            }),
            rate: None,
            verified: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn round_ratios_pair_each_scenario_with_its_own_rounds_passthrough() {
        // Passthrough: 1,000 requests per CPU-second in round 1, 2,000 in round 2.
        let rounds = vec![
            vec![
                closed(Scenario::Passthrough, 1000, 1.0),
                closed(Scenario::Passthrough, 2000, 1.0),
                closed(Scenario::Passthrough, 1000, 1.0),
            ],
            vec![
                closed(Scenario::JwtHs256, 800, 1.0),
                closed(Scenario::JwtHs256, 1900, 1.0),
                closed(Scenario::JwtHs256, 900, 1.0),
            ],
        ];
        let table = round_ratios(&rounds);
        assert!(
            table.contains("| jwt-hs256 | 0.80× | 0.95× | 0.90× | 0.90× | met |"),
            "{table}"
        );
        // One round: nothing to compare.
        let single = vec![vec![closed(Scenario::Passthrough, 1, 1.0)]];
        assert!(round_ratios(&single).is_empty());
    }

    #[test]
    fn kernel_table_splits_user_and_system_time_against_nginx() {
        let with_split = |scenario, user: f64, system: f64, syscalls: u64| {
            let mut measured = closed(scenario, 10_000, user + system);
            if let Some(sample) = measured.closed.as_mut() {
                sample.gateway_split = Some(crate::measure::CpuSplit { user, system });
                sample.gateway_switches = Some(crate::measure::Switches {
                    voluntary: 1_000,
                    involuntary: 0,
                });
                sample.gateway_kernel = Some(crate::kernel::Counts {
                    syscalls,
                    by_name: vec![("writev", 20_000), ("epoll_wait", 0)],
                });
            }
            measured
        };
        // 10,000 requests: nginx 0.04 s user and 0.16 s system, the passthrough 0.18
        // and 0.17.
        let results = vec![
            with_split(Scenario::Nginx, 0.04, 0.16, 64_000),
            with_split(Scenario::Passthrough, 0.18, 0.17, 41_000),
        ];
        let mut out = String::new();
        kernel_table(&mut out, &results);
        assert!(
            out.contains("| nginx | 20.0 | 4.0 | 16.0 | 80 % | 1.00 | 1.00 | 0.10 | 0.00 | 6.40 |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| passthrough | 35.0 | 18.0 | 17.0 | 49 % | 4.50 | 1.06 | 0.10 | 0.00 | 4.10 |"
            ),
            "{out}"
        );
        // By name: a call no run made is left out; what the names miss is `other`.
        assert!(out.contains("| scenario | `writev` | other |"), "{out}");
        assert!(out.contains("| passthrough | 2.00 | 2.10 |"), "{out}");
        // Without any split (an old run, or a scenario without a gateway): no table.
        let mut empty = String::new();
        kernel_table(&mut empty, &[closed(Scenario::Passthrough, 10, 1.0)]);
        assert!(empty.is_empty());
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&[0.5]), 0.5);
        assert_eq!(median(&[0.5, 0.9]), 0.7);
        assert_eq!(median(&[0.1, 0.5, 0.9]), 0.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn write_replaces_only_the_marked_section() {
        let dir = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        let path = dir.join("B.md");
        let _ = fs::remove_dir_all(&dir);
        write(&path, "first\n").unwrap();
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("\n## Profile\n\nhand-written\n");
        fs::write(&path, &text).unwrap();
        write(&path, "second\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("second") && !text.contains("first"));
        assert!(text.contains("hand-written"));
        assert_eq!(text.matches("<!-- bench:begin").count(), 1);
        write_marked(&path, "callgrind", "counts\n").unwrap();
        write(&path, "third\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("third") && text.contains("counts"));
        assert!(text.contains("hand-written"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
