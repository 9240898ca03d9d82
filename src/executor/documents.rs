//! The projector's side that touches files: writing documents only when no person's unrecorded edit
//! would be lost, classifying what is on disk against the state, and repairing `.tavern/` at start.
//!
//! A document that cannot be read as text, or that no entry of the log accounts for, is never
//! overwritten or deleted: it is set aside into `.tavern/attic/` (see `DocStore::set_aside`), said, and
//! the document the log implies is written in its place.

use std::path::PathBuf;

use super::{lock, ProjectorJob, Tavern};
use crate::blackboard::{Collection, DocId, StoreError};
use crate::domain::{projection, EditBase};

/// What a document on disk is, compared with the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentState {
    /// What the state implies.
    Current,
    /// Written by Tavern (its seal is intact) but behind the state.
    Stale,
    /// Changed (or deleted) by someone else.
    Edited,
}

/// When the projector may overwrite a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Always (at startup, before anyone else writes).
    Unchecked,
    /// If the file is absent, or Tavern wrote it (its seal is intact).
    Ours,
    /// If the file still holds the recorded edit with this hash, or Tavern wrote it.
    Recorded(Option<u64>),
}

/// A document moved into `.tavern/attic/` instead of being overwritten or left unexplained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The document, relative to `.tavern/`.
    pub from: PathBuf,
    /// Where it went, relative to `.tavern/`.
    pub to: PathBuf,
    /// Why.
    pub reason: String,
}

/// What re-projecting every document at start found and did.
#[derive(Debug, Default)]
pub(crate) struct Reprojection {
    /// Documents rewritten because they were missing, out of date or unreadable.
    pub repaired: usize,
    /// Documents a person edited while Tavern was stopped, with their content, to be recorded.
    pub edited: Vec<(DocId, Option<String>)>,
    /// Documents moved into the attic.
    pub set_aside: Vec<SetAside>,
}

/// The collections Tavern projects from the log (prompt overrides are people's own files).
pub(crate) const PROJECTED: [Collection; 4] = [
    Collection::Agents,
    Collection::Messages,
    Collection::WorkPending,
    Collection::WorkCompleted,
];

impl Tavern {
    /// Writes documents, each only if its precondition holds. A file someone else changed since Tavern
    /// wrote it (its seal is broken) and whose change is not yet recorded is handed to the watcher
    /// instead of being overwritten, so a person's edit is never lost to a projection.
    pub(crate) fn write_documents(&self, writes: Vec<(projection::DocWrite, Precondition)>) {
        let store = &self.inner.store;
        for (write, pre) in writes {
            let id = write_id(&write).clone();
            let current = match store.read(&id) {
                Ok(current) => current,
                // Not text: maybe someone's save in progress. The watcher decides once it has settled
                // (see `unreadable`); until then it is not overwritten.
                Err(StoreError::NotUtf8 { .. }) => {
                    let _ = self.inner.external_edits.send(id);
                    continue;
                }
                Err(e) => {
                    self.projection_failed(format!("cannot read {id} before rewriting it: {e}"));
                    continue;
                }
            };
            let ours = || match current.as_deref() {
                None => true,
                Some(c) => projection::unseal(c).1 == projection::Seal::Intact,
            };
            let allowed = match pre {
                Precondition::Unchecked => true,
                Precondition::Ours => ours(),
                Precondition::Recorded(recorded) => {
                    current.as_deref().map(projection::stable_hash) == recorded || ours()
                }
            };
            if !allowed {
                // Someone edited the file and the edit is not recorded yet. Record it first; its
                // application re-projects this document.
                let _ = self.inner.external_edits.send(id);
                continue;
            }
            let result = match &write {
                projection::DocWrite::Put(_, content) => {
                    self.remember_base(&id, content);
                    if current.as_deref() == Some(content.as_str()) {
                        continue;
                    }
                    store.write(&id, content)
                }
                projection::DocWrite::Remove(_) => {
                    if current.is_none() {
                        continue;
                    }
                    store.remove(&id).map(|_| ())
                }
            };
            if let Err(e) = result {
                self.projection_failed(format!(
                    "cannot write {id}: {e}; it will be rewritten from the log at the next start"
                ));
            }
        }
    }

    fn remember_base(&self, id: &DocId, content: &str) {
        // Only agent documents have parts a person may edit.
        if id.collection != Collection::Agents {
            return;
        }
        if let Some(base) = projection::agent_edit_base(content) {
            let mut bases = lock(&self.inner.bases);
            let recent = bases.entry(id.clone()).or_default();
            if recent.iter().all(|(seal, _)| *seal != base.0) {
                recent.push_front(base);
                // A person's editor buffer is rarely more than a few versions behind.
                recent.truncate(16);
            }
        }
    }

    /// The version of an agent document a person's edit started from, if Tavern wrote it recently.
    pub(crate) fn edit_base(&self, id: &DocId, content: Option<&str>) -> Option<EditBase> {
        let seal = projection::stated_seal(content?)?;
        lock(&self.inner.bases)
            .get(id)?
            .iter()
            .find(|(s, _)| *s == seal)
            .map(|(_, base)| base.clone())
    }

    /// What a document's current content means: Tavern's own and up to date, Tavern's own but out of
    /// date (restored quietly), or a person's edit (recorded as an intent).
    pub(crate) fn classify(&self, id: &DocId, content: Option<&str>) -> DocumentState {
        let expected = self.read(|s| projection::expected_content(s, id));
        if content == expected.as_deref() {
            return DocumentState::Current;
        }
        match content {
            Some(c) if projection::unseal(c).1 == projection::Seal::Intact => DocumentState::Stale,
            // A missing document Tavern does not manage (a deleted prompt override) is nobody's edit.
            None if expected.is_none() => DocumentState::Current,
            _ => DocumentState::Edited,
        }
    }

    /// Rewrites a document from the durable state: after a person's edit of it was recorded (taken or
    /// refused) — unless the file changed again since `recorded` was read from it — or because it was
    /// out of date.
    pub(crate) fn restore(&self, id: DocId, recorded: Option<&str>) {
        let _ = self.inner.projector.send(ProjectorJob::Restore(
            id,
            recorded.map(projection::stable_hash),
        ));
    }

    /// Reads a document as it is at start, when nobody else is writing it. One that is not valid UTF-8
    /// is nobody's readable edit and would otherwise be stuck (it can be neither recorded nor compared),
    /// so it is set aside and reads as missing, which makes the projection write it again from the log.
    fn read_at_start(&self, id: &DocId) -> Result<(Option<String>, Option<SetAside>), StoreError> {
        match self.inner.store.read(id) {
            Err(StoreError::NotUtf8 { source, .. }) if PROJECTED.contains(&id.collection) => {
                let set = self.set_aside_unreadable(id, source.utf8_error())?;
                Ok((None, set))
            }
            other => other.map(|content| (content, None)),
        }
    }

    /// Moves a document Tavern projects that is not valid UTF-8 into the attic, saying so.
    fn set_aside_unreadable(
        &self,
        id: &DocId,
        error: std::str::Utf8Error,
    ) -> Result<Option<SetAside>, StoreError> {
        let reason = format!(
            "is not valid UTF-8 (byte {} is not text)",
            error.valid_up_to() + 1
        );
        Ok(self.inner.store.set_aside(id)?.map(|to| {
            let set = SetAside {
                from: id.relative_path(),
                to,
                reason,
            };
            tracing::warn!(
                "{} {}; moved it to .tavern/{} and wrote it again from the log",
                set.from.display(),
                set.reason,
                set.to.display()
            );
            set
        }))
    }

    /// Handles a document found not to be UTF-8 while Tavern runs, which the watcher has seen hold
    /// `bytes` for a settle period: prompt overrides are people's own files and are left alone (the
    /// registry ignores an unreadable one and says so); a projected document is set aside and written
    /// again at once, before anyone could take its absence for a person's deletion. Returns whether it
    /// was set aside.
    pub(crate) fn unreadable(&self, id: &DocId, error: std::str::Utf8Error) -> bool {
        if !PROJECTED.contains(&id.collection) {
            tracing::warn!("{id} is not valid UTF-8; Tavern leaves it as it is");
            return false;
        }
        match self.set_aside_unreadable(id, error) {
            Ok(Some(_)) => {
                let content = self.read(|s| projection::expected_content(s, id));
                if let Some(content) = content {
                    let write = projection::DocWrite::Put(id.clone(), content);
                    self.write_documents(vec![(write, Precondition::Recorded(None))]);
                }
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.projection_failed(format!("cannot set {id} aside: {e}"));
                false
            }
        }
    }

    /// Re-projects every document the durable state implies. Documents that are missing, unreadable,
    /// or that Tavern wrote but a crash left out of date are rewritten (and counted); documents a person
    /// edited while Tavern was not running are returned with their content, to be recorded before they
    /// are restored. Documents Tavern wrote that no entry of the log accounts for any more (left by
    /// entries cut off the log: a log restored from an older backup, or cut by hand) are set aside into the attic; files a person made
    /// there are left alone.
    pub(crate) fn reproject_all(&self) -> Reprojection {
        let writes = self.read(projection::all_documents);
        let mut found = Reprojection::default();
        let mut to_write = Vec::new();
        let mut projected = std::collections::HashSet::new();
        for write in writes {
            let id = write_id(&write).clone();
            let current = match self.read_at_start(&id) {
                Ok((current, set_aside)) => {
                    found.set_aside.extend(set_aside);
                    current
                }
                Err(e) => {
                    self.projection_failed(format!("cannot read {id}: {e}"));
                    continue;
                }
            };
            if let projection::DocWrite::Put(..) = write {
                projected.insert(id.clone());
            }
            match (&write, self.classify(&id, current.as_deref())) {
                (projection::DocWrite::Put(_, content), DocumentState::Current) => {
                    self.remember_base(&id, content)
                }
                (_, DocumentState::Current) => {}
                (projection::DocWrite::Put(..), DocumentState::Edited) if current.is_some() => {
                    found.edited.push((id, current))
                }
                _ => {
                    found.repaired += 1;
                    to_write.push((write, Precondition::Unchecked));
                }
            }
        }
        self.write_documents(to_write);
        self.set_aside_orphans(&projected, &mut found);
        found
    }

    /// Sets aside the documents Tavern wrote (their seal is intact) that the state no longer implies.
    fn set_aside_orphans(
        &self,
        projected: &std::collections::HashSet<DocId>,
        found: &mut Reprojection,
    ) {
        for collection in PROJECTED {
            let ids = match self.inner.store.list(collection) {
                Ok(ids) => ids,
                Err(e) => {
                    self.projection_failed(format!("cannot list {collection}/: {e}"));
                    continue;
                }
            };
            for id in ids.into_iter().filter(|id| !projected.contains(id)) {
                let ours = match self.read_at_start(&id) {
                    Ok((Some(content), _)) => {
                        projection::unseal(&content).1 == projection::Seal::Intact
                    }
                    Ok((None, set_aside)) => {
                        found.set_aside.extend(set_aside);
                        false
                    }
                    Err(e) => {
                        self.projection_failed(format!("cannot read {id}: {e}"));
                        false
                    }
                };
                if !ours {
                    continue;
                }
                match self.inner.store.set_aside(&id) {
                    Ok(Some(to)) => {
                        let set = SetAside {
                            from: id.relative_path(),
                            to,
                            reason: "was written by Tavern, but no entry of the log accounts \
                                     for it"
                                .to_string(),
                        };
                        tracing::warn!(
                            "{} {}; moved it to .tavern/{}",
                            set.from.display(),
                            set.reason,
                            set.to.display()
                        );
                        found.set_aside.push(set);
                    }
                    Ok(None) => {}
                    Err(e) => self.projection_failed(format!("cannot set {id} aside: {e}")),
                }
            }
        }
    }
}

pub(super) fn write_id(write: &projection::DocWrite) -> &DocId {
    match write {
        projection::DocWrite::Put(id, _) | projection::DocWrite::Remove(id) => id,
    }
}
