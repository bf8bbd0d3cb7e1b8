//! What the kernel does for a gateway during a run: its system calls, in all and by
//! name, counted by `perf stat` attached to the process (issue #21: is
//! a request bound by mcpgate's code or by the kernel's work per request?). Opt-in
//! with `--kernel-counters`: it needs perf and the kernel's tracepoints, and the
//! counting itself slows each system call a little, for nginx and mcpgate alike.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Every system call, whatever its name.
pub const SYSCALLS: &str = "raw_syscalls:sys_enter";
/// The system calls a proxy's request path makes, counted one by one.
pub const BY_NAME: [&str; 20] = [
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "read",
    "readv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "futex",
    "sched_yield",
    "getsockopt",
    "setsockopt",
    "accept4",
    "close",
    "madvise",
    "mmap",
    "munmap",
];

/// `perf stat` counting while a run lasts.
pub struct Counting {
    child: Child,
    out: PathBuf,
}

/// What one run counted.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub syscalls: u64,
    /// Each of `BY_NAME` that perf counted, in that order.
    pub by_name: Vec<(&'static str, u64)>,
}

/// Attaches `perf stat` to every thread of `pid`; `out` receives its figures.
pub fn start(pid: u32, out: &Path) -> Result<Counting> {
    let mut events = vec![SYSCALLS.to_owned()];
    events.extend(
        BY_NAME
            .iter()
            .map(|name| format!("syscalls:sys_enter_{name}")),
    );
    let child = Command::new("perf")
        .args(["stat", "-x", ",", "-o"])
        .arg(out)
        .args(["-e", &events.join(","), "-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf stat (--kernel-counters needs perf)")?;
    // perf prints nothing once attached; it takes a few milliseconds. The gateway is
    // idle until the load starts, so a generous pause costs no accuracy.
    std::thread::sleep(Duration::from_millis(300));
    Ok(Counting {
        child,
        out: out.to_owned(),
    })
}

impl Counting {
    /// Stops perf (SIGINT makes it print its counts) and reads them.
    pub fn stop(mut self) -> Result<Counts> {
        let pid = i32::try_from(self.child.id()).context("perf's pid")?;
        // SAFETY: kill(2) on the perf process this harness started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = self.child.wait().context("waiting for perf stat")?;
        let text = fs::read_to_string(&self.out)
            .with_context(|| format!("reading {}", self.out.display()))?;
        let counts = parse(&text);
        if counts.syscalls == 0 {
            bail!("perf stat counted no system calls ({status}): {text}");
        }
        Ok(counts)
    }
}

/// Reads `perf stat -x ,` output: `value,unit,event,…`; uncounted events are left out.
fn parse(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let mut fields = line.split(',');
        let (Some(value), Some(_unit), Some(event)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        match event.trim() {
            SYSCALLS => counts.syscalls = value,
            other => {
                if let Some(name) = other
                    .strip_prefix("syscalls:sys_enter_")
                    .and_then(|name| BY_NAME.iter().find(|known| **known == name))
                {
                    counts.by_name.push((name, value));
                }
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_perf_stat_csv_and_skips_what_was_not_counted() {
        let text = "# started on Tue Dec  8 00:30:00 2026\n\n\
                    1200,,raw_syscalls:sys_enter,10000,100.00,,\n\
                    400,,syscalls:sys_enter_epoll_wait,10000,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_writev,0,0.00,,\n\
                    7,,syscalls:sys_enter_unknown_call,10000,100.00,,\n";
        let counts = parse(text);
        assert_eq!(counts.syscalls, 1200);
        assert_eq!(counts.by_name, vec![("epoll_wait", 400)]);
    }
}
