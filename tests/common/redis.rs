//! A `redis-server` of a test's own (Debian's package; `scripts/test` installs it),
//! spoken to with a minimal RESP client so tests can look at what mcpgate stored.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// A `redis-server` child on a free loopback port, without persistence (a restart
/// starts empty), killed on drop.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    /// Serves TLS only, with `leaf.pem`/`leaf.key` from `dir` (see [`make_certs`]).
    tls: bool,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_retrying(false)
    }

    /// On a free port, and on another one if some other server took it first.
    fn start_retrying(tls: bool) -> Self {
        for _ in 0..3 {
            let mut server = Self {
                port: free_port(),
                password: None,
                tls,
                child: None,
                dir: tempfile::tempdir().unwrap(),
            };
            if tls {
                make_certs(server.dir.path());
            }
            if server.try_launch() {
                return server;
            }
        }
        panic!("redis-server could not get a free port in three tries");
    }

    /// On `port`, requiring `password` if given.
    pub fn start_on(port: u16, password: Option<&str>) -> Self {
        let mut server = Self {
            port,
            password: password.map(str::to_owned),
            tls: false,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.launch();
        server
    }

    /// TLS only, with a certificate for `localhost` from a CA of its own; the CA
    /// is `ca.pem` in [`Self::dir`].
    pub fn start_tls() -> Self {
        Self::start_retrying(true)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port.
    pub fn launch(&mut self) {
        assert!(
            self.try_launch(),
            "redis-server could not listen on port {} (taken by another process?)",
            self.port
        );
    }

    /// Starts the server; false when it exited without serving its port. Ready is
    /// this child answering, never just something on the port: a server another
    /// test started there would answer PING too, and two tests would share it.
    fn try_launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if self.tls {
            let file = |name: &str| self.dir.path().join(name);
            command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("leaf.pem"))
                .arg("--tls-key-file")
                .arg(file("leaf.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
        let spawned = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH: these tests need a real Redis; scripts/test \
                 installs it (apt-get install redis-server)"
            ),
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        let pid = child.id();
        self.child = Some(child);
        for _ in 0..200 {
            let ours = if self.tls {
                // This minimal client speaks no TLS: ask the kernel who listens.
                listens_on(pid, self.port)
            } else {
                self.try_command(&["INFO", "server"])
                    .is_some_and(|info| info.lines().any(|l| l == format!("process_id:{pid}")))
            };
            if ours {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server (pid {pid}) did not serve port {}", self.port);
    }

    /// Kills the server; `launch` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP/SIGCONT: a Redis that holds its connections open and answers nothing.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A command's reply, rendered flat: `+OK` as `OK`, `:1` as `1`, nil as `(nil)`.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|| panic!("redis did not answer {args:?}"))
    }

    pub fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        if let Some(password) = &self.password {
            stream.write_all(&encode(&["AUTH", password])).ok()?;
            read_reply(&mut reader)?;
        }
        stream.write_all(&encode(args)).ok()?;
        read_reply(&mut reader)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped process cannot act on SIGKILL until continued.
        if self.child.is_some() {
            self.signal("CONT");
        }
        self.stop();
    }
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (Linux /proc).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let sockets: Vec<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        // local address, state (0A: LISTEN), inode
        .any(|f| f.len() > 9 && f[1] == local && f[3] == "0A" && sockets.contains(&f[9].to_owned()))
}

/// A CA (`ca.pem`) and a certificate it signed for `localhost` (`leaf.pem`,
/// `leaf.key`), with the `openssl` command.
fn make_certs(dir: &std::path::Path) {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout leaf.key -out leaf.csr",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile leaf.ext -out leaf.pem",
    ] {
        let status = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|error| panic!("cannot run openssl (Debian: openssl): {error}"));
        assert!(status.success(), "openssl {args} failed");
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    request.into_bytes()
}

fn read_reply(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1)?;
    match kind {
        "+" | "-" | ":" => Some(rest.to_owned()),
        "$" => {
            let Ok(len) = usize::try_from(rest.parse::<i64>().ok()?) else {
                return Some("(nil)".to_owned());
            };
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).ok()?;
            data.truncate(len);
            String::from_utf8(data).ok()
        }
        "*" => {
            let count: usize = rest.parse().ok()?;
            let items: Option<Vec<String>> = (0..count).map(|_| read_reply(reader)).collect();
            Some(items?.join("\n"))
        }
        _ => None,
    }
}

#[test]
fn a_server_already_on_the_port_is_not_taken_for_the_one_started() {
    let first = RedisServer::start();
    for tls in [false, true] {
        let mut second = RedisServer {
            port: first.port,
            password: None,
            tls,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        if tls {
            make_certs(second.dir.path());
        }
        assert!(!second.try_launch(), "tls: {tls}");
    }
    assert_eq!(first.command(&["PING"]), "PONG");
}
