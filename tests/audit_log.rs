//! The audit log writer through its public handle: no record lost under concurrency,
//! backpressure when the queue is full, logrotate's reopen, config reloads, fsync
//! policies and shutdown.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::AUDIT_FIELDS;
use mcpgate::audit::{Action, AuditLog, Record};
use mcpgate::config::{AuditConfig, ConfigError, FsyncPolicy};
use serde_json::Value;

fn file_config(path: &Path, capacity: usize, fsync: FsyncPolicy) -> AuditConfig {
    AuditConfig {
        path: Some(path.to_owned()),
        stdout: false,
        fsync,
        queue_capacity: capacity,
    }
}

fn record(id: &str) -> Record {
    let mut record = Record::new(id.to_owned(), "POST", SystemTime::now());
    record.method = Some("tools/call".to_owned());
    record.tool = Some("search".to_owned());
    record.action = Action::Allow;
    record.auth_method = Some("jwt");
    record.subject = Some("alice".to_owned());
    record.scopes = Some("mcp:read mcp:tools".to_owned());
    record.status = 200;
    record.latency_ms = 1.25;
    record
}

/// The request ids of a file's lines, checking each line is a whole record.
fn ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(id_of).collect()
}

fn id_of(line: &str) -> String {
    let value: Value = serde_json::from_str(line).expect("each line is one JSON record");
    let object = value.as_object().expect("a JSON object");
    for &field in AUDIT_FIELDS {
        assert!(object.contains_key(field), "{field} missing from {line}");
    }
    object["request_id"]
        .as_str()
        .expect("request_id is a string")
        .to_owned()
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

async fn send_all(log: &AuditLog, ids: &[String]) {
    for id in ids {
        log.record(record(id)).await;
    }
}

/// Fails instead of hanging if a call that must return does not.
async fn must_finish<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_all_written_once_and_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::start(&file_config(&path, 16, FsyncPolicy::Never)).expect("start");

    let tasks: Vec<_> = (0..50)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                send_all(&log, &numbered(&format!("t{task}"), 0..400)).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    must_finish("close", log.close()).await;

    let written = ids(&path);
    assert_eq!(written.len(), 20_000);
    let distinct: HashSet<_> = written.iter().cloned().collect();
    let expected: HashSet<_> = (0..50)
        .flat_map(|task| numbered(&format!("t{task}"), 0..400))
        .collect();
    assert_eq!(distinct, expected, "every request_id once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_file_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::start(&file_config(&path, 8, FsyncPolicy::Never)).expect("start");
    log.record(record("r1")).await;
    log.close().await;
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(ids(&path), ["r1"]);
}

/// Linux's `O_NONBLOCK` (std has no constant for it, and libc is not a dependency).
#[cfg(target_os = "linux")]
const O_NONBLOCK: i32 = 0o4000;

/// Fills a FIFO's buffer to the last byte; returns how many bytes that took.
#[cfg(target_os = "linux")]
fn fill_fifo(fifo: &Path) -> usize {
    let mut filler = OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(fifo)
        .expect("open fifo for filling");
    let mut filled = 0;
    for chunk in [4096, 1] {
        let bytes = vec![b'x'; chunk];
        loop {
            match filler.write(&bytes) {
                Ok(n) => filled += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("filling the fifo: {error}"),
            }
        }
    }
    filled
}

/// A FIFO whose buffer is full and that nobody reads: the writer blocks in write() on
/// the first line, so with queue_capacity 3 exactly three record() calls complete and
/// the fourth waits, deterministically, until a reader drains the pipe.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_makes_record_wait_until_the_writer_drains() {
    const CAPACITY: usize = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("audit.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // Read+write so that opening never blocks (Linux); not read from until later.
    let mut reader = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let filled = fill_fifo(&fifo);
    let log = AuditLog::start(&file_config(&fifo, CAPACITY, FsyncPolicy::Never)).expect("start");

    for i in 0..CAPACITY {
        let mut accepted = Box::pin(log.record(record(&format!("r-{i}"))));
        assert!(
            futures_util::poll!(&mut accepted).is_ready(),
            "record {i} fits in the queue"
        );
    }
    let mut waiting = Box::pin(log.record(record(&format!("r-{CAPACITY}"))));
    for _ in 0..100 {
        assert!(
            futures_util::poll!(&mut waiting).is_pending(),
            "the queue is full and the writer stuck: record() must wait"
        );
        tokio::task::yield_now().await;
    }

    // Now someone reads: the writer drains, the waiting record goes in.
    let drain = std::thread::spawn(move || {
        let mut filler = vec![0; filled];
        reader.read_exact(&mut filler).expect("read filler");
        let mut ids = Vec::new();
        for line in BufReader::new(reader).lines() {
            let line = line.expect("read fifo");
            if line == "END" {
                break;
            }
            ids.push(id_of(&line));
        }
        ids
    });
    must_finish("the waiting record", waiting).await;
    send_all(&log, &numbered("after", 0..10)).await;
    must_finish("close", log.close()).await;
    // close() returned, so every record is in the pipe before this marker.
    let mut marker = OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    marker.write_all(b"END\n").expect("write marker");

    let read = tokio::task::spawn_blocking(move || drain.join().expect("reader"));
    let read = must_finish("reading the fifo", read).await.expect("join");
    let mut expected = numbered("r", 0..CAPACITY + 1);
    expected.extend(numbered("after", 0..10));
    assert_eq!(read, expected, "nothing dropped, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_rename_splits_between_old_and_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let log = AuditLog::start(&file_config(&path, 4, FsyncPolicy::Never)).expect("start");

    let before = numbered("before", 0..300);
    let after = numbered("after", 0..200);
    send_all(&log, &before).await;
    std::fs::rename(&path, &rotated).expect("rename");
    log.reopen();
    send_all(&log, &after).await;
    must_finish("close", log.close()).await;

    assert_eq!(ids(&rotated), before);
    assert_eq!(ids(&path), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_with_records_in_flight_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let log = AuditLog::start(&file_config(&path, 8, FsyncPolicy::Never)).expect("start");

    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                send_all(&log, &numbered(&format!("t{task}"), 0..500)).await;
            })
        })
        .collect();
    std::fs::rename(&path, &rotated).expect("rename");
    log.reopen();
    for task in tasks {
        task.await.expect("task");
    }
    must_finish("close", log.close()).await;

    let mut all = ids(&rotated);
    all.extend(ids(&path));
    assert_eq!(all.len(), 4_000);
    let distinct: HashSet<_> = all.into_iter().collect();
    assert_eq!(distinct.len(), 4_000, "none lost, none repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_switches_files_in_queue_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let log = AuditLog::start(&file_config(&a, 4, FsyncPolicy::Never)).expect("start");

    send_all(&log, &numbered("a", 0..50)).await;
    log.reconfigure(&file_config(&b, 2, FsyncPolicy::Always))
        .expect("switch to b");
    send_all(&log, &numbered("b", 0..50)).await;
    must_finish("close", log.close()).await;

    assert_eq!(ids(&a), numbered("a", 0..50));
    assert_eq!(ids(&b), numbered("b", 0..50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_turns_audit_on_and_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::disabled();

    log.record(record("while-off")).await;
    log.reconfigure(&file_config(&path, 4, FsyncPolicy::Never))
        .expect("turn on");
    send_all(&log, &numbered("on", 0..5)).await;
    log.reconfigure(&AuditConfig::default()).expect("turn off");
    must_finish("record while off", log.record(record("off-again"))).await;
    log.reconfigure(&file_config(&path, 4, FsyncPolicy::Never))
        .expect("turn on again");
    log.record(record("on-again")).await;
    must_finish("close", log.close()).await;

    let mut expected = numbered("on", 0..5);
    expected.push("on-again".to_owned());
    assert_eq!(ids(&path), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_to_an_unopenable_path_keeps_the_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::start(&file_config(&path, 4, FsyncPolicy::Never)).expect("start");

    log.record(record("first")).await;
    let error = log
        .reconfigure(&file_config(dir.path(), 4, FsyncPolicy::Never))
        .expect_err("a directory cannot be the audit file");
    assert!(
        matches!(&error, ConfigError::Invalid { key, .. } if key == "audit.path"),
        "{error}"
    );
    log.record(record("second")).await;
    must_finish("close", log.close()).await;

    assert_eq!(ids(&path), ["first", "second"]);
}

#[test]
fn start_on_an_unopenable_path_names_audit_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing: PathBuf = dir.path().join("no/such/dir/audit.jsonl");
    let error = AuditLog::start(&file_config(&missing, 4, FsyncPolicy::Never))
        .expect_err("parent directory missing");
    assert!(
        error.to_string().starts_with("audit.path: cannot open"),
        "{error}"
    );
}

/// A full disk (/dev/full refuses every write): the records are kept, not dropped, and
/// reach the next target once the config points elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_refused_by_the_target_are_kept_for_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let full = Path::new("/dev/full");
    let log = AuditLog::start(&file_config(full, 16, FsyncPolicy::Never)).expect("start");

    send_all(&log, &numbered("r", 0..10)).await;
    log.reconfigure(&file_config(&path, 16, FsyncPolicy::Never))
        .expect("switch");
    must_finish("close", log.close()).await;

    assert_eq!(ids(&path), numbered("r", 0..10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_policies_write_the_same_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = [
        FsyncPolicy::Always,
        FsyncPolicy::Every(Duration::from_millis(1)),
        FsyncPolicy::Every(Duration::from_secs(3600)),
    ];
    for (n, policy) in policies.into_iter().enumerate() {
        let path = dir.path().join(format!("audit-{n}.jsonl"));
        let log = AuditLog::start(&file_config(&path, 8, policy)).expect("start");
        let sent = numbered("r", 0..200);
        send_all(&log, &sent).await;
        must_finish("close", log.close()).await;
        assert_eq!(ids(&path), sent, "{policy:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_idempotent_and_record_after_close_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::start(&file_config(&path, 4, FsyncPolicy::Always)).expect("start");

    send_all(&log, &numbered("r", 0..20)).await;
    let other = log.clone();
    let (first, second) = tokio::join!(log.close(), other.close());
    let ((), ()) = (first, second);
    // Both returned only after the writer finished: everything is in the file.
    assert_eq!(ids(&path), numbered("r", 0..20));

    must_finish("close again", log.close()).await;
    must_finish("record after close", log.record(record("late"))).await;
    log.reopen();
    log.reconfigure(&file_config(&path, 4, FsyncPolicy::Never))
        .expect("ignored after close");
    log.record(record("later")).await;
    assert_eq!(
        ids(&path),
        numbered("r", 0..20),
        "nothing written after close"
    );

    AuditLog::disabled().close().await;
    AuditLog::disabled().record(record("off")).await;
}
