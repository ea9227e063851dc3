//! The host registry: what each agent last reported, its administrative state and pending
//! order, persisted under `<state>/hosts/` so a controller restart keeps the inventory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use host_state::protocol::{AgentOrder, Delivery, HostReport, Workload, WorkloadVerb};
use host_state::{AdminState, Availability, HostFacts, InstallState, OperState};
use serde::{Deserialize, Serialize};

/// A host not heard from for this long is dropped from the inventory (the original's value).
pub(crate) const AGE_OUT_SECS: u64 = 3600;

/// One host as the controller keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HostEntry {
    pub(crate) facts: HostFacts,
    pub(crate) last_error: Option<String>,
    /// Operation counter the agent last computed against.
    pub(crate) op_counter: u64,
    /// An order not yet fetched by the agent.
    pub(crate) pending: Option<AgentOrder>,
    /// Sequence number of the last install order sent; the host reports the last it finished.
    pub(crate) install_seq: u64,
    pub(crate) install_done: u64,
    /// The reporting agent process.
    #[serde(default)]
    pub(crate) instance: String,
    /// The last delivery number handed out.
    #[serde(default)]
    pub(crate) delivery_seq: u64,
    /// The order last handed over, kept until a poll acknowledges it: the answer may have
    /// been lost (a controller killed as it answered, a broken connection, an agent killed
    /// before recording it), and a host waiting for a lost order waits forever.
    #[serde(default)]
    pub(crate) delivered: Option<Delivery>,
    /// A reboot was ordered and the host has not come back with a new boot id yet: it shows
    /// disabled-offline meanwhile (so an unlock completes only once the host is back).
    #[serde(default)]
    pub(crate) rebooting: bool,
    /// Workloads the host's hook lists.
    #[serde(default)]
    pub(crate) workloads: Vec<Workload>,
    /// The host has a workload hook.
    #[serde(default)]
    pub(crate) workload_actions: bool,
    /// Its compute services are disabled.
    #[serde(default)]
    pub(crate) services_disabled: bool,
    /// Workload orders not yet fetched, after any pending install or reboot.
    #[serde(default)]
    pub(crate) workload_orders: VecDeque<AgentOrder>,
    /// The workload order the agent is running (it reports when done).
    #[serde(default)]
    pub(crate) workload_in_flight: Option<AgentOrder>,
    /// Free bytes the agent last reported (it changes on every report, so it is not a fact
    /// whose change rebuilds the snapshot or is persisted by itself).
    #[serde(default)]
    pub(crate) disk_free_bytes: Option<u64>,
    /// Patches the host is held back from (`host-rollback`): its desired set leaves their
    /// packages out until `host-release`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) held_patches: BTreeSet<String>,
    /// The host's last health check outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) health: Option<host_state::protocol::HealthReport>,
}

/// Operational state and availability for an administrative state.
fn service_states(admin: AdminState, rebooting: bool) -> (OperState, Availability) {
    match (admin, rebooting) {
        (_, true) => (OperState::Disabled, Availability::Offline),
        (AdminState::Locked, false) => (OperState::Disabled, Availability::Online),
        (AdminState::Unlocked, false) => (OperState::Enabled, Availability::Available),
    }
}

impl HostEntry {
    /// The install state to show: `installing` from the moment an install is requested until
    /// the agent reports that order finished (so a poll right after `host-install-async` never
    /// reads a stale `idle` as success).
    pub(crate) fn effective_install_state(&self) -> InstallState {
        if self.install_seq > self.install_done {
            InstallState::Installing
        } else {
            self.facts.install_state
        }
    }
}

pub(crate) struct HostRegistry {
    dir: PathBuf,
    pub(crate) hosts: BTreeMap<String, HostEntry>,
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl HostRegistry {
    pub(crate) fn load(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hosts = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(durable_fs::TEMP_PREFIX));
            if !is_record {
                continue;
            }
            // A record that cannot be read is an error, never a host silently gone (with it,
            // its lock and its outstanding order).
            let unreadable = |reason: String| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "host record {} cannot be read ({reason}); repair it, or remove it and the host registers again with its next report (unlocked, no order outstanding)",
                        path.display()
                    ),
                )
            };
            let bytes = std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?;
            let host = serde_json::from_slice::<HostEntry>(&bytes)
                .map_err(|e| unreadable(e.to_string()))?;
            hosts.insert(host.facts.hostname.clone(), host);
        }
        Ok(HostRegistry {
            dir: dir.to_owned(),
            hosts,
        })
    }

    fn persist(&self, hostname: &str) {
        let Some(host) = self.hosts.get(hostname) else {
            return;
        };
        let path = self.dir.join(format!("{hostname}.json"));
        let result = serde_json::to_vec_pretty(host)
            .map_err(std::io::Error::other)
            .and_then(|bytes| Ok(durable_fs::write(&path, &bytes)?));
        if let Err(e) = result {
            tracing::error!("cannot persist host {hostname}: {e}");
        }
    }

    /// Records a report; returns whether anything other than the timestamp changed.
    pub(crate) fn report(&mut self, report: HostReport, last_order_done: u64) -> bool {
        let now = now();
        let installed = report
            .installed
            .iter()
            .map(|p| (p.id.key(), p.clone()))
            .collect();
        let existing = self.hosts.get(&report.hostname);
        let (admin, boot_id, pending, install_seq, rebooting) =
            existing.map_or((AdminState::Unlocked, String::new(), None, 0, false), |h| {
                (
                    h.facts.admin,
                    h.facts.boot_id.clone(),
                    h.pending.clone(),
                    h.install_seq,
                    h.rebooting,
                )
            });
        let (delivery_seq, delivered) = existing
            .map(|h| (h.delivery_seq, h.delivered.clone()))
            .unwrap_or_default();
        // The agent reports only after finishing the workload order it fetched.
        let workload_orders = existing
            .map(|h| h.workload_orders.clone())
            .unwrap_or_default();
        let mut held_patches = existing.map(|h| h.held_patches.clone()).unwrap_or_default();
        // A host whose health check failed rolled itself back: it is held back from those
        // patches from now on, as a host-rollback would have it.
        let rolled_back = report
            .health
            .as_ref()
            .map(|h| h.rolled_back.clone())
            .unwrap_or_default();
        let newly_held = !rolled_back.is_subset(&held_patches);
        held_patches.extend(rolled_back);
        let rebooted = !boot_id.is_empty() && boot_id != report.boot_id;
        // Still rebooting until a new boot reports (or the order was never taken: the
        // agent's own restart also counts, as it reboots by restarting).
        let rebooting = rebooting && !rebooted;
        let (oper, availability) = service_states(admin, rebooting);
        let facts = HostFacts {
            hostname: report.hostname.clone(),
            ip: report.ip,
            personality: report.personality,
            subfunctions: report.subfunctions,
            sw_version: report.sw_version,
            admin,
            oper,
            availability,
            install_state: report.install_state,
            reboot_pending: report.reboot_pending,
            boot_id: report.boot_id,
            last_report: now,
            installed,
        };
        let changed = existing.is_none_or(|h| {
            let mut old = h.facts.clone();
            old.last_report = now;
            old != facts
                || h.last_error != report.last_error
                || h.install_done != last_order_done
                || h.pending != pending
                || h.rebooting != rebooting
                || h.workloads != report.workloads
                || h.workload_actions != report.workload_actions
                || h.services_disabled != report.services_disabled
                || h.workload_in_flight.is_some()
                || h.health != report.health
        }) || rebooted
            || newly_held;
        let entry = HostEntry {
            facts,
            last_error: report.last_error,
            op_counter: report.op_counter,
            pending,
            // Orders are numbered on from the last the agent finished: a host dropped and
            // registered again (or a registry older than the agent's state) would otherwise
            // hand out numbers the agent already counts as done, and the next install would
            // read as finished before it started.
            install_seq: install_seq.max(last_order_done),
            install_done: last_order_done,
            instance: report.instance.clone(),
            delivery_seq,
            delivered,
            rebooting,
            workloads: report.workloads,
            workload_actions: report.workload_actions,
            services_disabled: report.services_disabled,
            workload_orders,
            workload_in_flight: None,
            disk_free_bytes: report.disk_free_bytes,
            held_patches,
            health: report.health,
        };
        self.hosts.insert(report.hostname.clone(), entry);
        if changed {
            self.persist(&report.hostname);
        }
        changed
    }

    /// Finds a host by name or IP.
    pub(crate) fn find(&self, name_or_ip: &str) -> Option<String> {
        self.hosts
            .values()
            .find(|h| h.facts.hostname == name_or_ip || h.facts.ip == name_or_ip)
            .map(|h| h.facts.hostname.clone())
    }

    /// Holds `hostname` back from `patches` (added to those held already), or releases it
    /// from all of them (`None`); the record is saved. Returns the patches now held, or none
    /// for an unknown host.
    pub(crate) fn hold(
        &mut self,
        hostname: &str,
        patches: Option<BTreeSet<String>>,
    ) -> Option<BTreeSet<String>> {
        let host = self.hosts.get_mut(hostname)?;
        match patches {
            Some(p) => host.held_patches.extend(p),
            None => host.held_patches.clear(),
        }
        let held = host.held_patches.clone();
        self.persist(hostname);
        Some(held)
    }

    /// Queues an install order; returns its sequence number.
    pub(crate) fn order_install(
        &mut self,
        hostname: &str,
        force: bool,
        soak_secs: u64,
    ) -> Option<u64> {
        let host = self.hosts.get_mut(hostname)?;
        host.install_seq += 1;
        host.pending = Some(AgentOrder::Install {
            force,
            seq: host.install_seq,
            locked: false,
            held: host.held_patches.clone(),
            soak_secs,
        });
        let seq = host.install_seq;
        self.persist(hostname);
        Some(seq)
    }

    /// Queues a workload order unless the same one is queued or running; returns whether
    /// it was queued.
    pub(crate) fn order_workload(
        &mut self,
        hostname: &str,
        verb: WorkloadVerb,
        target: &str,
    ) -> bool {
        let Some(host) = self.hosts.get_mut(hostname) else {
            return false;
        };
        let order = AgentOrder::Workload {
            verb,
            target: target.to_owned(),
        };
        if host.workload_orders.contains(&order)
            || host.workload_in_flight.as_ref() == Some(&order)
            || host.delivered.as_ref().is_some_and(|d| d.order == order)
        {
            return false;
        }
        host.workload_orders.push_back(order);
        self.persist(hostname);
        true
    }

    /// Queues a reboot.
    pub(crate) fn order_reboot(&mut self, hostname: &str) {
        if let Some(host) = self.hosts.get_mut(hostname) {
            Self::queue_reboot(host);
            self.persist(hostname);
        }
    }

    fn queue_reboot(host: &mut HostEntry) {
        host.pending = Some(AgentOrder::Reboot);
        host.rebooting = true;
        (host.facts.oper, host.facts.availability) = service_states(host.facts.admin, true);
    }

    /// Unlocks a host, queueing the reboot a reboot-required install waits for in the same
    /// write (a crash between two writes would leave it unlocked, in service and unrebooted);
    /// returns whether a reboot was queued. A host whose compute services were disabled
    /// (a strategy migrating its workloads away) gets them enabled again once back, as the
    /// original's unlock does.
    pub(crate) fn unlock(&mut self, hostname: &str) -> bool {
        let Some(host) = self.hosts.get_mut(hostname) else {
            return false;
        };
        Self::set_admin_state(host, AdminState::Unlocked);
        let reboot = host.facts.reboot_pending;
        if reboot {
            Self::queue_reboot(host);
        }
        let enable = AgentOrder::Workload {
            verb: WorkloadVerb::EnableServices,
            target: hostname.to_owned(),
        };
        if host.services_disabled && !host.workload_orders.contains(&enable) {
            host.workload_orders.push_back(enable);
        }
        self.persist(hostname);
        reboot
    }

    /// The order to hand to the host's agent, which acknowledges `received` (the last
    /// delivery it got): the unacknowledged one again, else the next pending one, if any.
    pub(crate) fn take_order(&mut self, hostname: &str, received: u64) -> Option<Delivery> {
        let host = self.hosts.get_mut(hostname)?;
        let mut changed = false;
        if let Some(delivered) = &host.delivered {
            if received < delivered.delivery {
                tracing::info!(
                    "host {hostname}: delivery {} not acknowledged (agent has {received}); handing it over again",
                    delivered.delivery
                );
                return Some(delivered.clone());
            }
            host.delivered = None;
            changed = true;
        }
        let locked = host.facts.admin == AdminState::Locked;
        // The lock state travels with the order: the agent's last report may predate a lock.
        let order = host
            .pending
            .take()
            .map(|order| match order {
                AgentOrder::Install {
                    force,
                    seq,
                    held,
                    soak_secs,
                    ..
                } => AgentOrder::Install {
                    force,
                    seq,
                    locked,
                    held,
                    soak_secs,
                },
                other => other,
            })
            .or_else(|| {
                let order = host.workload_orders.pop_front()?;
                host.workload_in_flight = Some(order.clone());
                Some(order)
            });
        if let Some(order) = order {
            // Numbers go on from what the agent has seen: a registry that lost a host (or
            // is older than the agent's state) would otherwise hand out numbers the agent
            // counts as received and skips.
            // `received` comes from the agent: a number at the top of the range must not
            // overflow (the host then gets no new order, which only hurts that agent).
            host.delivery_seq = host.delivery_seq.max(received).saturating_add(1);
            host.delivered = Some(Delivery {
                delivery: host.delivery_seq,
                order,
            });
            changed = true;
        }
        if changed {
            self.persist(hostname);
        }
        self.hosts.get(hostname)?.delivered.clone()
    }

    pub(crate) fn set_admin(&mut self, hostname: &str, admin: AdminState) {
        if let Some(host) = self.hosts.get_mut(hostname) {
            Self::set_admin_state(host, admin);
            self.persist(hostname);
        }
    }

    fn set_admin_state(host: &mut HostEntry, admin: AdminState) {
        host.facts.admin = admin;
        let locked = admin == AdminState::Locked;
        (host.facts.oper, host.facts.availability) = service_states(admin, host.rebooting);
        // A rejected install is reset once the host is locked (the original's rule).
        if locked && host.facts.install_state == InstallState::InstallRejected {
            host.facts.install_state = InstallState::Idle;
        }
    }

    pub(crate) fn drop_host(&mut self, hostname: &str) -> bool {
        let removed = self.hosts.remove(hostname).is_some();
        let _ = std::fs::remove_file(self.dir.join(format!("{hostname}.json")));
        removed
    }

    /// Marks silent hosts offline and ages out the long silent; returns whether anything
    /// changed.
    pub(crate) fn age(&mut self, offline_after_secs: u64) -> bool {
        let now = now();
        let mut changed = false;
        let expired: Vec<String> = self
            .hosts
            .values()
            .filter(|h| now.saturating_sub(h.facts.last_report) > AGE_OUT_SECS)
            .map(|h| h.facts.hostname.clone())
            .collect();
        for name in expired {
            tracing::info!("host {name} aged out after {AGE_OUT_SECS} s of silence");
            changed |= self.drop_host(&name);
        }
        for host in self.hosts.values_mut() {
            let silent = now.saturating_sub(host.facts.last_report) > offline_after_secs;
            if silent && host.facts.availability != Availability::Offline {
                host.facts.availability = Availability::Offline;
                host.facts.oper = OperState::Disabled;
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use host_state::protocol::HostReport;
    use patch_format::Personality;

    pub(crate) fn report_for_test(instance: &str, install_done: u64) -> HostReport {
        report(instance, install_done)
    }

    fn report(instance: &str, install_done: u64) -> HostReport {
        HostReport {
            hostname: "compute-0".into(),
            ip: "127.0.0.1".into(),
            personality: Personality::Worker,
            subfunctions: vec!["worker".into()],
            sw_version: "19.01".into(),
            install_state: InstallState::Idle,
            last_error: None,
            reboot_pending: false,
            boot_id: "b".into(),
            installed: Vec::new(),
            op_counter: 0,
            install_done,
            instance: instance.into(),
            workloads: Vec::new(),
            workload_actions: false,
            services_disabled: false,
            disk_free_bytes: Some(1 << 30),
            health: None,
        }
    }

    fn install_of(delivery: Option<Delivery>) -> Option<(u64, u64)> {
        match delivery? {
            Delivery {
                delivery,
                order: AgentOrder::Install { seq, .. },
            } => Some((delivery, seq)),
            _ => None,
        }
    }

    #[test]
    fn an_order_is_handed_over_until_a_poll_acknowledges_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        reg.report(report("a", 0), 0);
        let seq = reg.order_install("compute-0", true, 0).unwrap();
        let (delivery, got) = install_of(reg.take_order("compute-0", 0)).unwrap();
        assert_eq!(got, seq);
        // The answer was lost (the controller was killed as it wrote it): after a restart
        // the agent, still at delivery 0, gets the same order with the same number.
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        assert_eq!(
            install_of(reg.take_order("compute-0", 0)),
            Some((delivery, seq))
        );
        assert_eq!(
            reg.hosts["compute-0"].effective_install_state(),
            InstallState::Installing
        );
        // Acknowledged: never again, and the install stays owed until reported done.
        assert_eq!(reg.take_order("compute-0", delivery), None);
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        assert_eq!(reg.take_order("compute-0", delivery), None);
        reg.report(report("a", seq), seq);
        assert_eq!(
            reg.hosts["compute-0"].effective_install_state(),
            InstallState::Idle
        );
    }

    #[test]
    fn deliveries_are_numbered_after_what_the_agent_has_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        reg.report(report("a", 0), 0);
        reg.order_reboot("compute-0");
        // The agent received delivery 41 from an earlier registration of this host.
        let next = reg.take_order("compute-0", 41).unwrap();
        assert_eq!((next.delivery, next.order), (42, AgentOrder::Reboot));
        assert_eq!(reg.take_order("compute-0", 42), None);
        // An acknowledgement at the top of the range does not overflow.
        reg.order_reboot("compute-0");
        let last = reg.take_order("compute-0", u64::MAX).unwrap();
        assert_eq!(last.delivery, u64::MAX);
    }

    #[test]
    fn a_delivered_workload_order_is_not_queued_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        reg.report(report("a", 0), 0);
        assert!(reg.order_workload("compute-0", WorkloadVerb::Stop, "vm-1"));
        let first = reg.take_order("compute-0", 0).unwrap();
        // The agent reported (so nothing is running) but has not acknowledged the delivery.
        reg.report(report("a", 0), 0);
        assert!(!reg.order_workload("compute-0", WorkloadVerb::Stop, "vm-1"));
        assert_eq!(reg.take_order("compute-0", 0), Some(first.clone()));
        assert_eq!(reg.take_order("compute-0", first.delivery), None);
    }

    #[test]
    fn a_host_registered_again_numbers_orders_after_its_last_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        // The agent has finished order 7 under an earlier registration (then drop-host).
        reg.report(report("a", 7), 7);
        let seq = reg.order_install("compute-0", false, 0).unwrap();
        assert_eq!(seq, 8);
        assert_eq!(
            reg.hosts["compute-0"].effective_install_state(),
            InstallState::Installing
        );
        // The order is still owed until the agent reports it done.
        reg.report(report("a", 7), 7);
        assert_eq!(
            reg.hosts["compute-0"].effective_install_state(),
            InstallState::Installing
        );
        reg.report(report("a", 8), 8);
        assert_eq!(
            reg.hosts["compute-0"].effective_install_state(),
            InstallState::Idle
        );
    }
}
#[cfg(test)]
mod reload_tests {
    use super::*;

    /// The registry reloads after locks, orders and reboots (a restart keeps every host).
    #[test]
    fn reload_after_lock_and_orders() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        let r = super::tests::report_for_test("a", 0);
        reg.report(r, 0);
        reg.set_admin("compute-0", AdminState::Locked);
        reg.order_install("compute-0", false, 0);
        reg.take_order("compute-0", 0);
        reg.order_reboot("compute-0");
        let reg = HostRegistry::load(dir.path()).unwrap();
        assert_eq!(reg.hosts.len(), 1);
    }

    /// A host record that cannot be read stops the load, naming the file: the host (and its
    /// lock) is never silently gone. A write's leftover temporary file is not a record.
    #[test]
    fn a_corrupt_host_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = HostRegistry::load(dir.path()).unwrap();
        reg.report(super::tests::report_for_test("a", 0), 0);
        std::fs::write(dir.path().join(".tmp-abc.json"), b"{").unwrap();
        assert_eq!(HostRegistry::load(dir.path()).unwrap().hosts.len(), 1);
        std::fs::write(dir.path().join("compute-0.json"), b"{\"facts\": ").unwrap();
        let err = HostRegistry::load(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("compute-0.json"), "{err}");
    }
}
