//! [`MemStore`]: an in-memory [`DocStore`] for unit tests of code built on the blackboard.
//!
//! It behaves like [`FsStore`](super::FsStore) as seen through the trait, except that the
//! only changes its watches can see are the ones made through the store itself.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc::{self, UnboundedSender};

use super::error::StoreError;
use super::{Change, ChangeKind, Collection, DocId, DocStore, Watch};

/// A [`DocStore`] that keeps documents in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Ordered so that listing a collection is already sorted by name.
    docs: BTreeMap<DocId, String>,
    /// Documents set aside, by their path under the root.
    attic: BTreeMap<std::path::PathBuf, String>,
    /// One sender per live [`Watch`]; senders whose watch was dropped are pruned on the next
    /// change.
    subscribers: Vec<UnboundedSender<Change>>,
}

impl State {
    /// Sends `change` to every live subscriber.
    ///
    /// Called with the lock held, so that subscribers see changes in the order they were
    /// applied to the documents.
    fn publish(&mut self, id: &DocId, kind: ChangeKind) {
        self.subscribers.retain(|subscriber| {
            subscriber
                .send(Change {
                    id: id.clone(),
                    kind,
                })
                .is_ok()
        });
    }
}

impl MemStore {
    /// Creates an empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Locks the state.
    ///
    /// A panic while the lock was held cannot leave the state half-updated (every update is a
    /// single map operation followed by sending), so a poisoned lock is simply taken over
    /// rather than turning one test's panic into failures everywhere else.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DocStore for MemStore {
    fn read(&self, id: &DocId) -> Result<Option<String>, StoreError> {
        Ok(self.lock().docs.get(id).cloned())
    }

    fn write(&self, id: &DocId, content: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.docs.insert(id.clone(), content.to_owned());
        state.publish(id, ChangeKind::Written);
        Ok(())
    }

    fn remove(&self, id: &DocId) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let existed = state.docs.remove(id).is_some();
        if existed {
            state.publish(id, ChangeKind::Removed);
        }
        Ok(existed)
    }

    fn set_aside(&self, id: &DocId) -> Result<Option<std::path::PathBuf>, StoreError> {
        let mut state = self.lock();
        let Some(content) = state.docs.remove(id) else {
            return Ok(None);
        };
        let path = (1..)
            .map(|n| super::attic_path(id, n))
            .find(|path| !state.attic.contains_key(path))
            .expect("some numbered name is free");
        state.attic.insert(path.clone(), content);
        state.publish(id, ChangeKind::Removed);
        Ok(Some(path))
    }

    fn list(&self, collection: Collection) -> Result<Vec<DocId>, StoreError> {
        Ok(self
            .lock()
            .docs
            .keys()
            .filter(|id| id.collection == collection)
            .cloned()
            .collect())
    }

    fn watch(&self) -> Result<Watch, StoreError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().subscribers.push(sender);
        Ok(Watch::from_receiver(receiver))
    }
}
