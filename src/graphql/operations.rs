//! The operations folder: one operation per `*.graphql`/`*.gql` file, each parsed and
//! validated against the schema.
//!
//! Only the folder's own files are read, not subfolders: a subfolder is a natural
//! place to park operations that should not be tools, and walking it would surprise.
//! The extension is matched without regard to case. Files are read in sorted path
//! order, so which of two duplicates wins does not depend on the file system.

use std::path::{Path, PathBuf};

use apollo_compiler::executable::{ExecutableDocument, Operation, OperationType};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Node, Schema};

use super::OperationKind;
use super::description::prepare;
use super::error::{GraphqlError, one_line};

const EXTENSIONS: [&str; 2] = ["graphql", "gql"];

/// One operation file, validated.
#[derive(Debug)]
pub(super) struct OperationFile {
    pub path: PathBuf,
    /// The operation's name, or the file stem for an unnamed operation.
    pub name: String,
    pub kind: OperationKind,
    pub document: Valid<ExecutableDocument>,
    /// The text parsed (descriptions blanked), which is what goes upstream.
    pub text: String,
    pub description: Option<String>,
}

impl OperationFile {
    /// The file's one operation.
    pub(super) fn operation(&self) -> Option<&Node<Operation>> {
        self.document.operations.iter().next()
    }
}

/// The operation files of `folder`, sorted.
pub(super) fn list(folder: &Path) -> Result<Vec<PathBuf>, GraphqlError> {
    let io_error = |source| GraphqlError::Io {
        path: folder.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
        // `is_file` follows symbolic links, so a linked operation counts.
        if wanted && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Reads, parses and validates one file.
pub(super) fn read(schema: &Valid<Schema>, path: &Path) -> Result<OperationFile, GraphqlError> {
    let raw = std::fs::read_to_string(path).map_err(|source| GraphqlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| GraphqlError::Operation {
        path: path.to_path_buf(),
        message,
    };
    let prepared = prepare(&raw);
    let document = ExecutableDocument::parse_and_validate(schema, prepared.text.as_str(), path)
        .map_err(|e| invalid(one_line(&e.errors)))?;
    let count = document.operations.len();
    if count != 1 {
        return Err(invalid(format!(
            "holds {count} operations; a file holds exactly one (plus the fragments it uses)"
        )));
    }
    let Some(operation) = document.operations.iter().next() else {
        return Err(invalid("holds no operation".to_owned()));
    };
    let name = match &operation.name {
        Some(name) => name.to_string(),
        None => path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let kind = kind_of(operation.operation_type);
    Ok(OperationFile {
        path: path.to_path_buf(),
        name,
        kind,
        document,
        text: prepared.text,
        description: prepared.description,
    })
}

pub(super) fn kind_of(operation_type: OperationType) -> OperationKind {
    match operation_type {
        OperationType::Query => OperationKind::Query,
        OperationType::Mutation => OperationKind::Mutation,
        OperationType::Subscription => OperationKind::Subscription,
    }
}
