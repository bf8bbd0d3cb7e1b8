//! Why a catalog could not be loaded, or a submitted query not analysed. Every
//! variant names the file, the schema coordinate or the operation at fault, because
//! the operator reading a failed reload has only this line to go on.

use std::path::PathBuf;

use apollo_compiler::validation::DiagnosticList;

use crate::policy::TooManyCombinations;

/// A GraphQL failure: at load (schema, operations) or for one submitted query.
#[derive(Debug, thiserror::Error)]
pub enum GraphqlError {
    /// A schema file, operation file or operations folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },

    /// The SDL does not parse or validate.
    #[error("invalid schema {}: {message}", path.display())]
    Schema {
        /// The schema file.
        path: PathBuf,
        /// The parser's or validator's diagnostics.
        message: String,
    },

    /// A `@requiresScopes` application whose `scopes` is not a list of lists of strings.
    #[error("invalid @requiresScopes on {coordinate} in {}: {message}", path.display())]
    ScopesDirective {
        /// The schema file.
        path: PathBuf,
        /// Where the directive is applied, e.g. `Query.orders`.
        coordinate: String,
        /// What is wrong with its argument.
        message: String,
    },

    /// An operation file that does not parse, does not validate against the schema,
    /// or does not hold exactly one operation.
    #[error("invalid operation file {}: {message}", path.display())]
    Operation {
        /// The operation file.
        path: PathBuf,
        /// Why it was refused.
        message: String,
    },

    /// An operation's fields need more scope combinations than `max_scope_combinations`.
    #[error("operation {operation} ({}): {source}", path.display())]
    ToolScopes {
        /// The operation's name.
        operation: String,
        /// Its file.
        path: PathBuf,
        /// How many combinations it needs, and the limit.
        #[source]
        source: TooManyCombinations,
    },

    /// A query submitted at request time does not parse or validate, or names an
    /// operation it does not hold.
    #[error("invalid GraphQL request: {message}")]
    InvalidQuery {
        /// The parser's or validator's diagnostics, for the caller.
        message: String,
    },

    /// A query submitted at request time needs more scope combinations than allowed.
    /// The text is meant for a 403's `error_description`.
    #[error("the query {source}")]
    QueryScopes {
        /// How many combinations it needs, and the limit.
        #[source]
        source: TooManyCombinations,
    },
}

/// At most this many diagnostics are spelled out: the first usually explains the
/// rest, and the message must stay one readable line.
const SHOWN_DIAGNOSTICS: usize = 3;

/// apollo-compiler's diagnostics on one line, each with its position: its own
/// `Display` draws multi-line source excerpts, which do not fit a log line or an
/// `error_description`.
pub(super) fn one_line(errors: &DiagnosticList) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(SHOWN_DIAGNOSTICS)
        .map(|diagnostic| {
            let error = diagnostic.to_json();
            match error.locations.first() {
                Some(at) => format!("{} (line {}, column {})", error.message, at.line, at.column),
                None => error.message,
            }
        })
        .collect();
    if errors.len() > SHOWN_DIAGNOSTICS {
        parts.push(format!("and {} more", errors.len() - SHOWN_DIAGNOSTICS));
    }
    parts.join("; ")
}
