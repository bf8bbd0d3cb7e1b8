//! What a process cost, from the kernel's own accounting (`/proc`), and which cores
//! processes may run on. Linux only, like the deployments the figures describe.

use std::fs;

use anyhow::{Context, Result, bail};

/// CPU seconds (user + system) the process has used so far, all threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    cpu_split(pid).map(|split| split.user + split.system)
}

/// CPU seconds a process spent in its own code and in the kernel on its behalf.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSplit {
    pub user: f64,
    pub system: f64,
}

impl std::ops::Sub for CpuSplit {
    type Output = CpuSplit;
    fn sub(self, earlier: CpuSplit) -> CpuSplit {
        CpuSplit {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// User and system CPU seconds the process has used so far, all threads included
/// (exited ones too: the kernel folds them into the process).
pub fn cpu_split(pid: u32) -> Result<CpuSplit> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted
    // from the last `)`. After it come field 3 (state) … field 14 (utime), 15 (stime).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| -> Result<u64> {
        fields
            .get(field - 3)
            .context("short /proc/PID/stat")?
            .parse()
            .context("non-numeric CPU time")
    };
    let per_second = clock_ticks_per_second();
    Ok(CpuSplit {
        user: ticks(14)? as f64 / per_second,
        system: ticks(15)? as f64 / per_second,
    })
}

/// Times the process's threads have stopped running so far: voluntarily (to wait,
/// which a wake-up then ends) and involuntarily (preempted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
}

impl std::ops::Sub for Switches {
    type Output = Switches;
    fn sub(self, earlier: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
        }
    }
}

/// Context switches of every live thread of the process. `/proc/PID/status` counts
/// only the main thread's, so each task's own status is read; a thread that exits
/// between two readings takes its count with it, which the runs measured here (a
/// fixed set of worker threads) do not do.
pub fn context_switches(pid: u32) -> Result<Switches> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?;
    let mut total = Switches::default();
    for task in tasks {
        let path = task.context("listing threads")?.path().join("status");
        // A thread may exit between the listing and the reading.
        let Ok(status) = fs::read_to_string(&path) else {
            continue;
        };
        total.voluntary += status_number(&status, "voluntary_ctxt_switches").unwrap_or(0);
        total.involuntary += status_number(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(total)
}

fn status_number(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

/// The unit of utime/stime. Almost always 100, but it is a kernel build setting, so
/// it is asked for rather than assumed.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds all cores have spent running processes since boot (`/proc/stat`),
/// whoever they were.
pub fn machine_busy_seconds() -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().context("malformed /proc/stat"))
        .collect::<Result<_>>()?;
    // Fields: user nice system idle iowait irq softirq steal [guest guest_nice].
    // Guest time is already inside user. irq and softirq are left out: they are
    // mostly the kernel moving this benchmark's own loopback packets, and a tick that
    // lands in them while a process runs is charged to that process as well.
    let busy: u64 = [0, 1, 2, 7]
        .iter()
        .filter_map(|&field| ticks.get(field))
        .sum();
    Ok(busy as f64 / clock_ticks_per_second())
}

/// Peak resident set size (`VmHWM`) in KiB: the most memory the process ever held.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Resident set size now (`VmRSS`) in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(value) = line
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            return value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("malformed {field}"));
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

/// The cores this process may run on (its affinity mask, which a container or
/// `taskset` may have narrowed below `nproc`).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Builds the affinity mask for `cpus`.
pub fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data, and CPU_SET stays within CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&cpu| cpu < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
}

/// Restricts the calling thread (and threads it starts later) to `cpus`. Best effort:
/// an empty list or a refusal leaves the affinity as it was.
pub fn pin_current_thread(cpus: &[usize]) -> bool {
    if cpus.is_empty() {
        return false;
    }
    let set = cpu_set(cpus);
    // SAFETY: `set` is a valid, initialised mask of the size passed.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// `/proc/cpuinfo`'s model name, for the report.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Cores online on the machine (what `nproc --all` would say), for the report.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_thread_counts_a_voluntary_switch() {
        let pid = std::process::id();
        let before = context_switches(pid).unwrap();
        std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(20)))
            .join()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let after = context_switches(pid).unwrap();
        assert!((after - before).voluntary >= 1, "{before:?} → {after:?}");
    }

    #[test]
    fn busy_work_is_user_time_and_adds_up_to_the_total() {
        let pid = std::process::id();
        let before = cpu_split(pid).unwrap();
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        // Until the kernel has charged some user time (a tick is 1 to 10 ms).
        while cpu_split(pid).unwrap().user - before.user < 0.02
            && started.elapsed() < std::time::Duration::from_secs(10)
        {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(7));
            }
        }
        let spent = cpu_split(pid).unwrap() - before;
        assert!(spent.user >= 0.02, "{spent:?}");
        let total = cpu_seconds(pid).unwrap();
        let split = cpu_split(pid).unwrap();
        assert!((split.user + split.system - total).abs() < 0.05);
    }
}
