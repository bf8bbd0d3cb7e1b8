//! The child process: spawning it with nothing of mcpgate's environment, feeding its
//! stdin from one writer, turning its stderr into log lines, and stopping it the way
//! the MCP stdio transport asks (close stdin, then SIGTERM, then SIGKILL).

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, watch};

use super::config::Launch;
use super::framing::{Line, Lines, truncate_for_log};

/// How long a child gets to exit after its stdin closes, and again after SIGTERM.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(1);

/// A stderr line longer than this is cut in the log.
const STDERR_LINE_LOG_BYTES: usize = 2048;
/// Longest stderr line held while reading; the rest of a longer one is skipped.
const STDERR_LINE_CAP: usize = 64 * 1024;
/// Stderr lines kept for the warning logged when the child dies.
const STDERR_TAIL_LINES: usize = 20;

/// The last stderr lines, for the crash report.
pub(super) type StderrTail = Arc<Mutex<VecDeque<String>>>;

pub(super) struct Process {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    pub pid: Option<u32>,
}

pub(super) fn spawn(launch: &Launch) -> std::io::Result<Process> {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A last resort if the supervising task is dropped (runtime shutdown).
        .kill_on_drop(true);
    if let Some(dir) = &launch.cwd {
        command.current_dir(dir);
    }
    // Its own process group: a launcher (`npx`, a shell script) and the server it
    // starts are signalled together, and a Ctrl-C aimed at mcpgate's terminal does
    // not hit the children before mcpgate can stop them in order.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn()?;
    let pid = child.id();
    let missing = || std::io::Error::other("child pipe missing");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    Ok(Process {
        child,
        stdin,
        stdout,
        stderr,
        pid,
    })
}

/// The only writer of the child's stdin: lines arrive whole through the channel, so
/// concurrent requests can never interleave inside one another. Returns (closing
/// stdin) when every sender is gone, when `closing` turns true, or on a write error.
pub(super) async fn write_lines(
    mut stdin: ChildStdin,
    mut lines: mpsc::Receiver<Bytes>,
    mut closing: watch::Receiver<bool>,
    session: String,
) {
    loop {
        let line = tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => break,
            line = lines.recv() => match line {
                Some(line) => line,
                None => break,
            },
        };
        let written = tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => break,
            written = stdin.write_all(&line) => written,
        };
        if let Err(error) = written {
            tracing::debug!(session = %session, "cannot write to the MCP server's stdin: {error}");
            break;
        }
    }
    // Dropping stdin closes the pipe: the child reads EOF, the polite "please exit".
    drop(stdin);
}

/// Forwards each stderr line to the log, prefixed with the session, and keeps the
/// last few for the report if the child dies.
pub(super) async fn log_stderr(stderr: ChildStderr, session: String, tail: StderrTail) {
    let mut lines = Lines::new(stderr, STDERR_LINE_CAP);
    loop {
        let line = match lines.next().await {
            Ok(Some(Line::Complete(line) | Line::TooLong(line))) => line,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(session = %session, "cannot read the MCP server's stderr: {error}");
                break;
            }
        };
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let text = truncate_for_log(&text, STDERR_LINE_LOG_BYTES);
        tracing::info!(session = %session, "stdio server {session}: {text}");
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

/// Waits for a child whose stdin is already closed; SIGTERM to its process group after
/// the grace period, SIGKILL after another.
pub(super) async fn terminate(child: &mut Child, pid: Option<u32>) -> std::io::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
        return status;
    }
    signal_group(pid, Signal::Term);
    if let Ok(status) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
        return status;
    }
    signal_group(pid, Signal::Kill);
    // SIGKILL of the group may not reach a leader that changed group; this does.
    let _ = child.start_kill();
    child.wait().await
}

/// After the leader has exited: anything it started that is still running in its
/// group is killed, so no orphan outlives the session. The group's id cannot be
/// reused while any member is alive, so this cannot hit an unrelated process group
/// except in the instant after the last member exits, where a new leader would
/// have to be created with the same pid.
pub(super) fn kill_stragglers(pid: Option<u32>) {
    signal_group(pid, Signal::Kill);
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn signal_group(pid: Option<u32>, signal: Signal) {
    use rustix::process::{Pid, Signal as Sig, kill_process_group};
    let Some(pid) = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    let signal = match signal {
        Signal::Term => Sig::TERM,
        Signal::Kill => Sig::KILL,
    };
    // ESRCH (nobody left) is the common, expected outcome.
    let _ = kill_process_group(pid, signal);
}

#[cfg(not(unix))]
fn signal_group(_pid: Option<u32>, _signal: Signal) {}

/// The crash report's stderr excerpt.
pub(super) fn tail_text(tail: &StderrTail) -> String {
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    if tail.is_empty() {
        return "(no stderr output)".to_owned();
    }
    tail.iter().cloned().collect::<Vec<_>>().join(" | ")
}
