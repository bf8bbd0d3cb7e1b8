//! What a process cost, from the kernel's own accounting (`/proc`), and which cores
//! processes may run on. Linux only, like the deployments the figures describe.

use std::fs;

use anyhow::{Context, Result, bail};

/// CPU seconds (user + system) the process has used so far, all threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
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
    Ok((ticks(14)? + ticks(15)?) as f64 / clock_ticks_per_second())
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
