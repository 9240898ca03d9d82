//! The blackboard: Tavern's `.tavern/` directory seen as a document store.
//!
//! The `.tavern/` directory is the source of truth that agents, people and tools all read and
//! write, one file per node. This module owns the vocabulary for addressing those files
//! ([`Collection`], [`DocName`], [`DocId`]), the [`DocStore`] trait with its two implementations
//! ([`FsStore`] for the real directory and [`MemStore`] for unit tests), change notification
//! ([`Watch`], [`Change`]) and the TOML front-matter helpers in [`front_matter`].
//!
//! The blackboard stores raw document text by id. Typed documents are built by callers on top of
//! [`front_matter`]; this module never calls a model and knows nothing of what agents mean by
//! the documents they exchange.
//!
//! Layout under the root (`<project>/.tavern/`):
//!
//! ```text
//! agents/<name>.md           one per agent
//! messages/<id>.md           one per message
//! work/pending/<id>.md       work items not yet done
//! work/completed/<id>.md     finished work items
//! prompts/<name>.md          project overrides of compiled-in prompt text
//! attic/<dir>/<name>.md      documents set aside (see [`DocStore::set_aside`]); never read back
//! ```
//!
//! Anything else under the root (such as `log/`, which belongs to another module) is ignored.

mod error;
pub mod front_matter;
mod fs_store;
mod fs_watch;
mod mem_store;
mod name;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

pub use error::StoreError;
pub use front_matter::FormatError;
pub use fs_store::FsStore;
pub use mem_store::MemStore;
pub use name::{DocName, NameError, NameRule, MAX_NAME_BYTES};

/// The file extension every document carries on disk.
const DOC_EXTENSION: &str = ".md";

/// The directory under the root that documents are set aside into.
const ATTIC: &str = "attic";

/// Where a document set aside goes, relative to the root: `attic/<dir>/<name>.md`, or with `.<n>`
/// before the extension for the `n`-th one of that name.
fn attic_path(id: &DocId, n: u32) -> PathBuf {
    let file = match n {
        0 | 1 => id.file_name(),
        n => format!("{}.{n}{DOC_EXTENSION}", id.name),
    };
    Path::new(ATTIC).join(id.collection.dir()).join(file)
}

/// One of the fixed directories of the blackboard, each holding one kind of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Collection {
    /// `agents/`: one document per agent.
    Agents,
    /// `messages/`: one document per message.
    Messages,
    /// `work/pending/`: work items not yet done.
    WorkPending,
    /// `work/completed/`: finished work items.
    WorkCompleted,
    /// `prompts/`: project overrides of compiled-in prompt text.
    Prompts,
}

impl Collection {
    /// Every collection, in a fixed order (the order of the variants).
    const ALL: [Collection; 5] = [
        Collection::Agents,
        Collection::Messages,
        Collection::WorkPending,
        Collection::WorkCompleted,
        Collection::Prompts,
    ];

    /// Every collection, in a fixed order (the order of the variants).
    pub fn all() -> &'static [Collection] {
        &Self::ALL
    }

    /// The collection's directory relative to the blackboard root, with `/` separators
    /// (for example `"work/pending"`).
    pub fn dir(&self) -> &'static str {
        match self {
            Collection::Agents => "agents",
            Collection::Messages => "messages",
            Collection::WorkPending => "work/pending",
            Collection::WorkCompleted => "work/completed",
            Collection::Prompts => "prompts",
        }
    }

    /// The collection whose directory is exactly `dir` (relative to the root), if any.
    ///
    /// Paths are compared component by component, so this works with either separator.
    fn from_dir(dir: &Path) -> Option<Collection> {
        Self::ALL
            .iter()
            .copied()
            .find(|collection| Path::new(collection.dir()) == dir)
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

/// The address of one document: which collection it lives in and its name there.
///
/// On disk the document is the file `<collection dir>/<name>.md` under the root; its
/// [`Display`](fmt::Display) form is that relative path with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId {
    /// The collection holding the document.
    pub collection: Collection,
    /// The document's name within the collection (the file name without `.md`).
    pub name: DocName,
}

impl DocId {
    /// Builds an id from its parts.
    pub fn new(collection: Collection, name: DocName) -> DocId {
        DocId { collection, name }
    }

    /// Builds an id from a collection and an unvalidated name.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `name` breaks one of the [`DocName`] rules.
    pub fn parse(collection: Collection, name: &str) -> Result<DocId, NameError> {
        Ok(DocId::new(collection, DocName::new(name)?))
    }

    /// The document's path relative to the blackboard root: `<dir>/<name>.md`.
    pub fn relative_path(&self) -> PathBuf {
        Path::new(self.collection.dir()).join(self.file_name())
    }

    /// The document's file name within its collection directory: `<name>.md`.
    pub fn file_name(&self) -> String {
        format!("{}{DOC_EXTENSION}", self.name)
    }

    /// Recognises a document path relative to the blackboard root.
    ///
    /// Returns `None` for anything that is not a document: paths outside the collection
    /// directories, files without the `.md` extension, and files whose name is not a valid
    /// [`DocName`] (which includes the dot-prefixed temporary files of an in-flight write).
    pub fn from_relative_path(path: &Path) -> Option<DocId> {
        let collection = Collection::from_dir(path.parent()?)?;
        let file_name = path.file_name()?.to_str()?;
        let name = file_name.strip_suffix(DOC_EXTENSION)?;
        let name = DocName::new(name).ok()?;
        Some(DocId::new(collection, name))
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{DOC_EXTENSION}", self.collection.dir(), self.name)
    }
}

/// What happened to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The document was created or its content replaced.
    Written,
    /// The document no longer exists.
    Removed,
}

/// A change to one document, as reported by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// The document that changed.
    pub id: DocId,
    /// Whether it was written or removed.
    pub kind: ChangeKind,
}

/// Storage for blackboard documents: raw text addressed by [`DocId`].
pub trait DocStore: Send + Sync + 'static {
    /// Returns the document's text, or `None` if it does not exist.
    fn read(&self, id: &DocId) -> Result<Option<String>, StoreError>;

    /// Creates or replaces the document.
    ///
    /// Atomic: readers and crashes see the old or the new content, never a mix.
    fn write(&self, id: &DocId, content: &str) -> Result<(), StoreError>;

    /// Removes the document. Returns `false` if it did not exist.
    fn remove(&self, id: &DocId) -> Result<bool, StoreError>;

    /// Moves a document out of its collection into `attic/<collection dir>/` under the root, keeping its
    /// bytes, so that it can be rewritten (or left absent) without losing what it held: a file that
    /// cannot be read as text, or one nothing accounts for any more. An earlier document set aside
    /// under the same name is kept too (the new one gets a numbered name). Returns where it went,
    /// relative to the root, or `None` if the document did not exist.
    fn set_aside(&self, id: &DocId) -> Result<Option<PathBuf>, StoreError>;

    /// Lists the documents of one collection, sorted by name.
    ///
    /// Temporary files of in-flight writes and files that are not documents are skipped.
    fn list(&self, collection: Collection) -> Result<Vec<DocId>, StoreError>;

    /// Subscribes to changes made by anyone (this process, another process, a person in an
    /// editor).
    ///
    /// Changes made after this returns are reported. A change may be reported more than once,
    /// so callers that care should compare contents; a change is never silently missed.
    fn watch(&self) -> Result<Watch, StoreError>;
}

/// A subscription to document changes, created by [`DocStore::watch`].
///
/// Dropping it stops watching and releases the underlying file-system watcher, if any.
pub struct Watch {
    // Declared before `changes` so that it is dropped first: the watcher stops producing
    // changes before the channel they are sent into goes away.
    watcher: Option<notify::RecommendedWatcher>,
    changes: mpsc::UnboundedReceiver<Change>,
}

impl Watch {
    /// Wraps a channel of changes, for [`DocStore`] implementations that produce changes
    /// themselves rather than through a file-system watcher.
    pub fn from_receiver(changes: mpsc::UnboundedReceiver<Change>) -> Watch {
        Watch {
            watcher: None,
            changes,
        }
    }

    /// Wraps a channel fed by a running file-system watcher that must live as long as the
    /// subscription.
    fn with_watcher(
        watcher: notify::RecommendedWatcher,
        changes: mpsc::UnboundedReceiver<Change>,
    ) -> Watch {
        Watch {
            watcher: Some(watcher),
            changes,
        }
    }

    /// Waits for the next change.
    ///
    /// Returns `None` once no more changes can arrive (the store behind the subscription is
    /// gone).
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await
    }

    /// Returns the next change if one is already waiting, without blocking.
    pub fn try_next(&mut self) -> Option<Change> {
        self.changes.try_recv().ok()
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("file_system", &self.watcher.is_some())
            .field("queued", &self.changes.len())
            .finish()
    }
}
