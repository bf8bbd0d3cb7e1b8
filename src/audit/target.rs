//! Where audit lines go: a file opened for appending, or standard output.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::batch::Batch;
use crate::config::{AuditConfig, ConfigError};

#[derive(Debug)]
pub(super) enum Target {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Target {
    /// The config's target, opened; `None` when audit is off. A path wins over
    /// `stdout` (validation refuses both).
    pub(super) fn open(config: &AuditConfig) -> Result<Option<Self>, ConfigError> {
        if let Some(path) = &config.path {
            let file = open_file(path).map_err(|error| {
                ConfigError::invalid(
                    "audit.path",
                    format!("cannot open {}: {error}", path.display()),
                )
            })?;
            return Ok(Some(Self::File {
                path: path.clone(),
                file,
            }));
        }
        Ok(config.stdout.then_some(Self::Stdout))
    }

    /// Writes the batch's pending lines; see `Batch::write_to`.
    pub(super) fn write(&mut self, batch: &mut Batch) -> (usize, io::Result<()>) {
        match self {
            Self::File { file, .. } => batch.write_to(file),
            Self::Stdout => {
                // Held for the whole batch so no other writer to stdout in this process
                // lands between two of our lines.
                let mut out = io::stdout().lock();
                let (done, result) = batch.write_to(&mut out);
                (done, result.and_then(|()| out.flush()))
            }
        }
    }

    pub(super) fn sync(&self) -> io::Result<()> {
        match self {
            Self::File { file, .. } => file.sync_data(),
            // A pipe or terminal: there is no disk to force anything to.
            Self::Stdout => Ok(()),
        }
    }
}

/// Append mode so that several writers (and logrotate's `copytruncate`) never overwrite
/// each other; 0o600 because records name users and clients.
pub(super) fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}
