//! Shared controller state. The store sits behind a mutex (mutations are serialized); the
//! host registry behind another; queries read a snapshot — patches, hosts, their diffs and the
//! derived patch states — that is rebuilt after every mutation or host change, so they never
//! wait for either.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use host_state::{
    HostDiff, HostFacts, PatchInfo, PatchState, derive_patch_states, desired_packages_holding,
};
use patch_store::{PatchRecord, RepoIndex, Store, StoreError};

use crate::ControllerConfig;
use crate::hosts::HostRegistry;

/// What the store holds, as queries see it.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoreView {
    pub(crate) patches: BTreeMap<String, PatchRecord>,
    pub(crate) app_deps: BTreeMap<String, BTreeSet<String>>,
    pub(crate) op_counter: u64,
    /// Per release: base load index and repository index.
    pub(crate) indexes: BTreeMap<String, (RepoIndex, RepoIndex)>,
}

impl StoreView {
    /// What the store holds now. An index that cannot be read is an error, never an empty
    /// one: every host's desired set (and so every patch state) is computed from it.
    fn of(store: &Store) -> Result<Self, StoreError> {
        let mut releases: BTreeSet<String> = store.releases().into_iter().collect();
        releases.extend(store.patches().map(|p| p.metadata.sw_version.clone()));
        let indexes = releases
            .into_iter()
            .map(|r| {
                let feed = store.feed_index(&r)?;
                let repo = store.repo_index(&r)?;
                Ok((r, (feed, repo)))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(StoreView {
            patches: store
                .patches()
                .map(|p| (p.metadata.id.clone(), p.clone()))
                .collect(),
            app_deps: store.app_dependencies().clone(),
            op_counter: store.op_counter(),
            indexes,
        })
    }
}

/// Why the controller's state could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The saved alarms.
    #[error(transparent)]
    Alarms(#[from] crate::alarms::AlarmError),
    /// A repository index.
    #[error(
        "{0}; repair or restore the file (a release's index is rewritten by its next apply or remove)"
    )]
    Index(#[from] StoreError),
    /// The hosts' credentials.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
}

/// A host as queries see it.
#[derive(Clone, Debug)]
pub(crate) struct HostView {
    pub(crate) facts: HostFacts,
    pub(crate) diff: HostDiff,
    pub(crate) install_state: host_state::InstallState,
    pub(crate) last_error: Option<String>,
    pub(crate) interim: bool,
    pub(crate) workloads: Vec<host_state::protocol::Workload>,
    pub(crate) workload_actions: bool,
    pub(crate) services_disabled: bool,
    /// Patches the host is held back from (`host-rollback`).
    pub(crate) held_patches: std::collections::BTreeSet<String>,
    /// Its last health check outcome.
    pub(crate) health: Option<host_state::protocol::HealthReport>,
}

impl HostView {
    pub(crate) fn patch_current(&self) -> bool {
        self.diff.is_empty()
    }

    /// Reboot Required: installed changes wait for a reboot, or pending ones need it.
    pub(crate) fn requires_reboot(&self) -> bool {
        self.facts.reboot_pending || self.diff.requires_reboot()
    }
}

/// What queries read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) store: Arc<StoreView>,
    pub(crate) hosts: Vec<HostView>,
    pub(crate) states: BTreeMap<String, PatchState>,
    /// How many host-registry changes this snapshot includes (see [`App::snapshot`]).
    host_changes_seen: u64,
}

impl Snapshot {
    pub(crate) fn patches(&self) -> &BTreeMap<String, PatchRecord> {
        &self.store.patches
    }

    /// The derived patch state (`n/a` without hosts).
    pub(crate) fn patch_state(&self, record: &PatchRecord) -> PatchState {
        self.states
            .get(&record.metadata.id)
            .copied()
            .unwrap_or(PatchState::NotApplicable)
    }

    /// Every patch's derived state (passed to semantic scripts and delete/commit checks).
    pub(crate) fn patch_states(&self) -> BTreeMap<String, PatchState> {
        self.states.clone()
    }

    /// Whether some reachable host is installing (apply/remove are refused meanwhile, as the
    /// original). An offline host does not count: one that died with an order outstanding
    /// would otherwise block every apply until it is aged out an hour later.
    pub(crate) fn any_installing(&self) -> bool {
        self.hosts.iter().any(|h| {
            h.install_state == host_state::InstallState::Installing
                && h.facts.availability != host_state::Availability::Offline
        })
    }
}

pub(crate) struct App {
    store: Mutex<Store>,
    /// Verifies uploads without holding the store.
    pub(crate) verifier: patch_store::UploadVerifier,
    /// One permit per upload being received and verified (`max_concurrent_uploads`): uploads
    /// run on threads of their own, and this bounds how many.
    pub(crate) upload_slots: Arc<tokio::sync::Semaphore>,
    /// Signs the repository indexes agents install from, with the key in the (replicated)
    /// state directory.
    pub(crate) repo_signer: Arc<repo_sign::Signer>,
    /// The enrolled hosts' credentials.
    pub(crate) credentials: Mutex<crate::credentials::HostCredentials>,
    store_view: RwLock<Arc<StoreView>>,
    hosts: Mutex<HostRegistry>,
    /// Patch → hosts that have not reported since it was applied or removed.
    interim: Mutex<BTreeMap<String, BTreeSet<String>>>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Counts host-registry changes (bumped under the registry's lock). A reader rebuilds the
    /// snapshot when it includes fewer (so a burst of agent reports costs one rebuild, not one
    /// each), and never gets one that lacks a change completed before its call.
    host_changes_made: AtomicU64,
    /// Serializes rebuilds, so a reader that needs a newer snapshot waits for the rebuild.
    rebuild: Mutex<()>,
    /// Wakes agents' long polls when an order is queued.
    pub(crate) orders: tokio::sync::Notify,
    /// Wakes a running strategy when a host changes (it need not wait for its next audit).
    pub(crate) host_changes: tokio::sync::Notify,
    /// Active alarms.
    alarms: Mutex<crate::alarms::Alarms>,
    pub(crate) config: ControllerConfig,
    /// The pair this controller belongs to, if it is one of two.
    pub(crate) ha: Option<Arc<crate::ha::Ha>>,
    /// The events the metrics count (requests, uploads, installs).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

/// Where the repository signing key lives in the state directory.
pub(crate) const REPO_SIGNING_DIR: &str = "repo-signing";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl App {
    pub(crate) fn new(
        store: Store,
        hosts: HostRegistry,
        config: ControllerConfig,
        ha: Option<Arc<crate::ha::Ha>>,
    ) -> Result<Self, OpenError> {
        let alarms = crate::alarms::Alarms::load(&config.state_dir)?;
        let credentials = crate::credentials::HostCredentials::load(&config.state_dir)?;
        let view = Arc::new(StoreView::of(&store)?);
        let app = App {
            verifier: store.upload_verifier(),
            upload_slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_uploads)),
            repo_signer: Arc::new(repo_sign::Signer::new(repo_sign::KeyFile::new(
                config.state_dir.join(REPO_SIGNING_DIR),
            ))),
            credentials: Mutex::new(credentials),
            store: Mutex::new(store),
            store_view: RwLock::new(view),
            hosts: Mutex::new(hosts),
            interim: Mutex::new(BTreeMap::new()),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            host_changes_made: AtomicU64::new(0),
            rebuild: Mutex::new(()),
            orders: tokio::sync::Notify::new(),
            host_changes: tokio::sync::Notify::new(),
            alarms: Mutex::new(alarms),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            config,
            ha,
        };
        app.refresh();
        Ok(app)
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        // A flag consumed by a concurrent rebuild is not enough: a reader arriving while that
        // rebuild runs would get the snapshot from before a change it must see (a poll right
        // after `host-install-async` reading `idle`). Compare counts instead.
        let wanted = self.host_changes_made.load(Ordering::Acquire);
        let current = self.published();
        if current.host_changes_seen >= wanted {
            return current;
        }
        let _rebuilding = lock(&self.rebuild);
        let current = self.published();
        if current.host_changes_seen >= wanted {
            return current;
        }
        self.refresh();
        self.published()
    }

    fn published(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The store's operation counter (without building a snapshot).
    pub(crate) fn op_counter(&self) -> u64 {
        self.store_view().op_counter
    }

    fn store_view(&self) -> Arc<StoreView> {
        match self.store_view.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds the snapshot from the store view, the host registry and interim states.
    fn refresh(&self) {
        let store = self.store_view();
        let hosts = lock(&self.hosts);
        // Exact: changes are counted under the registry's lock.
        let host_changes_seen = self.host_changes_made.load(Ordering::Acquire);
        let interim = lock(&self.interim).clone();
        let empty = (RepoIndex::default(), RepoIndex::default());
        let views: Vec<HostView> = hosts
            .hosts
            .values()
            .map(|entry| {
                let (feed, repo) = store.indexes.get(&entry.facts.sw_version).unwrap_or(&empty);
                let desired = desired_packages_holding(
                    entry.facts.personality,
                    feed,
                    repo,
                    &entry.facts.installed,
                    &entry.held_patches,
                );
                HostView {
                    diff: HostDiff::compute(&entry.facts.installed, &desired),
                    install_state: entry.effective_install_state(),
                    last_error: entry.last_error.clone(),
                    interim: interim.values().any(|h| h.contains(&entry.facts.hostname)),
                    workloads: entry.workloads.clone(),
                    workload_actions: entry.workload_actions,
                    services_disabled: entry.services_disabled,
                    held_patches: entry.held_patches.clone(),
                    health: entry.health.clone(),
                    facts: entry.facts.clone(),
                }
            })
            .collect();
        // Patches some host is held back from (rolled back) stay Partial-Apply.
        let held: std::collections::BTreeSet<String> = hosts
            .hosts
            .values()
            .flat_map(|h| h.held_patches.iter().cloned())
            .collect();
        drop(hosts);
        let infos: Vec<PatchInfo> = store
            .patches
            .values()
            .map(|p| PatchInfo {
                id: p.metadata.id.clone(),
                repo_state: p.repo_state,
                sw_version: p.metadata.sw_version.clone(),
                packages: p
                    .packages
                    .iter()
                    .map(|k| (k.id.key(), k.id.evr.clone()))
                    .collect(),
            })
            .collect();
        let pairs: Vec<(&HostFacts, &HostDiff)> =
            views.iter().map(|v| (&v.facts, &v.diff)).collect();
        let states = derive_patch_states(&infos, &pairs, &interim, &held);
        let fresh = Arc::new(Snapshot {
            store,
            hosts: views,
            states,
            host_changes_seen,
        });
        match self.snapshot.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// Runs a mutation on the store (callers are on a blocking thread), then publishes a new
    /// snapshot. Patches whose repo state changed become interim until every host re-reports.
    pub(crate) fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut store = lock(&self.store);
        let before: BTreeMap<String, patch_store::RepoState> = store
            .patches()
            .map(|p| (p.metadata.id.clone(), p.repo_state))
            .collect();
        let result = f(&mut store);
        let view = StoreView::of(&store);
        drop(store);
        let view = match view {
            Ok(view) => Arc::new(view),
            Err(e) => {
                // Queries keep the last good view; the caller hears of it either way.
                tracing::error!("store view after a change: {e}");
                return Err(result.err().unwrap_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the change was made, but the repository cannot be read back: {e}"
                    ))
                }));
            }
        };
        let hostnames: BTreeSet<String> = lock(&self.hosts).hosts.keys().cloned().collect();
        {
            let mut interim = lock(&self.interim);
            for (id, p) in &view.patches {
                if before.get(id).is_some_and(|s| *s != p.repo_state) && !hostnames.is_empty() {
                    interim.insert(id.clone(), hostnames.clone());
                }
            }
            interim.retain(|id, _| view.patches.contains_key(id));
        }
        self.publish(view);
        result
    }

    /// Makes a new store view the one queries see, and rebuilds the snapshot from it.
    fn publish(&self, view: Arc<StoreView>) {
        match self.store_view.write() {
            Ok(mut guard) => *guard = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
        let _rebuilding = lock(&self.rebuild);
        self.refresh();
    }

    /// Holds the store (no mutation starts meanwhile): a swact's final replication.
    pub(crate) fn hold_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Reopens everything from the state directory: a standby after its state was replaced
    /// by the active's. The store is opened anew before the old one is let go.
    pub(crate) fn reload(&self, store_config: patch_store::StoreConfig) -> Result<(), String> {
        let hosts_dir = self.config.state_dir.join("hosts");
        let hosts =
            HostRegistry::load(&hosts_dir).map_err(|e| format!("{}: {e}", hosts_dir.display()))?;
        let alarms =
            crate::alarms::Alarms::load(&self.config.state_dir).map_err(|e| e.to_string())?;
        let credentials = crate::credentials::HostCredentials::load(&self.config.state_dir)
            .map_err(|e| e.to_string())?;
        let view = {
            let mut store = lock(&self.store);
            let reopened = Store::open(store_config).map_err(|e| format!("store: {e}"))?;
            let view = StoreView::of(&reopened).map_err(|e| format!("store: {e}"))?;
            *store = reopened;
            Arc::new(view)
        };
        *lock(&self.hosts) = hosts;
        *lock(&self.alarms) = alarms;
        *lock(&self.credentials) = credentials;
        lock(&self.interim).clear();
        self.publish(view);
        Ok(())
    }

    /// Whether this controller takes mutations (always, unless it is the standby of a pair).
    pub(crate) fn is_active(&self) -> bool {
        self.ha.as_ref().is_none_or(|ha| ha.is_active())
    }

    /// The controller host this daemon runs on while it is the active one.
    pub(crate) fn active_controller(&self) -> Option<String> {
        match &self.ha {
            Some(ha) => Some(ha.state().active),
            None => self.config.local_controller.clone(),
        }
    }

    /// Runs `f` on the hosts' credentials.
    pub(crate) fn with_credentials<T>(
        &self,
        f: impl FnOnce(&mut crate::credentials::HostCredentials) -> T,
    ) -> T {
        f(&mut lock(&self.credentials))
    }

    /// Read access to the store itself (for the few queries a snapshot does not cover).
    pub(crate) fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&lock(&self.store))
    }

    /// Runs `f` on the host registry, then refreshes the snapshot if it says so.
    pub(crate) fn with_hosts<T>(&self, f: impl FnOnce(&mut HostRegistry) -> (T, bool)) -> T {
        let mut hosts = lock(&self.hosts);
        let (value, changed) = f(&mut hosts);
        if changed {
            self.host_changes_made.fetch_add(1, Ordering::AcqRel);
        }
        drop(hosts);
        if changed {
            self.host_changes.notify_one();
        }
        value
    }

    /// A host reported: it is no longer interim for any patch. Returns whether it was.
    pub(crate) fn host_reported(&self, hostname: &str) -> bool {
        let mut interim = lock(&self.interim);
        let mut was = false;
        for hosts in interim.values_mut() {
            was |= hosts.remove(hostname);
        }
        interim.retain(|_, h| !h.is_empty());
        was
    }

    /// The active alarms.
    pub(crate) fn alarms(&self) -> MutexGuard<'_, crate::alarms::Alarms> {
        lock(&self.alarms)
    }

    /// Forgets a host in the interim sets (drop-host, age-out).
    pub(crate) fn forget_host(&self, hostname: &str) {
        let _ = self.host_reported(hostname);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &std::path::Path) -> App {
        let config = ControllerConfig::new(dir, "19.01");
        let store = Store::open(patch_store::StoreConfig {
            root: dir.to_owned(),
            running_release: "19.01".into(),
            keyring: Default::default(),
            limits: config.limits(),
            rpm_keyring: None,
        })
        .unwrap();
        let hosts = HostRegistry::load(&dir.join("hosts")).unwrap();
        App::new(store, hosts, config, None).unwrap()
    }

    /// A repository index that cannot be read stops the controller, naming the file; it is
    /// never read as empty (a patch would then show Applied instead of Partial-Apply).
    #[test]
    fn a_garbage_index_is_an_error_not_an_empty_repository() {
        let dir = tempfile::tempdir().unwrap();
        let feed = dir.path().join("feed").join("rel-19.01");
        std::fs::create_dir_all(&feed).unwrap();
        std::fs::write(feed.join("index.json"), b"{\"release\": 7").unwrap();
        let config = ControllerConfig::new(dir.path(), "19.01");
        let store = Store::open(patch_store::StoreConfig {
            root: dir.path().to_owned(),
            running_release: "19.01".into(),
            keyring: Default::default(),
            limits: config.limits(),
            rpm_keyring: None,
        })
        .unwrap();
        let hosts = HostRegistry::load(&dir.path().join("hosts")).unwrap();
        let err = App::new(store, hosts, config, None).err().expect("refused");
        assert!(err.to_string().contains("index.json"), "{err}");
    }

    /// A reader never gets a snapshot lacking a host change that completed before it asked,
    /// however other readers' rebuilds interleave (a poll right after an install order once
    /// read `idle` because another reader had taken the rebuild and not yet published).
    #[test]
    fn a_snapshot_includes_every_change_made_before_it_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let app = Arc::new(app(dir.path()));
        app.with_hosts(|h| {
            let changed = h.report(crate::hosts::tests::report_for_test("a", 0), 0);
            ((), changed)
        });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (app, stop) = (app.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = app.snapshot();
                    }
                })
            })
            .collect();
        for round in 1..=300u64 {
            let seq = app.with_hosts(|h| (h.order_install("compute-0", false, 0), true));
            assert_eq!(seq, Some(round));
            let snapshot = app.snapshot();
            assert_eq!(
                snapshot.hosts[0].install_state,
                host_state::InstallState::Installing,
                "round {round}: the snapshot lacks the install order"
            );
            // The agent finishes it.
            app.with_hosts(|h| {
                let changed = h.report(crate::hosts::tests::report_for_test("a", round), round);
                ((), changed)
            });
            assert_eq!(
                app.snapshot().hosts[0].install_state,
                host_state::InstallState::Idle,
                "round {round}: the snapshot lacks the finished install"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
