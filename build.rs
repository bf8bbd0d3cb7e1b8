//! Records the git revision the binary is built from, for `mcpgate --version`.
//! Written here rather than with a crate (vergen, built): one value, read with the
//! `git` already needed to have the source, and a fallback for a source tree
//! without `.git` (a release tarball, a container build context).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MCPGATE_REVISION");
    let revision = std::env::var("MCPGATE_REVISION")
        .ok()
        .filter(|value| !value.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MCPGATE_REVISION={revision}");
}

/// The commit checked out. (Not marked when files differ from it: the build
/// script is not run again on every edit, so such a mark would go stale.)
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        let output = Command::new("git").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    // A new commit or checkout moves HEAD or the branch it names (the index is
    // left out: staging files must not rebuild the crate).
    if let Some(path) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &reference])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
