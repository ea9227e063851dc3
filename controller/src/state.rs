//! Shared controller state: the store behind a mutex (mutations are serialized) and a
//! snapshot of it behind a read-write lock (queries never wait for a mutation).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use patch_store::{PatchRecord, Store, StoreError};

use crate::ControllerConfig;

/// What queries read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) patches: BTreeMap<String, PatchRecord>,
    pub(crate) app_deps: BTreeMap<String, BTreeSet<String>>,
    pub(crate) op_counter: u64,
}

impl Snapshot {
    fn of(store: &Store) -> Self {
        Snapshot {
            patches: store
                .patches()
                .map(|p| (p.metadata.id.clone(), p.clone()))
                .collect(),
            app_deps: store.app_dependencies().clone(),
            op_counter: store.op_counter(),
        }
    }

    /// The derived patch state. With no hosts known the original reports `n/a`; host
    /// reports refine it once agents exist.
    pub(crate) fn patch_state(&self, _record: &PatchRecord) -> String {
        "n/a".to_owned()
    }

    /// Every patch's derived state (passed to semantic scripts and delete/commit checks).
    pub(crate) fn patch_states(&self) -> BTreeMap<String, String> {
        self.patches
            .iter()
            .map(|(id, p)| (id.clone(), self.patch_state(p)))
            .collect()
    }
}

pub(crate) struct App {
    store: Mutex<Store>,
    /// Verifies uploads without holding the store.
    pub(crate) verifier: patch_store::UploadVerifier,
    snapshot: RwLock<Arc<Snapshot>>,
    pub(crate) config: ControllerConfig,
}

impl App {
    pub(crate) fn new(store: Store, config: ControllerConfig) -> Self {
        let snapshot = Snapshot::of(&store);
        App {
            verifier: store.upload_verifier(),
            store: Mutex::new(store),
            snapshot: RwLock::new(Arc::new(snapshot)),
            config,
        }
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs a mutation on the store (callers are on a blocking thread), then publishes a new
    /// snapshot. A panic in an earlier mutation poisons nothing the store relies on — its
    /// state is on disk — so a poisoned lock is taken over.
    pub(crate) fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut store = match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = f(&mut store);
        let fresh = Arc::new(Snapshot::of(&store));
        match self.snapshot.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        result
    }

    /// Read access to the store itself (for the few queries a snapshot does not cover).
    pub(crate) fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        let store = match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&store)
    }
}
