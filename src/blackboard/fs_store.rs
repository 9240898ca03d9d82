//! [`FsStore`]: the blackboard as real files under `.tavern/`, with crash-safe writes.
//!
//! Writes go to a dot-prefixed temporary file in the target's directory, are flushed to disk,
//! and are then renamed over the target, so a reader (or a crash) only ever sees the old or the
//! new content. The directory is flushed after every rename and unlink so that the change
//! itself survives a crash. Temporary files are never valid document names, which is how
//! listing and watching skip them, including ones left behind by a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::error::StoreError;
use super::fs_watch;
use super::{attic_path, Collection, DocId, DocName, DocStore, Watch, ATTIC, DOC_EXTENSION};

/// A [`DocStore`] backed by the `.tavern/` directory on disk.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens the blackboard rooted at `root` (normally `<project>/.tavern`), creating the root
    /// and every collection directory that does not exist yet.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Io`] if a directory cannot be created or the root cannot be
    /// resolved.
    pub fn open(root: impl AsRef<Path>) -> Result<FsStore, StoreError> {
        let root = root.as_ref();
        for collection in Collection::all() {
            let dir = root.join(collection.dir());
            fs::create_dir_all(&dir).map_err(|source| StoreError::io(&dir, source))?;
        }
        // The watcher reports absolute paths that have to be matched against the root, and some
        // platforms (macOS) report them with symbolic links resolved, so the root is kept in
        // its canonical form.
        let root = root
            .canonicalize()
            .map_err(|source| StoreError::io(root, source))?;
        Ok(FsStore { root })
    }

    /// The blackboard's root directory, canonicalised.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of a document's file.
    pub fn path_of(&self, id: &DocId) -> PathBuf {
        self.root.join(id.relative_path())
    }

    /// Writes `content` to a new temporary file in `dir` and renames it over `target`.
    fn replace_atomically(&self, dir: &Path, id: &DocId, content: &str) -> Result<(), StoreError> {
        let temp = dir.join(temp_file_name(&id.name));
        let target = dir.join(id.file_name());
        if let Err(err) = write_synced(&temp, content).and_then(|()| {
            fs::rename(&temp, &target).map_err(|source| StoreError::io(&target, source))
        }) {
            // The temporary file would otherwise linger until someone deletes it by hand.
            // Failing to remove it is only worth a warning, because listing and watching
            // ignore it anyway; the original error is the one the caller needs.
            if let Err(cleanup) = fs::remove_file(&temp) {
                if cleanup.kind() != io::ErrorKind::NotFound {
                    warn!(path = %temp.display(), error = %cleanup,
                        "could not remove temporary blackboard file after a failed write");
                }
            }
            return Err(err);
        }
        sync_dir(dir)
    }
}

impl DocStore for FsStore {
    fn read(&self, id: &DocId) -> Result<Option<String>, StoreError> {
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|source| StoreError::NotUtf8 { path, source }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::io(path, source)),
        }
    }

    fn write(&self, id: &DocId, content: &str) -> Result<(), StoreError> {
        let dir = self.root.join(id.collection.dir());
        // A person may delete a collection directory while Tavern runs; recreating it here
        // (a cheap no-op when it exists) keeps writes working instead of failing until restart.
        fs::create_dir_all(&dir).map_err(|source| StoreError::io(&dir, source))?;
        self.replace_atomically(&dir, id, content)
    }

    fn remove(&self, id: &DocId) -> Result<bool, StoreError> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(StoreError::io(path, source)),
        }
        sync_dir(&self.root.join(id.collection.dir()))?;
        Ok(true)
    }

    fn set_aside(&self, id: &DocId) -> Result<Option<PathBuf>, StoreError> {
        let from = self.path_of(id);
        if !from.exists() {
            return Ok(None);
        }
        let dir = self.root.join(ATTIC).join(id.collection.dir());
        fs::create_dir_all(&dir).map_err(|source| StoreError::io(&dir, source))?;
        // The attic name is reserved first (creating a file that must not exist), so an earlier
        // document set aside under this name survives; then the document is renamed onto it, which
        // moves whatever file is at `from` at that instant (a person's save that lands meanwhile is
        // moved whole, never deleted).
        const MOST: u32 = 10_000;
        for n in 1..=MOST {
            let relative = attic_path(id, n);
            let to = self.root.join(&relative);
            match OpenOptions::new().write(true).create_new(true).open(&to) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(StoreError::io(to, source)),
            }
            return match fs::rename(&from, &to) {
                Ok(()) => {
                    sync_dir(&dir)?;
                    sync_dir(&self.root.join(id.collection.dir()))?;
                    Ok(Some(relative))
                }
                Err(err) => {
                    // The reservation is empty; it would only confuse whoever looks in the attic.
                    let _ = fs::remove_file(&to);
                    if err.kind() == io::ErrorKind::NotFound {
                        Ok(None)
                    } else {
                        Err(StoreError::io(from, err))
                    }
                }
            };
        }
        Err(StoreError::io(
            dir,
            io::Error::other(format!(
                "{MOST} documents named {} are set aside already; clear out the attic",
                id.name
            )),
        ))
    }

    fn list(&self, collection: Collection) -> Result<Vec<DocId>, StoreError> {
        list_collection(&self.root, collection)
    }

    fn watch(&self) -> Result<Watch, StoreError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let watcher = fs_watch::start(&self.root, sender)?;
        Ok(Watch::with_watcher(watcher, receiver))
    }
}

/// The temporary file a write of document `name` goes through: `.<name>.md.tmp-<uuid>`.
///
/// The leading dot makes it an invalid document name, so it is never listed or reported, and
/// the UUID keeps concurrent writers of the same document from sharing a temporary file.
fn temp_file_name(name: &DocName) -> String {
    format!(".{name}{DOC_EXTENSION}.tmp-{}", uuid::Uuid::new_v4())
}

/// Creates `path` (which must not exist), writes `content` and flushes it to disk.
fn write_synced(path: &Path, content: &str) -> Result<(), StoreError> {
    let io_error = |source| StoreError::io(path, source);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error)?;
    file.write_all(content.as_bytes()).map_err(io_error)?;
    // Without this the rename could reach the disk before the data, and a crash would leave
    // an empty or partial document under the target name.
    file.sync_all().map_err(io_error)
}

/// Flushes a directory's entries to disk so that a rename or unlink in it survives a crash.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| StoreError::io(dir, source))
}

/// Directories cannot be opened as files on this platform, and its file systems make renames
/// durable without a directory flush, so there is nothing to do.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Lists the documents of `collection` under `root`, sorted by name.
///
/// Shared with the watcher, which rescans collections when it cannot trust its events. A
/// missing collection directory lists as empty: it holds no documents.
pub(super) fn list_collection(
    root: &Path,
    collection: Collection,
) -> Result<Vec<DocId>, StoreError> {
    let dir = root.join(collection.dir());
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StoreError::io(dir, source)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::io(&dir, source))?;
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .and_then(|file_name| file_name.strip_suffix(DOC_EXTENSION))
        else {
            continue;
        };
        let Ok(name) = DocName::new(name) else {
            debug!(path = %entry.path().display(), "skipping file that is not a blackboard document");
            continue;
        };
        // `metadata` follows symbolic links, so a link to a document counts as a document and
        // a directory named like one does not.
        match fs::metadata(entry.path()) {
            Ok(meta) if meta.is_file() => ids.push(DocId::new(collection, name)),
            Ok(_) => {}
            // The file vanished between listing and inspection, or is a dangling link: either
            // way there is no document to report.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::io(entry.path(), source)),
        }
    }
    ids.sort();
    Ok(ids)
}
