//! The builder: a pure function from what the build phase collected (inventory, per-host patch
//! status, alarms, instances) and the operator's options to the apply stages, or the
//! original's refusal (reference §2–§3).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use host_state::{AdminState, Availability, OperState};

use crate::model::{
    Alarm, AlarmRestrictions, ApplyType, BaselineAlarm, InstanceAction, Stage, Step, StepKind,
    StrategyOptions,
};
use crate::timing::Timing;

pub use crate::collected::{Collected, Instance, InventoryHost, PatchHost, ServerGroup};

/// Why a strategy cannot be built; the messages are the original's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildRefusal {
    /// The patch controller lists no patches.
    #[error("no software patches found")]
    NoPatches,
    /// Blocking alarms.
    #[error("active alarms present")]
    ActiveAlarms,
    /// A pure worker is in a state the strategy cannot handle.
    #[error(
        "all worker hosts must be unlocked-enabled-available, locked-disabled-online or locked-disabled-offline"
    )]
    WorkerHostState,
    /// Another host is not in service.
    #[error("all {0} hosts must be unlocked-enabled-available")]
    HostState(String),
    /// The patch controller knows a host the inventory does not.
    #[error("host inventory mismatch detected")]
    InventoryMismatch,
    /// Some host's patch state has not settled.
    #[error("at least one host is in pending patch current state")]
    PendingPatchCurrent,
    /// A host was classified under a personality it does not have.
    #[error("host inventory personality {0} mismatch detected")]
    PersonalityMismatch(String),
    /// Fewer than two controllers on a duplex system.
    #[error("not enough controllers to apply software update")]
    NotEnoughControllers,
    /// `controller-apply-type parallel`.
    #[error("parallel apply type not allowed for controllers")]
    ParallelControllers,
    /// Fewer than two storage hosts.
    #[error("not enough storage hosts to apply software updates")]
    NotEnoughStorage,
    /// Fewer than two swift hosts.
    #[error("not enough swift hosts to apply software patches")]
    NotEnoughSwift,
    /// Migrate on a single-controller system with OpenStack.
    #[error("cannot migrate instances in a single controller configuration")]
    SingleControllerMigrate,
    /// A stopped instance in a server group would stay down through a reboot.
    #[error("instance {instance} in group {group} must not be shut down")]
    StoppedGroupInstance {
        /// Instance name.
        instance: String,
        /// Group name.
        group: String,
    },
    /// Every host is patch-current or every class with work is ignored.
    #[error("no software patches need to be applied")]
    NothingToApply,
}

/// Alarms the patch strategy never waits for (reference §2.7).
pub const ALWAYS_IGNORED_ALARMS: &[&str] = &[
    "900.001", "900.005", "900.101", "200.001", "700.004", "280.002", "100.119", "900.701",
];

/// The alarm ignored in query-alarms outright and in wait-alarms-clear once old enough.
pub const CONDITIONAL_ALARM: &str = "750.006";

/// The patch controller's per-host install failure alarm.
pub const INSTALL_FAILED_ALARM: &str = "900.002";

/// Where alarms are being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmCheck {
    /// query-alarms (build and apply stages).
    Query,
    /// wait-alarms-clear / wait-data-sync.
    Wait,
}

/// What makes an alarm block a strategy: the operator's restrictions, the ignore list, the
/// baseline taken at creation and the age past which an unchanged alarm is stale.
#[derive(Clone, Copy, Debug)]
pub struct AlarmRules<'a> {
    /// Strict, relaxed or baseline.
    pub restrictions: AlarmRestrictions,
    /// Alarm ids ignored besides [`ALWAYS_IGNORED_ALARMS`].
    pub ignored: &'a [String],
    /// With baseline restrictions: the alarms active at creation.
    pub baseline: &'a [BaselineAlarm],
    /// An alarm unchanged this long no longer blocks.
    pub stale_after_secs: Option<u64>,
}

impl<'a> AlarmRules<'a> {
    /// Only the restrictions and the ignore list (no baseline, nothing stale).
    pub fn plain(restrictions: AlarmRestrictions, ignored: &'a [String]) -> AlarmRules<'a> {
        AlarmRules {
            restrictions,
            ignored,
            baseline: &[],
            stale_after_secs: None,
        }
    }
}

/// Alarms sorted by whether they block.
#[derive(Debug, Default)]
pub struct AlarmVerdict<'a> {
    /// They block.
    pub blocking: Vec<&'a Alarm>,
    /// They would block, but have not changed for `stale_after_secs`.
    pub stale: Vec<&'a Alarm>,
}

impl AlarmVerdict<'_> {
    /// The blocking alarms' ids as a step's reason lists them: `'100.101', '100.102'`.
    pub fn blocking_ids(&self) -> String {
        quoted_ids(&self.blocking)
    }

    /// What a step says about the stale alarms it ignored (empty when none).
    pub fn stale_note(&self, rules: &AlarmRules<'_>) -> String {
        if self.stale.is_empty() {
            return String::new();
        }
        format!(
            "stale alarms [{}] ignored (unchanged for more than {} s)",
            quoted_ids(&self.stale),
            rules.stale_after_secs.unwrap_or(0)
        )
    }
}

fn quoted_ids(alarms: &[&Alarm]) -> String {
    alarms
        .iter()
        .map(|a| format!("'{}'", a.alarm_id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The alarms that block, after the ignore rules. `budgeted_hosts` are hosts whose install
/// failure the error budget tolerates: their install-failed alarm does not block.
pub fn blocking_alarms<'a>(
    alarms: &'a [Alarm],
    rules: &AlarmRules<'_>,
    check: AlarmCheck,
    timing: &Timing,
    now_secs: u64,
    budgeted_hosts: &BTreeSet<String>,
) -> Vec<&'a Alarm> {
    sort_alarms(alarms, rules, check, timing, now_secs, budgeted_hosts).blocking
}

/// [`blocking_alarms`], with the stale ones it ignored.
pub fn sort_alarms<'a>(
    alarms: &'a [Alarm],
    rules: &AlarmRules<'_>,
    check: AlarmCheck,
    timing: &Timing,
    now_secs: u64,
    budgeted_hosts: &BTreeSet<String>,
) -> AlarmVerdict<'a> {
    let mut verdict = AlarmVerdict::default();
    let counted = alarms
        .iter()
        .filter(|a| !ALWAYS_IGNORED_ALARMS.contains(&a.alarm_id.as_str()))
        .filter(|a| !rules.ignored.contains(&a.alarm_id))
        .filter(|a| {
            a.alarm_id != CONDITIONAL_ALARM
                || (check == AlarmCheck::Wait
                    && now_secs.saturating_sub(a.raised_at) < timing.conditional_alarm_age)
        })
        .filter(|a| rules.restrictions != AlarmRestrictions::Relaxed || a.mgmt_affecting)
        .filter(|a| {
            rules.restrictions != AlarmRestrictions::Baseline
                || !rules.baseline.iter().any(|b| b.covers(a))
        })
        .filter(|a| {
            a.alarm_id != INSTALL_FAILED_ALARM
                || !a
                    .entity_instance_id
                    .strip_prefix("host=")
                    .is_some_and(|h| budgeted_hosts.contains(h))
        });
    for alarm in counted {
        let stale = rules
            .stale_after_secs
            .is_some_and(|after| now_secs.saturating_sub(alarm.raised_at) >= after);
        if stale {
            verdict.stale.push(alarm);
        } else {
            verdict.blocking.push(alarm);
        }
    }
    verdict
}

/// Inputs besides what the build collected.
#[derive(Clone, Debug)]
pub struct PlanContext<'a> {
    /// The options.
    pub options: &'a StrategyOptions,
    /// Durations.
    pub timing: &'a Timing,
    /// Single-controller system.
    pub single_controller: bool,
    /// Extra ignored alarm ids.
    pub ignore_alarms: &'a [String],
    /// With baseline restrictions: the alarms active when the strategy was created.
    pub alarm_baseline: &'a [BaselineAlarm],
    /// Alarms the build collected.
    pub alarms: &'a [Alarm],
    /// Now, Unix seconds (alarm ages).
    pub now_secs: u64,
}

/// Plans the apply stages, or refuses with the original's reason.
pub fn plan(collected: &Collected, ctx: &PlanContext<'_>) -> Result<Vec<Stage>, BuildRefusal> {
    if collected.patch_count == 0 {
        return Err(BuildRefusal::NoPatches);
    }
    let rules = AlarmRules {
        restrictions: ctx.options.alarm_restrictions,
        ignored: ctx.ignore_alarms,
        baseline: ctx.alarm_baseline,
        stale_after_secs: ctx.options.alarm_stale_after_secs,
    };
    let blocking = blocking_alarms(
        ctx.alarms,
        &rules,
        AlarmCheck::Query,
        ctx.timing,
        ctx.now_secs,
        &BTreeSet::new(),
    );
    if !blocking.is_empty() {
        return Err(BuildRefusal::ActiveAlarms);
    }
    for host in &collected.inventory {
        let in_service = host.state_is(
            AdminState::Unlocked,
            OperState::Enabled,
            Availability::Available,
        );
        if host.has("worker") && !host.has("controller") {
            let ok = in_service
                || host.state_is(
                    AdminState::Locked,
                    OperState::Disabled,
                    Availability::Online,
                )
                || host.state_is(
                    AdminState::Locked,
                    OperState::Disabled,
                    Availability::Offline,
                );
            if !ok {
                return Err(BuildRefusal::WorkerHostState);
            }
        } else if !in_service {
            return Err(BuildRefusal::HostState(host.personality.clone()));
        }
    }
    let inventory: BTreeMap<&str, &InventoryHost> = collected
        .inventory
        .iter()
        .map(|h| (h.name.as_str(), h))
        .collect();
    if collected
        .patch_hosts
        .iter()
        .any(|p| !inventory.contains_key(p.hostname.as_str()))
    {
        return Err(BuildRefusal::InventoryMismatch);
    }
    if collected.patch_hosts.iter().any(|p| p.interim_state) {
        return Err(BuildRefusal::PendingPatchCurrent);
    }

    // Classify (§2.1), keeping the patch controller's order.
    let mut classes: BTreeMap<(&str, bool), Vec<&InventoryHost>> = BTreeMap::new();
    for p in collected.patch_hosts.iter().filter(|p| !p.patch_current) {
        let host = inventory[p.hostname.as_str()];
        let has = |s: &str| p.subfunctions.iter().any(|f| f == s);
        let class = if has("controller") {
            Some("controller")
        } else if has("storage") {
            Some("storage")
        } else if has("swift") {
            Some("swift")
        } else {
            None
        };
        if let Some(class) = class {
            classes
                .entry((class, p.requires_reboot))
                .or_default()
                .push(host);
        }
        if has("worker") && host.availability != Availability::Offline {
            classes
                .entry(("worker", p.requires_reboot))
                .or_default()
                .push(host);
        }
    }

    let mut instances_by_host: HashMap<&str, Vec<&Instance>> = HashMap::new();
    for i in &collected.instances {
        instances_by_host
            .entry(i.host.as_str())
            .or_default()
            .push(i);
    }
    let mut aggregate_sizes: HashMap<&str, usize> = HashMap::new();
    for h in &collected.inventory {
        for a in &h.aggregates {
            *aggregate_sizes.entry(a.as_str()).or_default() += 1;
        }
    }
    let planner = Planner {
        collected,
        ctx,
        instances_by_host,
        aggregate_sizes,
    };
    let mut stages = Vec::new();
    let canaries = take_canaries(&mut classes, ctx.options.canary_hosts as usize);
    for ((class, reboot), hosts) in &canaries {
        if *class == "storage" {
            planner.storage(hosts, *reboot, &mut stages)?;
        } else {
            planner.workers(hosts, *reboot, &mut stages)?;
        }
    }
    for stage in &mut stages {
        stage.canary = true;
    }
    if let (Some(soak), Some(last)) = (ctx.options.canary_soak_secs, stages.last_mut()) {
        let all: Vec<&InventoryHost> = canaries
            .iter()
            .flat_map(|(_, h)| h.iter().copied())
            .collect();
        let mut steps = std::mem::take(&mut last.steps);
        steps.push(Step::hosts(StepKind::CanarySoak, soak, &names(&all)));
        *last = Stage {
            canary: true,
            ..Stage::new(&last.name, steps)
        };
    }
    for class in ["controller", "storage", "swift", "worker"] {
        for reboot in [false, true] {
            let Some(hosts) = classes.get(&(class, reboot)) else {
                continue;
            };
            match class {
                "controller" => planner.controllers(hosts, reboot, &mut stages)?,
                "storage" => planner.storage(hosts, reboot, &mut stages)?,
                "swift" => planner.swift(hosts, reboot, &mut stages)?,
                _ => planner.workers(hosts, reboot, &mut stages)?,
            }
        }
    }
    if stages.is_empty() {
        return Err(BuildRefusal::NothingToApply);
    }
    for (i, s) in stages.iter_mut().enumerate() {
        s.id = i;
    }
    Ok(stages)
}

/// Takes up to `count` canaries out of `classes`: workers first, then storage hosts, in the
/// patch controller's order; never a controller (an all-in-one's worker side included).
/// Returns them grouped by class and reboot need, in that order.
type ClassKey<'a> = (&'a str, bool);

fn take_canaries<'h>(
    classes: &mut BTreeMap<ClassKey<'static>, Vec<&'h InventoryHost>>,
    count: usize,
) -> Vec<(ClassKey<'static>, Vec<&'h InventoryHost>)> {
    let mut taken = Vec::new();
    let mut left = count;
    for key in [
        ("worker", false),
        ("worker", true),
        ("storage", false),
        ("storage", true),
    ] {
        if left == 0 {
            break;
        }
        let Some(hosts) = classes.get_mut(&key) else {
            continue;
        };
        let mut chosen = Vec::new();
        hosts.retain(|h| {
            if chosen.len() < left && !h.has("controller") {
                chosen.push(*h);
                false
            } else {
                true
            }
        });
        if hosts.is_empty() {
            classes.remove(&key);
        }
        if !chosen.is_empty() {
            left -= chosen.len();
            taken.push((key, chosen));
        }
    }
    taken
}

struct Planner<'a> {
    collected: &'a Collected,
    ctx: &'a PlanContext<'a>,
    /// Indexes, so that planning 10,000 hosts stays linear.
    instances_by_host: HashMap<&'a str, Vec<&'a Instance>>,
    aggregate_sizes: HashMap<&'a str, usize>,
}

/// A parallel worker stage being packed: its hosts, their anti-affinity groups and how many
/// of them each aggregate has.
struct Bucket<'a> {
    hosts: Vec<&'a InventoryHost>,
    groups: HashSet<&'a str>,
    aggregates: HashMap<&'a str, usize>,
}

fn names(hosts: &[&InventoryHost]) -> Vec<(String, String)> {
    hosts
        .iter()
        .map(|h| (h.name.clone(), h.uuid.clone()))
        .collect()
}

impl Planner<'_> {
    fn timing(&self) -> &Timing {
        self.ctx.timing
    }

    /// An install step's timeout: the install, and the health soak the hosts then hold.
    fn install_timeout(&self) -> u64 {
        self.timing()
            .install
            .saturating_add(self.ctx.options.health_soak_secs.unwrap_or(0))
    }

    fn query_alarms(&self) -> Step {
        Step::plain(
            StepKind::QueryAlarms {
                fail_on_alarms: true,
            },
            self.timing().query,
        )
    }

    /// The in-service stage: query-alarms, sw-patch-hosts, system-stabilize(30).
    fn in_service_stage(&self, name: &str, hosts: &[&InventoryHost]) -> Stage {
        Stage::new(
            name,
            vec![
                self.query_alarms(),
                Step::hosts(
                    StepKind::SwPatchHosts,
                    self.install_timeout(),
                    &names(hosts),
                ),
                Step::plain(
                    StepKind::SystemStabilize,
                    self.timing().stabilize_in_service,
                ),
            ],
        )
    }

    fn count(&self, personality: &str) -> usize {
        self.collected
            .inventory
            .iter()
            .filter(|h| h.has(personality))
            .count()
    }

    fn controllers(
        &self,
        hosts: &[&InventoryHost],
        reboot: bool,
        stages: &mut Vec<Stage>,
    ) -> Result<(), BuildRefusal> {
        let apply = self.ctx.options.controller_apply_type;
        if apply == ApplyType::Ignore {
            return Ok(());
        }
        if hosts.iter().any(|h| !h.has("controller")) {
            return Err(BuildRefusal::PersonalityMismatch("controller".into()));
        }
        if !self.ctx.single_controller && self.count("controller") < 2 {
            return Err(BuildRefusal::NotEnoughControllers);
        }
        if apply == ApplyType::Parallel {
            return Err(BuildRefusal::ParallelControllers);
        }
        // All-in-one controllers are patched by the worker stages.
        let mut ordered: Vec<&InventoryHost> =
            hosts.iter().copied().filter(|h| !h.has("worker")).collect();
        if let Some(local) = &self.collected.local_controller
            && let Some(pos) = ordered.iter().position(|h| &h.name == local)
        {
            let host = ordered.remove(pos);
            ordered.push(host);
        }
        let t = self.timing();
        for host in ordered {
            let one = names(&[host]);
            stages.push(if reboot {
                Stage::new(
                    "sw-patch-controllers",
                    vec![
                        self.query_alarms(),
                        Step::hosts(StepKind::SwactHosts, t.swact, &one),
                        Step::hosts(
                            StepKind::LockHosts {
                                wait_until_disabled: true,
                            },
                            t.lock,
                            &one,
                        ),
                        Step::hosts(StepKind::SwPatchHosts, self.install_timeout(), &one),
                        Step::plain(StepKind::SystemStabilize, t.stabilize_after_install),
                        Step::hosts(StepKind::UnlockHosts, t.unlock, &one),
                        Step::plain(StepKind::WaitAlarmsClear, t.alarms_clear_controller),
                    ],
                )
            } else {
                self.in_service_stage("sw-patch-controllers", &[host])
            });
        }
        Ok(())
    }

    /// Storage-like classes: serial, or parallel packed by replication group.
    fn storage(
        &self,
        hosts: &[&InventoryHost],
        reboot: bool,
        stages: &mut Vec<Stage>,
    ) -> Result<(), BuildRefusal> {
        let apply = self.ctx.options.storage_apply_type;
        if apply == ApplyType::Ignore {
            return Ok(());
        }
        if hosts.iter().any(|h| !h.has("storage")) {
            return Err(BuildRefusal::PersonalityMismatch("storage".into()));
        }
        if self.count("storage") < 2 {
            return Err(BuildRefusal::NotEnoughStorage);
        }
        let lists: Vec<Vec<&InventoryHost>> = if apply == ApplyType::Parallel {
            let mut lists: Vec<Vec<&InventoryHost>> = Vec::new();
            for &host in hosts {
                let fits = |list: &Vec<&InventoryHost>| {
                    host.replication_group.is_none()
                        || !list
                            .iter()
                            .any(|p| p.replication_group == host.replication_group)
                };
                match lists.iter_mut().find(|l| fits(l)) {
                    Some(list) => list.push(host),
                    None => lists.push(vec![host]),
                }
            }
            lists
        } else {
            hosts.iter().map(|&h| vec![h]).collect()
        };
        for list in lists {
            stages.push(self.locked_stage("sw-patch-storage-hosts", &list, reboot, true));
        }
        Ok(())
    }

    fn swift(
        &self,
        hosts: &[&InventoryHost],
        reboot: bool,
        stages: &mut Vec<Stage>,
    ) -> Result<(), BuildRefusal> {
        if self.ctx.options.swift_apply_type == ApplyType::Ignore {
            return Ok(());
        }
        if hosts.iter().any(|h| !h.has("swift")) {
            return Err(BuildRefusal::PersonalityMismatch("swift".into()));
        }
        if self.count("swift") < 2 {
            return Err(BuildRefusal::NotEnoughSwift);
        }
        for &host in hosts {
            stages.push(self.locked_stage("sw-patch-swift-hosts", &[host], reboot, false));
        }
        Ok(())
    }

    /// A storage or swift stage: lock, install, settle, unlock, then wait for data sync
    /// (storage) or settle again (swift).
    fn locked_stage(
        &self,
        name: &str,
        hosts: &[&InventoryHost],
        reboot: bool,
        data_sync: bool,
    ) -> Stage {
        if !reboot {
            return self.in_service_stage(name, hosts);
        }
        let t = self.timing();
        let all = names(hosts);
        let mut steps = vec![
            self.query_alarms(),
            Step::hosts(
                StepKind::LockHosts {
                    wait_until_disabled: true,
                },
                t.lock,
                &all,
            ),
            Step::hosts(StepKind::SwPatchHosts, self.install_timeout(), &all),
            Step::plain(StepKind::SystemStabilize, t.stabilize_after_install),
            Step::hosts(StepKind::UnlockHosts, t.unlock, &all),
        ];
        // Storage waits for its data to sync; swift only settles (the original's 60 s
        // system-stabilize).
        steps.push(if data_sync {
            Step::plain(StepKind::WaitDataSync, t.data_sync)
        } else {
            Step::plain(StepKind::SystemStabilize, t.stabilize_final)
        });
        Stage::new(name, steps)
    }

    fn instances_on(&self, host: &str) -> impl Iterator<Item = &'_ Instance> {
        self.instances_by_host
            .get(host)
            .into_iter()
            .flatten()
            .copied()
    }

    /// The anti-affinity server groups of the instances on a host.
    fn anti_affinity_groups(&self, host: &str) -> HashSet<&str> {
        self.instances_on(host)
            .flat_map(|i| i.groups.iter())
            .filter(|g| {
                g.policies
                    .iter()
                    .any(|p| p == "anti-affinity" || p == "anti-affinity-best-effort")
            })
            .map(|g| g.name.as_str())
            .collect()
    }

    fn workers(
        &self,
        hosts: &[&InventoryHost],
        reboot: bool,
        stages: &mut Vec<Stage>,
    ) -> Result<(), BuildRefusal> {
        let options = self.ctx.options;
        if options.worker_apply_type == ApplyType::Ignore {
            return Ok(());
        }
        if self.ctx.single_controller
            && options.default_instance_action != InstanceAction::StopStart
            && hosts
                .iter()
                .any(|h| h.has("controller") && h.openstack_compute)
        {
            return Err(BuildRefusal::SingleControllerMigrate);
        }
        if hosts.iter().any(|h| !h.has("worker")) {
            return Err(BuildRefusal::PersonalityMismatch("worker".into()));
        }
        if reboot {
            // Any stopped instance in a server group, wherever it runs: the group's other
            // members are about to be stopped or moved (the original's rule).
            for instance in self.collected.instances.iter().filter(|i| i.locked) {
                if let Some(group) = instance.groups.first() {
                    return Err(BuildRefusal::StoppedGroupInstance {
                        instance: instance.name.clone(),
                        group: group.name.clone(),
                    });
                }
            }
        }
        let has_instances = |h: &InventoryHost| self.instances_on(&h.name).next().is_some();
        let aio: Vec<&InventoryHost> = hosts
            .iter()
            .copied()
            .filter(|h| h.has("controller"))
            .collect();
        let others: Vec<&InventoryHost> = hosts
            .iter()
            .copied()
            .filter(|h| !h.has("controller"))
            .collect();
        let mut lists: Vec<Vec<&InventoryHost>> = aio.iter().map(|&h| vec![h]).collect();
        if options.worker_apply_type == ApplyType::Serial {
            lists.extend(
                others
                    .iter()
                    .filter(|h| !has_instances(h))
                    .map(|&h| vec![h]),
            );
            lists.extend(others.iter().filter(|h| has_instances(h)).map(|&h| vec![h]));
        } else {
            let max = options.max_parallel_worker_hosts.max(1) as usize;
            let bucket = lists.len();
            lists.push(Vec::new());
            // The original's ratio: over every worker in the inventory (patch-current ones
            // too), at most half of an aggregate.
            let workers = self
                .collected
                .inventory
                .iter()
                .filter(|h| h.has("worker"))
                .count();
            let ratio = (max as f64 / workers.max(1) as f64).min(0.5);
            let aggregate_limit = |name: &str| {
                let size = self.aggregate_sizes.get(name).copied().unwrap_or(0);
                if size <= 1 {
                    1
                } else {
                    ((size as f64 * ratio) as usize).max(1)
                }
            };
            let mut buckets: Vec<Bucket> = Vec::new();
            for &host in &others {
                if !reboot || !has_instances(host) {
                    lists[bucket].push(host);
                    continue;
                }
                let groups = self.anti_affinity_groups(&host.name);
                let fits = |b: &Bucket| {
                    b.hosts.len() < max
                        && groups.is_disjoint(&b.groups)
                        && host.aggregates.iter().all(|a| {
                            b.aggregates.get(a.as_str()).copied().unwrap_or(0) < aggregate_limit(a)
                        })
                };
                let index = match buckets.iter().position(fits) {
                    Some(i) => i,
                    None => {
                        buckets.push(Bucket {
                            hosts: Vec::new(),
                            groups: HashSet::new(),
                            aggregates: HashMap::new(),
                        });
                        buckets.len() - 1
                    }
                };
                let b = &mut buckets[index];
                b.hosts.push(host);
                b.groups.extend(groups);
                for a in &host.aggregates {
                    *b.aggregates.entry(a.as_str()).or_default() += 1;
                }
            }
            lists.extend(buckets.into_iter().map(|b| b.hosts));
            lists = lists
                .into_iter()
                .filter(|l| !l.is_empty())
                .flat_map(|l| l.chunks(max).map(<[_]>::to_vec).collect::<Vec<_>>())
                .collect();
        }
        for list in lists {
            stages.push(if reboot {
                self.worker_reboot_stage(&list)
            } else {
                self.in_service_stage("sw-patch-worker-hosts", &list)
            });
        }
        Ok(())
    }

    fn worker_reboot_stage(&self, list: &[&InventoryHost]) -> Stage {
        let t = self.timing();
        let options = self.ctx.options;
        let single = self.ctx.single_controller;
        let mut steps = vec![self.query_alarms()];
        if list.len() == 1 && list[0].has("controller") && !single {
            steps.push(Step::hosts(StepKind::SwactHosts, t.swact, &names(list)));
        }
        let running: Vec<(String, String)> = list
            .iter()
            .flat_map(|h| self.instances_on(&h.name))
            .filter(|i| !i.locked)
            .map(|i| (i.name.clone(), i.uuid.clone()))
            .collect();
        let compute: Vec<&InventoryHost> = list
            .iter()
            .copied()
            .filter(|h| h.openstack_compute)
            .collect();
        let migrate = options.default_instance_action == InstanceAction::Migrate;
        if migrate && !compute.is_empty() {
            if options.worker_apply_type == ApplyType::Parallel {
                steps.push(Step::hosts(
                    StepKind::DisableHostServices,
                    t.host_services,
                    &names(&compute),
                ));
            }
            steps.push(Step::instances(
                StepKind::MigrateInstancesFromHost,
                t.migrate,
                &running,
            ));
        } else if !running.is_empty() {
            steps.push(Step::instances(
                StepKind::StopInstances,
                t.stop_instances,
                &running,
            ));
        }
        let (already_locked, to_lock): (Vec<&InventoryHost>, Vec<&InventoryHost>) = list
            .iter()
            .copied()
            .partition(|h| h.admin == AdminState::Locked);
        if !to_lock.is_empty() {
            let wait_until_disabled = !(single && list.len() == 1 && list[0].has("controller"));
            steps.push(Step::hosts(
                StepKind::LockHosts {
                    wait_until_disabled,
                },
                t.lock,
                &names(&to_lock),
            ));
        }
        steps.push(Step::hosts(
            StepKind::SwPatchHosts,
            self.install_timeout(),
            &names(list),
        ));
        steps.push(Step::plain(
            StepKind::SystemStabilize,
            t.stabilize_after_install,
        ));
        if !to_lock.is_empty() {
            steps.push(Step::hosts(
                StepKind::UnlockHosts,
                t.unlock,
                &names(&to_lock),
            ));
        }
        if !already_locked.is_empty() {
            steps.push(Step::hosts(
                StepKind::RebootHosts,
                t.reboot,
                &names(&already_locked),
            ));
        }
        if options.default_instance_action == InstanceAction::StopStart && !running.is_empty() {
            steps.push(Step::instances(
                StepKind::StartInstances,
                t.start_instances,
                &running,
            ));
        }
        let touched = to_lock.iter().chain(already_locked.iter());
        let settle = if touched.clone().any(|h| h.has("controller")) {
            Step::plain(StepKind::WaitAlarmsClear, t.alarms_clear_controller)
        } else if touched
            .clone()
            .any(|h| h.openstack_compute || h.openstack_control)
        {
            Step::plain(StepKind::WaitAlarmsClear, t.alarms_clear_worker)
        } else {
            Step::plain(StepKind::SystemStabilize, t.stabilize_final)
        };
        steps.push(settle);
        Stage::new("sw-patch-worker-hosts", steps)
    }
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
