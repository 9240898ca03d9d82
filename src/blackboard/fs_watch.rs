//! Change notification for [`FsStore`](super::FsStore): turns raw `notify` events on the
//! blackboard root into [`Change`]s.
//!
//! Events are only used as hints about *which* path changed. What happened is decided by
//! looking at the file system afterwards (a document that exists was written, one that does not
//! was removed), because the sequence of raw events for the same edit differs between
//! platforms, editors and tools. When events cannot be trusted at all (the kernel queue
//! overflowed, the watcher reported an error, or a whole collection directory appeared or
//! vanished), the affected collections are rescanned and compared with the documents known to
//! exist. Reporting a change twice is acceptable; missing one is not.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::error::StoreError;
use super::fs_store::list_collection;
use super::{Change, ChangeKind, Collection, DocId};

/// Starts a recursive watcher on `root` that sends every document change into `sender`.
///
/// The returned watcher must be kept alive for as long as changes are wanted.
pub(super) fn start(
    root: &Path,
    sender: UnboundedSender<Change>,
) -> Result<RecommendedWatcher, StoreError> {
    let mut translator = Translator::new(root.to_path_buf(), sender);
    let watch_error = |source| StoreError::Watch {
        path: root.to_path_buf(),
        source,
    };
    let mut watcher = notify::recommended_watcher(move |result| translator.handle(result))
        .map_err(watch_error)?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(watch_error)?;
    Ok(watcher)
}

/// The state behind one watch: where the root is, which documents are believed to exist, and
/// where changes go.
///
/// It lives inside the watcher's event handler, which `notify` calls from a single thread, so
/// it needs no locking.
struct Translator {
    root: PathBuf,
    /// The documents believed to exist. Rescans compare against it to find removals that no
    /// event reported, such as the files of a directory moved away as a whole.
    known: BTreeSet<DocId>,
    sender: UnboundedSender<Change>,
}

impl Translator {
    fn new(root: PathBuf, sender: UnboundedSender<Change>) -> Translator {
        let mut known = BTreeSet::new();
        for &collection in Collection::all() {
            match list_collection(&root, collection) {
                Ok(ids) => known.extend(ids),
                // Without the initial listing a later rescan cannot notice that these documents
                // were removed, but changes reported by events still arrive, so watching goes on.
                Err(error) => warn!(%error, %collection,
                    "could not list blackboard collection when starting to watch"),
            }
        }
        Translator {
            root,
            known,
            sender,
        }
    }

    /// Handles one callback from `notify`.
    fn handle(&mut self, result: notify::Result<Event>) {
        let event = match result {
            Ok(event) => event,
            Err(error) => {
                // An error can mean events were lost (for example, a new directory could not be
                // watched), so everything is rescanned to make up for them.
                warn!(root = %self.root.display(), %error,
                    "blackboard watcher error; rescanning all collections");
                self.rescan(Collection::all());
                return;
            }
        };
        if event.need_rescan() {
            warn!(root = %self.root.display(),
                "blackboard watcher lost events; rescanning all collections");
            self.rescan(Collection::all());
            return;
        }
        // Opening, reading and closing a file change nothing, but closing after writing marks
        // the end of an in-place edit and so is a useful moment to look at the file.
        if let EventKind::Access(access) = event.kind {
            if access != AccessKind::Close(AccessMode::Write) {
                return;
            }
        }
        for path in &event.paths {
            self.handle_path(path);
        }
    }

    /// Reports what happened at `path`, an absolute path named by an event.
    fn handle_path(&mut self, path: &Path) {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return;
        };
        if let Some(id) = DocId::from_relative_path(relative) {
            let kind = current_state(path);
            self.report(id, kind);
            return;
        }
        // An event on a collection directory itself, or on one of its ancestors (`work/` or the
        // root), means the directory appeared, vanished or was replaced; its documents came or
        // went without events of their own, so the affected collections are rescanned.
        let affected: Vec<Collection> = Collection::all()
            .iter()
            .copied()
            .filter(|collection| Path::new(collection.dir()).starts_with(relative))
            .collect();
        if !affected.is_empty() {
            self.rescan(&affected);
        }
    }

    /// Compares the documents on disk in `collections` with the known ones, reporting every
    /// existing document as written and every vanished one as removed.
    ///
    /// Existing documents are reported even if they may be unchanged, because there is no way
    /// to tell which of them changed while events were lost.
    fn rescan(&mut self, collections: &[Collection]) {
        for &collection in collections {
            let on_disk = match list_collection(&self.root, collection) {
                Ok(ids) => ids,
                Err(error) => {
                    warn!(%error, %collection, "could not rescan blackboard collection");
                    continue;
                }
            };
            let on_disk_set: BTreeSet<&DocId> = on_disk.iter().collect();
            let vanished: Vec<DocId> = self
                .known
                .iter()
                .filter(|id| id.collection == collection && !on_disk_set.contains(id))
                .cloned()
                .collect();
            for id in vanished {
                self.report(id, ChangeKind::Removed);
            }
            for id in on_disk {
                self.report(id, ChangeKind::Written);
            }
        }
    }

    /// Records the change in the known set and sends it to the subscriber.
    fn report(&mut self, id: DocId, kind: ChangeKind) {
        match kind {
            ChangeKind::Written => self.known.insert(id.clone()),
            ChangeKind::Removed => self.known.remove(&id),
        };
        // Sending fails only once the `Watch` is being dropped, when nobody wants the change.
        let _ = self.sender.send(Change { id, kind });
    }
}

/// Decides what happened to the document file at `path` by looking at it now.
fn current_state(path: &Path) -> ChangeKind {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => ChangeKind::Written,
        // A directory with a document's name is not a document.
        Ok(_) => ChangeKind::Removed,
        Err(error) if error.kind() == io::ErrorKind::NotFound => ChangeKind::Removed,
        Err(error) => {
            // The file is there but cannot be inspected (for example, permissions changed).
            // Reporting it as written sends the subscriber to read it, where the error surfaces
            // with context instead of being lost here.
            warn!(path = %path.display(), %error, "could not inspect changed blackboard file");
            ChangeKind::Written
        }
    }
}
