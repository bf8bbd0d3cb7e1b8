//! The open-file limit, and how many client connections it leaves room for.
//!
//! Every client connection is a file descriptor, and so is each upstream
//! connection, stdio child pipe, audit log and JWKS fetch. At the limit `accept`
//! fails with "Too many open files" and the listener stops taking anyone, valid
//! clients included. So mcpgate raises its soft limit to the hard one at start (as
//! nginx and most servers do: the soft limit of 1,024 a service gets by default is
//! a compatibility value for `select`, which mcpgate does not use), and caps client
//! connections below what the limit allows.

/// Descriptors kept for everything that is not a client connection or its upstream
/// counterpart: listeners, the runtime, the audit log, IdP and Redis connections.
const RESERVED: u64 = 64;

/// The open-file limit mcpgate runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit in force (`None`: unlimited).
    pub limit: Option<u64>,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

impl OpenFiles {
    /// Raises the soft limit to the hard limit. A failure (a platform without
    /// limits, a hard limit the kernel refuses) leaves the limit as it was and is
    /// reported in the start log through `raised_from` staying `None`.
    pub fn raise() -> Self {
        #[cfg(unix)]
        {
            use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
            let current = getrlimit(Resource::Nofile);
            if current.current == current.maximum {
                return Self {
                    limit: current.current,
                    raised_from: None,
                };
            }
            let raised = Rlimit {
                current: current.maximum,
                maximum: current.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Self {
                    limit: current.maximum,
                    raised_from: current.current,
                },
                Err(error) => {
                    tracing::warn!(
                        "cannot raise the open-file limit to the hard limit ({}): {error}",
                        show(current.maximum)
                    );
                    Self {
                        limit: current.current,
                        raised_from: None,
                    }
                }
            }
        }
        #[cfg(not(unix))]
        Self {
            limit: None,
            raised_from: None,
        }
    }

    /// The default for `server.max_connections`: half of what the limit leaves
    /// after a reserve, since each client connection may need an upstream one.
    pub fn connection_cap(self) -> usize {
        // Unlimited (or a platform without limits): large, but still a bound.
        const UNLIMITED: u64 = 1 << 20;
        let limit = self.limit.unwrap_or(UNLIMITED).min(UNLIMITED);
        let reserve = RESERVED.min(limit / 2);
        usize::try_from((limit - reserve) / 2)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// For the start log: `1048576` or `1048576 (raised from 1024)`.
    pub fn describe(self) -> String {
        match self.raised_from {
            Some(from) => format!("{} (raised from {from})", show(self.limit)),
            None => show(self.limit),
        }
    }
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |limit| limit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(limit: Option<u64>) -> OpenFiles {
        OpenFiles {
            limit,
            raised_from: None,
        }
    }

    #[test]
    fn the_cap_leaves_room_for_upstream_connections_and_files() {
        assert_eq!(files(Some(1024)).connection_cap(), 480);
        assert_eq!(files(Some(65536)).connection_cap(), 32736);
        assert_eq!(files(Some(100)).connection_cap(), 25);
        assert_eq!(files(Some(1)).connection_cap(), 1);
        assert_eq!(files(None).connection_cap(), 524_256);
    }

    #[test]
    fn the_description_says_whether_the_limit_was_raised() {
        let raised = OpenFiles {
            limit: Some(524_288),
            raised_from: Some(1024),
        };
        assert_eq!(raised.describe(), "524288 (raised from 1024)");
        assert_eq!(files(None).describe(), "unlimited");
    }
}
