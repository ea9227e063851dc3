//! Host operations: the inventory (`system host-list|host-show`, `query_hosts`) and the
//! actions on a host (install, lock, unlock, swact, drop). The rules are
//! [`crate::inventory`]'s; here they become mutations that wait for the standby.

use super::{Service, ServiceError, blocking};
use crate::inventory::{self, HostRecord};

impl Service {
    /// Every host, in the registry's order.
    pub(crate) fn hosts(&self) -> Vec<HostRecord> {
        inventory::host_records(&self.app.snapshot())
    }

    /// One host by name or address.
    pub(crate) fn host(&self, name: &str) -> Result<HostRecord, ServiceError> {
        Ok(inventory::host_record(&self.app.snapshot(), name)?)
    }

    /// A host action on the registry, then the wait for the standby; the answer is the
    /// original's info line.
    async fn host_action(
        &self,
        f: impl FnOnce(&crate::state::App) -> Result<String, inventory::HostActionError>
        + Send
        + 'static,
    ) -> Result<String, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let result = blocking(move || Ok(f(&app)?)).await;
        self.settled(result).await
    }

    /// Orders an install on a host (`force`: even if it is unlocked and the change needs a
    /// reboot).
    pub(crate) async fn install(&self, name: String, force: bool) -> Result<String, ServiceError> {
        self.host_action(move |app| inventory::install(app, &name, force))
            .await
    }

    /// Holds a host back from applied patches (`host-rollback`).
    pub(crate) async fn hold_back(
        &self,
        name: String,
        patches: Vec<String>,
        all: bool,
    ) -> Result<String, ServiceError> {
        self.host_action(move |app| inventory::hold_back(app, &name, &patches, all))
            .await
    }

    /// Releases a held-back host (`host-release`).
    pub(crate) async fn release(&self, name: String) -> Result<String, ServiceError> {
        self.host_action(move |app| inventory::release(app, &name))
            .await
    }

    /// Locks a host.
    pub(crate) async fn lock(&self, name: String, force: bool) -> Result<String, ServiceError> {
        self.host_action(move |app| inventory::lock(app, &name, force))
            .await
    }

    /// Unlocks a host (rebooting it when an install waits for that).
    pub(crate) async fn unlock(&self, name: String) -> Result<String, ServiceError> {
        self.host_action(move |app| inventory::unlock(app, &name))
            .await
    }

    /// Forgets a host and revokes its credential: it must enrol again before it may report.
    /// A host that aged out of the inventory but still holds a credential can be dropped too.
    pub(crate) async fn drop_host(&self, name: String) -> Result<String, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let result = blocking(move || {
            // The host's own name (an address may have been given), before it is forgotten.
            let host = inventory::host_record(&app.snapshot(), &name)
                .map(|h| h.hostname)
                .unwrap_or_else(|_| name.clone());
            let dropped = inventory::drop_host(&app, &name);
            let revoked = app.with_credentials(|c| c.revoke(&host))?;
            if revoked {
                tracing::info!(target: "audit", "host {host}: credential revoked");
            }
            match dropped {
                Ok(message) => Ok(message),
                Err(_) if revoked => Ok(format!("{host} has been dropped\n")),
                Err(e) => Err(e.into()),
            }
        })
        .await;
        self.settled(result).await
    }

    /// Hands the active role to the standby. With `force`, sent to the standby, it takes
    /// over from an active that is gone: the one mutation a standby accepts.
    pub(crate) async fn swact(&self, name: String, force: bool) -> Result<String, ServiceError> {
        let app = self.app.clone();
        if force {
            return blocking(move || Ok(inventory::swact(&app, &name, true)?)).await;
        }
        self.host_action(move |app| inventory::swact(app, &name, false))
            .await
    }
}
