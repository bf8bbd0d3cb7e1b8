//! The external reference for what one proxy hop costs: a bare nginx reverse proxy
//! (Debian's `nginx-light`) in front of the same upstream, set up the way a proxy for
//! MCP must be: HTTP/1.1 keep-alive to the upstream and no buffering (SSE answers
//! must pass event by event). One process (`master_process off`) with one worker's
//! work, so its CPU and memory are read from one pid, like mcpgate's.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::gateway::{self, Gateway};

/// Where Debian installs nginx.
const CANDIDATES: [&str; 2] = ["/usr/sbin/nginx", "/usr/bin/nginx"];

/// The nginx binary, or an error that says how to get it.
pub fn binary() -> Result<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .context(
            "nginx is not installed: `apt-get install nginx-light` (Debian) to run this scenario",
        )
}

/// Starts nginx proxying to `upstream` (a loopback `host:port`).
pub fn spawn(workdir: &Path, upstream: SocketAddr, cpus: &[usize]) -> Result<Gateway> {
    let nginx = binary()?;
    let listen = gateway::free_addr()?;
    let prefix = workdir.join("nginx");
    fs::create_dir_all(prefix.join("logs")).context("creating nginx's prefix directory")?;
    let config_path = prefix.join("nginx.conf");
    fs::write(&config_path, config(listen, upstream, &prefix)).context("writing nginx.conf")?;
    check(&nginx, &prefix, &config_path)?;
    let log = workdir.join("nginx.log");
    let stderr = File::create(&log).context("creating nginx's log")?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Gateway::launch(command, log, listen, cpus)
}

fn config(listen: SocketAddr, upstream: SocketAddr, prefix: &Path) -> String {
    let prefix = prefix.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/logs/error.log warn;
pid {prefix}/nginx.pid;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    upstream mcp {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"
    )
}

/// Checks the configuration with `nginx -t`, so a broken one fails with nginx's own
/// message rather than as a readiness timeout.
fn check(nginx: &Path, prefix: &Path, config_path: &Path) -> Result<()> {
    let output = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(config_path)
        .output()
        .context("running nginx -t")?;
    if !output.status.success() {
        bail!(
            "nginx -t failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_proxies_with_keepalive_and_no_buffering() {
        let text = config(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            Path::new("/tmp/x"),
        );
        for needle in [
            "listen 127.0.0.1:1;",
            "server 127.0.0.1:2;",
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_buffering off;",
            "master_process off;",
        ] {
            assert!(text.contains(needle), "{needle} missing");
        }
    }
}
