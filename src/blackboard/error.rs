//! The error type shared by every [`DocStore`](super::DocStore) operation.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::name::NameError;

/// A blackboard store operation failed.
///
/// Every variant that concerns the file system names the path involved, because the person
/// reading the message usually has to go and look at that file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation on `path` failed.
    #[error("blackboard I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A document name was invalid.
    #[error(transparent)]
    Name(#[from] NameError),

    /// A document exists but is not UTF-8 text (for example, an editor saved it in another
    /// encoding).
    #[error("blackboard document {} is not valid UTF-8: {source}", path.display())]
    NotUtf8 {
        /// The document's file.
        path: PathBuf,
        /// The underlying decoding error.
        #[source]
        source: std::string::FromUtf8Error,
    },

    /// The file-system watcher could not be started on `path`.
    #[error("cannot watch blackboard directory {}: {source}", path.display())]
    Watch {
        /// The directory that could not be watched.
        path: PathBuf,
        /// The underlying watcher error.
        #[source]
        source: notify::Error,
    },
}

impl StoreError {
    /// Wraps an I/O error with the path it concerns.
    pub(super) fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
