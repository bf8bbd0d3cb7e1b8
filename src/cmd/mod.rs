//! One module per subcommand of the binary (`cli::Command`), plus what `serve` and
//! `demo` share to start a gateway. Library code stays in `mcpgate::…`.

pub(crate) mod build;
pub(crate) mod check;
pub(crate) mod demo;
pub(crate) mod explain;
pub(crate) mod hash_key;
pub(crate) mod policy;
pub(crate) mod serve;
mod signals;
mod startup;
pub(crate) mod token;

/// A command's answer was printed; the process ends with this code.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub(crate) struct Exit(pub(crate) u8);
