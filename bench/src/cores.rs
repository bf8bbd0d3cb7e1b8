//! Throughput on one core against two (issue #21): the same closed-loop `jwt-hs256`
//! run with mcpgate pinned to its own core, then allowed on every core. The harness
//! stays on its cores, so on a two-core machine the second run has the load
//! generator and the upstream sharing a core with mcpgate: the ratio is what a
//! second core gives when the clients are on the same machine. Timed, so only
//! meaningful on an otherwise idle machine.

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::load::{self, Pace, Target};
use crate::results::Sample;
use crate::scenario::{self, Bench, Scenario};
use crate::upstream::MCP_PATH;

/// The scenario both runs send.
pub const SCENARIO: Scenario = Scenario::JwtHs256;

/// One run: the cores mcpgate was allowed, and what it did with them.
pub struct Run {
    pub gateway_cpus: Vec<usize>,
    pub sample: Sample,
}

pub struct Cores {
    pub one: Run,
    pub all: Run,
    /// The cores the load generator and the upstream ran on.
    pub harness_cpus: Vec<usize>,
}

impl Cores {
    /// req/s on every core over req/s on one.
    pub fn scaling(&self) -> f64 {
        self.all.sample.outcome.throughput() / self.one.sample.outcome.throughput()
    }
}

/// Both runs, one after the other.
pub async fn measure(bench: &Bench) -> Result<Cores> {
    let pinning = &bench.pinning;
    if pinning.gateway.is_empty() || pinning.all.len() < 2 {
        bail!("needs two cores or more, and pinning (not --no-pin)");
    }
    let one = run(bench, &pinning.gateway).await.context("one core")?;
    let all = run(bench, &pinning.all).await.context("every core")?;
    Ok(Cores {
        one,
        all,
        harness_cpus: pinning.harness.clone(),
    })
}

async fn run(bench: &Bench, cpus: &[usize]) -> Result<Run> {
    let settings = &bench.settings;
    let mut notes = Vec::new();
    let credential = scenario::credential(bench, SCENARIO, 0, &mut notes)?;
    let mut gateway = scenario::spawn_gateway_on(bench, SCENARIO, &[], cpus)?
        .context("the scenario has no gateway")?;
    let target = Arc::new(Target::new(
        gateway.addr,
        MCP_PATH,
        SCENARIO.body(),
        credential,
    )?);
    gateway.wait_ready(&target).await?;
    scenario::check_answer(SCENARIO, &target, settings.tools)
        .await
        .with_context(|| format!("wrong answer\n{}", gateway.log_tail()))?;
    load::run(
        Arc::clone(&target),
        Pace::Closed,
        settings.connections,
        settings.warmup,
    )
    .await?;
    let sample = scenario::sample(
        &target,
        Some(&gateway),
        Pace::Closed,
        settings,
        &bench.workdir.0,
    )
    .await?;
    Ok(Run {
        gateway_cpus: cpus.to_vec(),
        sample,
    })
}
