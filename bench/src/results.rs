//! What the runs measured, and how several rounds of a scenario are reduced to the
//! one that is reported.

use crate::kernel;
use crate::load::Outcome;
use crate::measure::{CpuSplit, Switches};
use crate::scenario::Scenario;
use crate::verify;

/// One measured run.
pub struct Sample {
    pub outcome: Outcome,
    /// CPU seconds the gateway used during the run.
    pub gateway_cpu: Option<f64>,
    /// The same, split into its own code (user) and the kernel's work for it (system).
    pub gateway_split: Option<CpuSplit>,
    /// Times the gateway's threads stopped running during the run.
    pub gateway_switches: Option<Switches>,
    /// System calls and wake-ups, with `--kernel-counters`.
    pub gateway_kernel: Option<kernel::Counts>,
    /// CPU seconds the harness (load generator and upstream) used during the run.
    pub harness_cpu: f64,
    /// The gateway's peak RSS so far, in KiB.
    pub gateway_rss_kib: Option<u64>,
    /// CPU seconds every other process on the machine used during the run: on a
    /// shared machine, the competition the figures were taken under.
    pub others_cpu: f64,
}

/// What a scenario produced.
pub struct Measured {
    pub scenario: Scenario,
    pub closed: Option<Sample>,
    pub rate: Option<Sample>,
    pub verified: Option<verify::Verified>,
    pub notes: Vec<String>,
}

impl Measured {
    /// Of several rounds of one scenario, the runs taken with the least CPU used by
    /// other processes: on a shared machine, the closest to an idle one. Choosing on
    /// the competition rather than on the result keeps it from picking lucky noise.
    pub fn least_contended(rounds: Vec<Measured>) -> Option<Measured> {
        let count = rounds.len();
        let mut closed = Vec::new();
        let mut rate = Vec::new();
        let mut verified = Vec::new();
        let mut notes = Vec::new();
        let mut scenario = None;
        for (round, measured) in rounds.into_iter().enumerate() {
            scenario = Some(measured.scenario);
            let tag = |note: String| {
                if count > 1 {
                    format!("round {}: {note}", round + 1)
                } else {
                    note
                }
            };
            notes.extend(measured.notes.into_iter().map(tag));
            closed.extend(measured.closed.map(|sample| (round, sample)));
            rate.extend(measured.rate.map(|sample| (round, sample)));
            verified.extend(measured.verified);
        }
        let mut picked = Measured {
            scenario: scenario?,
            closed: None,
            rate: None,
            verified: verified
                .into_iter()
                .max_by(|a, b| a.rate().total_cmp(&b.rate())),
            notes,
        };
        let mut reported = Vec::new();
        // Every round's figures, so the reader sees how much they moved.
        let mut spread = Vec::new();
        for (kind, samples, slot) in [
            ("closed-loop", closed, &mut picked.closed),
            ("fixed-rate", rate, &mut picked.rate),
        ] {
            let best = samples
                .iter()
                .enumerate()
                .min_by(|(_, (_, a)), (_, (_, b))| a.competition().total_cmp(&b.competition()))
                .map(|(index, _)| index);
            if samples.len() > 1 {
                spread.push(format!(
                    "{kind} {}",
                    samples
                        .iter()
                        .map(|(_, sample)| sample.summary())
                        .collect::<Vec<_>>()
                        .join(" | ")
                ));
            }
            for (index, (round, sample)) in samples.into_iter().enumerate() {
                if Some(index) == best {
                    if count > 1 {
                        reported.push(format!("{kind} from round {}", round + 1));
                    }
                    *slot = Some(sample);
                } else if sample.outcome.errors > 0 {
                    // An unreported round with errors still makes the whole run invalid.
                    picked.notes.push(format!(
                        "**round {} ({kind}) had {} errors**; the first: {}",
                        round + 1,
                        sample.outcome.errors,
                        sample.outcome.first_error.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        if !reported.is_empty() {
            picked.notes.push(format!(
                "{} of {count}; all rounds: {}",
                reported.join(", "),
                spread.join("; ")
            ));
        }
        Some(picked)
    }
}

impl Sample {
    /// Cores' worth of CPU other processes used during the run.
    pub fn competition(&self) -> f64 {
        self.others_cpu / self.outcome.elapsed.as_secs_f64()
    }

    /// req/s, p99 and (through the gateway) CPU per 10k requests, for notes.
    fn summary(&self) -> String {
        let mut text = format!(
            "{:.0} req/s, p99 {:.3} ms",
            self.outcome.throughput(),
            self.outcome.percentile_ms(0.99)
        );
        if let Some(cpu) = self.gateway_cpu.filter(|_| self.outcome.ok > 0) {
            text.push_str(&format!(
                ", {:.2} CPU-s/10k",
                cpu / self.outcome.ok as f64 * 10_000.0
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hdrhistogram::Histogram;

    use super::*;

    fn sample(ok: u64, errors: u64, others_cpu: f64) -> Sample {
        Sample {
            outcome: Outcome {
                ok,
                errors,
                first_error: (errors > 0).then(|| "boom".to_owned()),
                latency: Histogram::new(3).unwrap(),
                elapsed: Duration::from_secs(10),
                late: 0,
                exhausted: false,
            },
            gateway_cpu: Some(1.0),
            gateway_split: None,
            gateway_switches: None,
            gateway_kernel: None,
            harness_cpu: 1.0,
            gateway_rss_kib: Some(1024),
            others_cpu,
        }
    }

    fn round(closed: Sample, rate: Sample) -> Measured {
        Measured {
            scenario: Scenario::Passthrough,
            closed: Some(closed),
            rate: Some(rate),
            verified: None,
            notes: vec!["minted".to_owned()],
        }
    }

    #[test]
    fn each_kind_of_run_comes_from_its_least_contended_round() {
        let picked = Measured::least_contended(vec![
            round(sample(100, 0, 5.0), sample(10, 0, 1.0)),
            round(sample(200, 0, 1.0), sample(20, 3, 9.0)),
        ])
        .unwrap();
        assert_eq!(picked.closed.unwrap().outcome.ok, 200);
        assert_eq!(picked.rate.unwrap().outcome.ok, 10);
        // The errors of a round not reported are not hidden.
        assert!(
            picked
                .notes
                .iter()
                .any(|note| note.contains("had 3 errors"))
        );
        assert!(picked.notes.iter().any(|note| note == "round 1: minted"));
    }

    #[test]
    fn one_round_is_reported_as_it_is() {
        let picked =
            Measured::least_contended(vec![round(sample(1, 0, 0.0), sample(2, 0, 0.0))]).unwrap();
        assert_eq!(picked.notes, vec!["minted".to_owned()]);
        assert!(Measured::least_contended(Vec::new()).is_none());
    }
}
