//! The controller as the owner of a replicated state directory: what the pair layer
//! ([`crate::ha`]) may ask of it, without knowing the app, the strategy or the API.

use std::sync::{Arc, Weak};

use patch_store::StoreConfig;

use crate::ha::StateOwner;
use crate::orchestration::Orchestration;
use crate::state::App;

/// The store, host registry and alarms (the app) and the strategy, reached weakly (the pair
/// layer must not keep the controller alive).
pub(crate) struct PairOwner {
    pub(crate) app: Weak<App>,
    pub(crate) orch: Weak<Orchestration>,
    /// How the store is reopened after the state directory was replaced.
    pub(crate) store_config: StoreConfig,
}

impl PairOwner {
    pub(crate) fn new(
        app: &Arc<App>,
        orch: &Arc<Orchestration>,
        store_config: StoreConfig,
    ) -> Self {
        PairOwner {
            app: Arc::downgrade(app),
            orch: Arc::downgrade(orch),
            store_config,
        }
    }
}

impl StateOwner for PairOwner {
    fn with_store_paused(&self, f: &mut dyn FnMut()) {
        match self.app.upgrade() {
            Some(app) => app.with_store(|_| f()),
            None => f(),
        }
    }

    fn with_all_paused(&self, f: &mut dyn FnMut()) {
        // The strategy slot, then the store: what the audit takes, in its order.
        let orch = self.orch.upgrade();
        let _strategy = orch.as_ref().map(|o| o.hold());
        match self.app.upgrade() {
            Some(app) => {
                let _store = app.hold_store();
                f()
            }
            None => f(),
        }
    }

    fn reopen(&self) -> Result<(), String> {
        let Some(app) = self.app.upgrade() else {
            return Ok(());
        };
        app.reload(self.store_config.clone())?;
        if let Some(orch) = self.orch.upgrade() {
            orch.reload().map_err(|e| format!("strategy: {e}"))?;
        }
        Ok(())
    }

    fn became_active(&self) {
        if let Some(orch) = self.orch.upgrade() {
            orch.wake.notify_one();
        }
    }

    fn handed_over(&self) {
        if let Some(app) = self.app.upgrade() {
            app.orders.notify_waiters();
        }
    }
}
