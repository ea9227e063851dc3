use super::*;
use crate::model::StepKind;

fn host(name: &str, personality: &str) -> InventoryHost {
    InventoryHost {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        personality: personality.into(),
        subfunctions: vec![personality.into()],
        admin: AdminState::Unlocked,
        oper: OperState::Enabled,
        availability: Availability::Available,
        openstack_compute: false,
        openstack_control: false,
        replication_group: None,
        aggregates: vec![],
    }
}

/// controller-0 and controller-1.
fn two_controllers() -> Vec<InventoryHost> {
    vec![
        host("controller-0", "controller"),
        host("controller-1", "controller"),
    ]
}

fn aio(name: &str) -> InventoryHost {
    InventoryHost {
        subfunctions: vec!["controller".into(), "worker".into()],
        ..host(name, "controller")
    }
}

fn patch_host(h: &InventoryHost, reboot: bool) -> PatchHost {
    PatchHost {
        hostname: h.name.clone(),
        subfunctions: h.subfunctions.clone(),
        requires_reboot: reboot,
        patch_current: false,
        patch_failed: false,
        interim_state: false,
        last_error: None,
        state: "idle".into(),
    }
}

fn collected(hosts: Vec<InventoryHost>, reboot: bool) -> Collected {
    Collected {
        patch_hosts: hosts.iter().map(|h| patch_host(h, reboot)).collect(),
        inventory: hosts,
        patch_count: 1,
        instances: vec![],
        local_controller: Some("controller-0".into()),
    }
}

fn vm(name: &str, host: &str) -> Instance {
    Instance {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        host: host.into(),
        locked: false,
        groups: vec![],
    }
}

struct Case {
    options: StrategyOptions,
    timing: Timing,
    single_controller: bool,
    alarms: Vec<Alarm>,
}

impl Case {
    fn new() -> Case {
        Case {
            options: StrategyOptions::default(),
            timing: Timing::default(),
            single_controller: false,
            alarms: vec![],
        }
    }

    /// Workers in parallel, at most `max` at once.
    fn parallel(max: u32) -> Case {
        let mut case = Case::new();
        case.options.worker_apply_type = ApplyType::Parallel;
        case.options.max_parallel_worker_hosts = max;
        case
    }

    fn plan(&self, c: &Collected) -> Result<Vec<Stage>, BuildRefusal> {
        plan(
            c,
            &PlanContext {
                options: &self.options,
                timing: &self.timing,
                single_controller: self.single_controller,
                ignore_alarms: &[],
                alarm_baseline: &[],
                alarms: &self.alarms,
                now_secs: 10_000,
            },
        )
    }

    fn refusal(&self, c: &Collected) -> String {
        self.plan(c).unwrap_err().to_string()
    }
}

fn host_lists(stages: &[Stage]) -> Vec<Vec<String>> {
    stages.iter().map(Stage::hosts).collect()
}

fn step_names(stage: &Stage) -> Vec<String> {
    stage
        .steps
        .iter()
        .map(|s| format!("{}({})", s.name(), s.timeout))
        .collect()
}

fn alarm(id: &str, mgmt_affecting: bool, raised_at: u64) -> Alarm {
    Alarm {
        uuid: format!("u-{id}"),
        alarm_id: id.into(),
        entity_instance_id: "host=controller-0".into(),
        severity: "major".into(),
        reason_text: "test".into(),
        mgmt_affecting,
        raised_at,
    }
}

/// The original's unit test: 10 computes, 8 with one instance each, max 2.
#[test]
fn ten_workers_eight_with_instances_parallel_max_two() {
    let mut hosts = two_controllers();
    hosts.extend((0..10).map(|i| host(&format!("c{i}"), "worker")));
    let mut c = collected(hosts, true);
    // Only the workers need patching.
    for p in &mut c.patch_hosts[..2] {
        p.patch_current = true;
    }
    c.instances = [0, 2, 3, 4, 6, 7, 8, 9]
        .iter()
        .map(|i| vm(&format!("vm{i}"), &format!("c{i}")))
        .collect();
    let case = Case::parallel(2);
    let stages = case.plan(&c).unwrap();
    assert_eq!(
        host_lists(&stages),
        [
            vec!["c1", "c5"],
            vec!["c0", "c2"],
            vec!["c3", "c4"],
            vec!["c6", "c7"],
            vec!["c8", "c9"]
        ]
    );
    assert!(stages.iter().all(|s| s.name == "sw-patch-worker-hosts"));
    // Stop-start around the lock for stages with instances; a plain settle at the end.
    assert_eq!(
        step_names(&stages[1]),
        [
            "query-alarms(60)",
            "stop-instances(900)",
            "lock-hosts(900)",
            "sw-patch-hosts(1800)",
            "system-stabilize(15)",
            "unlock-hosts(1800)",
            "start-instances(900)",
            "system-stabilize(60)"
        ]
    );
    assert_eq!(stages[1].steps[1].entity_type, "instances");
    assert_eq!(stages[1].steps[1].entity_names, ["vm0", "vm2"]);
    assert_eq!(
        step_names(&stages[0]),
        [
            "query-alarms(60)",
            "lock-hosts(900)",
            "sw-patch-hosts(1800)",
            "system-stabilize(15)",
            "unlock-hosts(1800)",
            "system-stabilize(60)"
        ]
    );
    let ids: Vec<usize> = stages.iter().map(|s| s.id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
}

#[test]
fn controllers_serial_standby_first_with_the_original_steps() {
    let c = collected(
        vec![
            host("controller-0", "controller"),
            host("controller-1", "controller"),
        ],
        true,
    );
    let stages = Case::new().plan(&c).unwrap();
    assert_eq!(host_lists(&stages), [["controller-1"], ["controller-0"]]);
    assert_eq!(stages[0].name, "sw-patch-controllers");
    assert_eq!(
        step_names(&stages[0]),
        [
            "query-alarms(60)",
            "swact-hosts(900)",
            "lock-hosts(900)",
            "sw-patch-hosts(1800)",
            "system-stabilize(15)",
            "unlock-hosts(1800)",
            "wait-alarms-clear(2400)"
        ]
    );
    assert_eq!(stages[0].timeout, 7876);
    assert_eq!(stages[0].steps[1].entity_uuids, ["uuid-controller-1"]);
}

#[test]
fn in_service_hosts_go_first_with_three_steps_and_no_locks() {
    let hosts = vec![
        host("controller-0", "controller"),
        host("controller-1", "controller"),
        host("worker-0", "worker"),
        host("worker-1", "worker"),
    ];
    let mut c = collected(hosts, false);
    // worker-1 needs a reboot-required patch; everything else is in-service.
    c.patch_hosts[3].requires_reboot = true;
    let stages = Case::new().plan(&c).unwrap();
    assert_eq!(
        host_lists(&stages),
        [
            ["controller-1"],
            ["controller-0"],
            ["worker-0"],
            ["worker-1"]
        ]
    );
    for stage in &stages[..3] {
        assert_eq!(
            step_names(stage),
            [
                "query-alarms(60)",
                "sw-patch-hosts(1800)",
                "system-stabilize(30)"
            ]
        );
    }
    assert!(step_names(&stages[3]).contains(&"lock-hosts(900)".to_string()));
}

#[test]
fn patch_current_and_offline_hosts_are_skipped() {
    let mut offline = host("worker-2", "worker");
    offline.admin = AdminState::Locked;
    offline.oper = OperState::Disabled;
    offline.availability = Availability::Offline;
    let mut c = collected(
        vec![
            host("controller-0", "controller"),
            host("controller-1", "controller"),
            host("worker-0", "worker"),
            host("worker-1", "worker"),
            offline,
        ],
        true,
    );
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    c.patch_hosts[2].patch_current = true;
    assert_eq!(host_lists(&Case::new().plan(&c).unwrap()), [["worker-1"]]);
}

#[test]
fn an_already_locked_worker_is_rebooted_not_unlocked() {
    let mut locked = host("worker-0", "worker");
    locked.admin = AdminState::Locked;
    locked.oper = OperState::Disabled;
    locked.availability = Availability::Online;
    let mut c = collected(
        vec![
            host("controller-0", "controller"),
            host("controller-1", "controller"),
            locked,
        ],
        true,
    );
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    let stages = Case::new().plan(&c).unwrap();
    assert_eq!(
        step_names(&stages[0]),
        [
            "query-alarms(60)",
            "sw-patch-hosts(1800)",
            "system-stabilize(15)",
            "reboot-hosts(900)",
            "system-stabilize(60)"
        ]
    );
}

#[test]
fn serial_workers_aio_first_then_idle_then_busy() {
    let mut c = collected(
        vec![
            aio("controller-0"),
            aio("controller-1"),
            host("w-busy", "worker"),
            host("w-idle", "worker"),
        ],
        true,
    );
    c.instances = vec![vm("vm", "w-busy")];
    let stages = Case::new().plan(&c).unwrap();
    assert_eq!(
        host_lists(&stages),
        [["controller-0"], ["controller-1"], ["w-idle"], ["w-busy"]]
    );
    // All-in-one controllers are patched in worker stages, each with a swact and the
    // controller's long alarm wait.
    assert_eq!(stages[0].name, "sw-patch-worker-hosts");
    let names = step_names(&stages[0]);
    assert_eq!(names[1], "swact-hosts(900)");
    assert_eq!(names.last().unwrap(), "wait-alarms-clear(2400)");
}

#[test]
fn single_controller_aio_locks_without_waiting_for_disabled_and_never_swacts() {
    let mut c = collected(vec![aio("controller-0")], true);
    c.instances = vec![vm("vm", "controller-0")];
    let mut case = Case::new();
    case.single_controller = true;
    let stages = case.plan(&c).unwrap();
    assert_eq!(
        step_names(&stages[0]),
        [
            "query-alarms(60)",
            "stop-instances(900)",
            "lock-hosts(900)",
            "sw-patch-hosts(1800)",
            "system-stabilize(15)",
            "unlock-hosts(1800)",
            "start-instances(900)",
            "wait-alarms-clear(2400)"
        ]
    );
    assert_eq!(
        stages[0].steps[2].kind,
        StepKind::LockHosts {
            wait_until_disabled: false
        }
    );
}

#[test]
fn migrate_in_parallel_disables_services_then_migrates() {
    let mut hosts = two_controllers();
    for i in 0..3 {
        let mut w = host(&format!("w{i}"), "worker");
        w.openstack_compute = true;
        hosts.push(w);
    }
    let mut c = collected(hosts, true);
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    c.instances = vec![vm("a", "w0"), vm("b", "w1")];
    let mut case = Case::new();
    case.options.worker_apply_type = ApplyType::Parallel;
    case.options.default_instance_action = InstanceAction::Migrate;
    let stages = case.plan(&c).unwrap();
    assert_eq!(host_lists(&stages), [vec!["w2"], vec!["w0", "w1"]]);
    let names = step_names(&stages[1]);
    assert_eq!(names[1], "disable-host-services(180)");
    assert_eq!(names[2], "migrate-instances-from-host(1800)");
    assert_eq!(names.last().unwrap(), "wait-alarms-clear(600)");
    // The quirk: the migrate step is there even with no instances to move.
    assert_eq!(
        step_names(&stages[0])[2],
        "migrate-instances-from-host(1800)"
    );
}

#[test]
fn anti_affinity_peers_and_aggregates_are_split() {
    let mut hosts = two_controllers();
    for i in 0..4 {
        let mut w = host(&format!("w{i}"), "worker");
        if i < 2 {
            w.aggregates = vec!["agg-small".into()];
        }
        hosts.push(w);
    }
    let mut c = collected(hosts, true);
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    let group = ServerGroup {
        name: "g".into(),
        policies: vec!["anti-affinity".into()],
    };
    c.instances = (0..4)
        .map(|i| vm(&format!("vm{i}"), &format!("w{i}")))
        .collect();
    c.instances[2].groups = vec![group.clone()];
    c.instances[3].groups = vec![group];
    let case = Case::parallel(4);
    let stages = case.plan(&c).unwrap();
    // w0 and w1 share a 2-host aggregate (limit max(1, int(2 * 0.5)) = 1); w2 and w3 share
    // an anti-affinity group.
    assert_eq!(host_lists(&stages), [vec!["w0", "w2"], vec!["w1", "w3"]]);
}

#[test]
fn storage_parallel_packs_one_host_per_replication_group() {
    let mut hosts = two_controllers();
    for (i, g) in ["g0", "g0", "g1", "g1"].iter().enumerate() {
        let mut s = host(&format!("storage-{i}"), "storage");
        s.replication_group = Some((*g).into());
        hosts.push(s);
    }
    let mut c = collected(hosts, true);
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    let mut case = Case::new();
    case.options.storage_apply_type = ApplyType::Parallel;
    let stages = case.plan(&c).unwrap();
    assert_eq!(
        host_lists(&stages),
        [
            vec!["storage-0", "storage-2"],
            vec!["storage-1", "storage-3"]
        ]
    );
    assert_eq!(stages[0].name, "sw-patch-storage-hosts");
    assert_eq!(
        step_names(&stages[0]).last().unwrap(),
        "wait-data-sync(1800)"
    );
    case.options.storage_apply_type = ApplyType::Serial;
    assert_eq!(case.plan(&c).unwrap().len(), 4);
}

#[test]
fn max_parallel_splits_the_idle_bucket() {
    let mut hosts = two_controllers();
    hosts.extend((0..5).map(|i| host(&format!("w{i}"), "worker")));
    let mut c = collected(hosts, false);
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    let case = Case::parallel(2);
    assert_eq!(
        host_lists(&case.plan(&c).unwrap()),
        [vec!["w0", "w1"], vec!["w2", "w3"], vec!["w4"]]
    );
}

#[test]
fn ignore_skips_a_class_and_nothing_left_is_refused() {
    let c = collected(
        vec![
            host("controller-0", "controller"),
            host("controller-1", "controller"),
            host("worker-0", "worker"),
        ],
        true,
    );
    let mut case = Case::new();
    case.options.controller_apply_type = ApplyType::Ignore;
    assert_eq!(host_lists(&case.plan(&c).unwrap()), [["worker-0"]]);
    case.options.worker_apply_type = ApplyType::Ignore;
    assert_eq!(case.refusal(&c), "no software patches need to be applied");
}

#[test]
fn every_refusal_has_the_original_text() {
    let base = || {
        collected(
            vec![
                host("controller-0", "controller"),
                host("controller-1", "controller"),
                host("worker-0", "worker"),
            ],
            true,
        )
    };
    let case = Case::new();

    let mut c = base();
    c.patch_count = 0;
    assert_eq!(case.refusal(&c), "no software patches found");

    let mut alarmed = Case::new();
    alarmed.alarms = vec![alarm("100.101", true, 0)];
    assert_eq!(alarmed.refusal(&base()), "active alarms present");

    let mut c = base();
    c.inventory[2].availability = Availability::Offline;
    assert_eq!(
        case.refusal(&c),
        "all worker hosts must be unlocked-enabled-available, locked-disabled-online or locked-disabled-offline"
    );
    let mut c = base();
    c.inventory[1].oper = OperState::Disabled;
    assert_eq!(
        case.refusal(&c),
        "all controller hosts must be unlocked-enabled-available"
    );

    let mut c = base();
    c.patch_hosts
        .push(patch_host(&host("ghost", "worker"), true));
    assert_eq!(case.refusal(&c), "host inventory mismatch detected");

    let mut c = base();
    c.patch_hosts[2].interim_state = true;
    assert_eq!(
        case.refusal(&c),
        "at least one host is in pending patch current state"
    );

    let mut c = base();
    c.patch_hosts[2].subfunctions = vec!["controller".into()];
    assert_eq!(
        case.refusal(&c),
        "host inventory personality controller mismatch detected"
    );

    let mut c = base();
    c.inventory.remove(1);
    c.patch_hosts.remove(1);
    assert_eq!(
        case.refusal(&c),
        "not enough controllers to apply software update"
    );

    let mut parallel = Case::new();
    parallel.options.controller_apply_type = ApplyType::Parallel;
    assert_eq!(
        parallel.refusal(&base()),
        "parallel apply type not allowed for controllers"
    );

    let mut c = base();
    c.inventory.push(host("storage-0", "storage"));
    c.patch_hosts
        .push(patch_host(&host("storage-0", "storage"), true));
    assert_eq!(
        case.refusal(&c),
        "not enough storage hosts to apply software updates"
    );

    let mut c = base();
    c.inventory.push(host("swift-0", "swift"));
    c.patch_hosts
        .push(patch_host(&host("swift-0", "swift"), true));
    let mut swift = Case::new();
    swift.options.swift_apply_type = ApplyType::Serial;
    assert_eq!(
        swift.refusal(&c),
        "not enough swift hosts to apply software patches"
    );

    let mut c = collected(vec![aio("controller-0")], true);
    c.inventory[0].openstack_compute = true;
    let mut sx = Case::new();
    sx.single_controller = true;
    sx.options.default_instance_action = InstanceAction::Migrate;
    assert_eq!(
        sx.refusal(&c),
        "cannot migrate instances in a single controller configuration"
    );

    let mut c = base();
    let mut stopped = vm("db-1", "worker-0");
    stopped.locked = true;
    stopped.groups = vec![ServerGroup {
        name: "db".into(),
        policies: vec!["affinity".into()],
    }];
    c.instances = vec![stopped];
    assert_eq!(
        case.refusal(&c),
        "instance db-1 in group db must not be shut down"
    );

    let mut c = base();
    for p in &mut c.patch_hosts {
        p.patch_current = true;
    }
    assert_eq!(case.refusal(&c), "no software patches need to be applied");
}

#[test]
fn alarm_rules_ignore_list_relaxed_and_conditional() {
    let timing = Timing::default();
    let none = BTreeSet::new();
    let alarms = vec![
        alarm("900.001", true, 0),
        alarm("200.001", true, 0),
        alarm("100.101", false, 0),
        alarm("750.006", true, 9_000),
        alarm("750.006", true, 1_000),
    ];
    let ids = |check, restrictions, extra: &[String]| -> Vec<String> {
        let rules = AlarmRules::plain(restrictions, extra);
        blocking_alarms(&alarms, &rules, check, &timing, 10_000, &none)
            .iter()
            .map(|a| format!("{}@{}", a.alarm_id, a.raised_at))
            .collect()
    };
    assert_eq!(
        ids(AlarmCheck::Query, AlarmRestrictions::Strict, &[]),
        ["100.101@0"]
    );
    assert!(ids(AlarmCheck::Query, AlarmRestrictions::Relaxed, &[]).is_empty());
    assert!(
        ids(
            AlarmCheck::Query,
            AlarmRestrictions::Strict,
            &["100.101".into()]
        )
        .is_empty()
    );
    // In wait-alarms-clear 750.006 blocks until it is 1800 s old.
    assert_eq!(
        ids(AlarmCheck::Wait, AlarmRestrictions::Strict, &[]),
        ["100.101@0", "750.006@9000"]
    );
    // The error budget's tolerated hosts' install failures do not block.
    let mut failed = alarm(INSTALL_FAILED_ALARM, true, 0);
    failed.entity_instance_id = "host=worker-1".into();
    let budgeted = BTreeSet::from(["worker-1".to_string()]);
    let list = [failed];
    assert!(
        blocking_alarms(
            &list,
            &AlarmRules::plain(AlarmRestrictions::Strict, &[]),
            AlarmCheck::Query,
            &timing,
            0,
            &budgeted
        )
        .is_empty()
    );
}

#[test]
fn a_baseline_ignores_alarms_that_were_there_unless_they_got_worse_and_stale_ones_are_named() {
    let timing = Timing::default();
    let none = BTreeSet::new();
    let before = alarm("100.101", false, 1_000);
    let baseline = vec![BaselineAlarm::of(&before)];
    let mut worse = before.clone();
    worse.severity = "critical".into();
    let mut milder = before.clone();
    milder.severity = "minor".into();
    let mut elsewhere = before.clone();
    elsewhere.entity_instance_id = "host=compute-3".into();
    let new = alarm("100.102", true, 9_990);
    let rules = AlarmRules {
        restrictions: AlarmRestrictions::Baseline,
        ignored: &[],
        baseline: &baseline,
        stale_after_secs: None,
    };
    let blocking = |list: &[Alarm]| -> Vec<String> {
        blocking_alarms(list, &rules, AlarmCheck::Query, &timing, 10_000, &none)
            .iter()
            .map(|a| format!("{}/{}", a.alarm_id, a.entity_instance_id))
            .collect()
    };
    assert!(blocking(std::slice::from_ref(&before)).is_empty());
    assert!(blocking(&[milder]).is_empty());
    assert_eq!(blocking(&[worse]), ["100.101/host=controller-0"]);
    assert_eq!(blocking(&[elsewhere]), ["100.101/host=compute-3"]);
    assert_eq!(
        blocking(&[before.clone(), new.clone()]),
        ["100.102/host=controller-0"]
    );
    // Strict ignores no baseline.
    let strict = AlarmRules {
        restrictions: AlarmRestrictions::Strict,
        ..rules
    };
    let list = [before.clone()];
    assert_eq!(
        blocking_alarms(&list, &strict, AlarmCheck::Query, &timing, 10_000, &none).len(),
        1
    );

    // Stale: unchanged for 600 s or more no longer blocks, and is named.
    let stale_rules = AlarmRules {
        restrictions: AlarmRestrictions::Strict,
        ignored: &[],
        baseline: &[],
        stale_after_secs: Some(600),
    };
    let list = [before, new];
    let verdict = sort_alarms(
        &list,
        &stale_rules,
        AlarmCheck::Query,
        &timing,
        10_000,
        &none,
    );
    let ids = |v: &[&Alarm]| v.iter().map(|a| a.alarm_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&verdict.blocking), ["100.102"]);
    assert_eq!(ids(&verdict.stale), ["100.101"]);
    assert_eq!(
        verdict.stale_note(&stale_rules),
        "stale alarms ['100.101'] ignored (unchanged for more than 600 s)"
    );
}

#[test]
fn canaries_come_first_workers_before_storage_and_never_a_controller() {
    let hosts = vec![
        host("controller-0", "controller"),
        host("controller-1", "controller"),
        aio("controller-2"),
        host("storage-0", "storage"),
        host("storage-1", "storage"),
        host("compute-0", "worker"),
    ];
    let c = collected(hosts, true);
    let mut case = Case::new();
    case.options.canary_hosts = 2;
    case.options.canary_soak_secs = Some(300);
    let stages = case.plan(&c).unwrap();
    // compute-0 (the only worker that is not a controller), then storage-0; the last canary
    // stage's soak step watches both.
    assert_eq!(
        host_lists(&stages)[..2],
        [vec!["compute-0"], vec!["storage-0", "compute-0"]]
    );
    assert!(stages[0].canary && stages[1].canary);
    assert!(stages[2..].iter().all(|s| !s.canary));
    // The soak watches both canaries at the end of the last canary stage.
    let soak = stages[1].steps.last().unwrap();
    assert_eq!(soak.kind, StepKind::CanarySoak);
    assert_eq!(soak.entity_names, ["compute-0", "storage-0"]);
    assert_eq!(soak.timeout, 300);
    // Every other host is still planned, once.
    let mut rest: Vec<String> = host_lists(&stages[2..]).concat();
    rest.sort();
    rest.dedup();
    assert_eq!(
        rest,
        ["controller-0", "controller-1", "controller-2", "storage-1"]
    );
    // No canaries asked: the original plan.
    let plain = Case::new().plan(&c).unwrap();
    assert!(plain.iter().all(|s| !s.canary));
}

/// The original's aggregate limit is `max_parallel / every worker in the inventory`, the
/// patch-current ones too: 10 computes in two aggregates of five, instances on 0–4, 5–9
/// patch-current, parallel max 2 → ratio 0.2, limit int(5 × 0.2) = 1 per aggregate, so the
/// five busy hosts of one aggregate go one per stage.
#[test]
fn the_aggregate_limit_counts_every_worker_in_the_inventory() {
    let mut hosts = two_controllers();
    for i in 0..10 {
        let mut w = host(&format!("compute-{i}"), "worker");
        w.aggregates = vec![if i < 5 { "agg-a" } else { "agg-b" }.into()];
        hosts.push(w);
    }
    let mut c = collected(hosts, true);
    for p in &mut c.patch_hosts {
        let n: usize = p
            .hostname
            .strip_prefix("compute-")
            .map_or(99, |n| n.parse().unwrap());
        p.patch_current = n >= 5;
    }
    c.instances = (0..5)
        .map(|i| vm(&format!("vm{i}"), &format!("compute-{i}")))
        .collect();
    let case = Case::parallel(2);
    let stages = case.plan(&c).unwrap();
    assert_eq!(
        host_lists(&stages),
        (0..5)
            .map(|i| vec![format!("compute-{i}")])
            .collect::<Vec<_>>()
    );
}

/// For a reboot-required patch any stopped instance in a server group refuses the build,
/// wherever it runs (here on a host that needs nothing).
#[test]
fn a_stopped_group_instance_anywhere_refuses_a_reboot_required_build() {
    let hosts = vec![
        host("controller-0", "controller"),
        host("controller-1", "controller"),
        host("compute-0", "worker"),
        host("compute-1", "worker"),
    ];
    let mut c = collected(hosts, true);
    c.patch_hosts[3].patch_current = true;
    let mut stopped = vm("db-1", "compute-1");
    stopped.locked = true;
    stopped.groups = vec![ServerGroup {
        name: "db".into(),
        policies: vec!["anti-affinity".into()],
    }];
    c.instances = vec![stopped];
    assert_eq!(
        Case::new().refusal(&c),
        "instance db-1 in group db must not be shut down"
    );
    // An in-service patch stops nothing: no refusal.
    let mut in_service = c.clone();
    for p in &mut in_service.patch_hosts {
        p.requires_reboot = false;
    }
    assert!(Case::new().plan(&in_service).is_ok());
}

/// A swift host's reboot stage ends with the original's 60 s system-stabilize, not a wait
/// for alarms to clear.
#[test]
fn a_swift_reboot_stage_ends_with_system_stabilize() {
    let mut hosts = two_controllers();
    hosts.push(host("swift-0", "swift"));
    hosts.push(host("swift-1", "swift"));
    let mut c = collected(hosts, true);
    c.patch_hosts[0].patch_current = true;
    c.patch_hosts[1].patch_current = true;
    let mut case = Case::new();
    case.options.swift_apply_type = ApplyType::Serial;
    let stages = case.plan(&c).unwrap();
    assert_eq!(stages.len(), 2);
    for stage in &stages {
        assert_eq!(stage.name, "sw-patch-swift-hosts");
        assert_eq!(
            step_names(stage),
            [
                "query-alarms(60)",
                "lock-hosts(900)",
                "sw-patch-hosts(1800)",
                "system-stabilize(15)",
                "unlock-hosts(1800)",
                "system-stabilize(60)"
            ]
        );
    }
}
