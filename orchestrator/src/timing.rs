//! Step timeouts and the fixed waits inside steps. The defaults are the original's (seconds,
//! long); a controller may shorten them (tests run whole strategies in seconds).

use serde::{Deserialize, Serialize};

/// Every duration the strategy uses, in seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Each build query step (query-alarms, query-sw-patches, query-sw-patch-hosts).
    pub query: u64,
    /// swact-hosts timeout.
    pub swact: u64,
    /// How long after a swact the step waits before it succeeds.
    pub swact_settle: u64,
    /// lock-hosts timeout.
    pub lock: u64,
    /// lock-hosts without waiting for disabled (single-controller): minimum wait.
    pub lock_no_disable_wait: u64,
    /// sw-patch-hosts timeout.
    pub install: u64,
    /// system-stabilize after installing on locked hosts (the original's MTCE_DELAY).
    pub stabilize_after_install: u64,
    /// system-stabilize after an in-service install (NO_REBOOT_DELAY).
    pub stabilize_in_service: u64,
    /// The final system-stabilize of a worker stage with nothing else to wait for.
    pub stabilize_final: u64,
    /// unlock-hosts timeout (includes the reboot).
    pub unlock: u64,
    /// reboot-hosts timeout.
    pub reboot: u64,
    /// How long after the reboot order reboot-hosts succeeds.
    pub reboot_settle: u64,
    /// wait-alarms-clear timeout after controller or all-in-one stages.
    pub alarms_clear_controller: u64,
    /// wait-alarms-clear timeout after OpenStack worker stages.
    pub alarms_clear_worker: u64,
    /// wait-alarms-clear: delay before the first alarm query.
    pub alarms_first_query: u64,
    /// wait-data-sync timeout.
    pub data_sync: u64,
    /// wait-data-sync: delay before the first query.
    pub data_sync_first_query: u64,
    /// migrate-instances-from-host timeout.
    pub migrate: u64,
    /// disable-host-services / enable-host-services timeout.
    pub host_services: u64,
    /// stop-instances timeout.
    pub stop_instances: u64,
    /// start-instances timeout.
    pub start_instances: u64,
    /// 750.006 (cert-manager reapply) stops blocking wait-alarms-clear once this old.
    pub conditional_alarm_age: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            query: 60,
            swact: 900,
            swact_settle: 120,
            lock: 900,
            lock_no_disable_wait: 15,
            install: 1800,
            stabilize_after_install: 15,
            stabilize_in_service: 30,
            stabilize_final: 60,
            unlock: 1800,
            reboot: 900,
            reboot_settle: 60,
            alarms_clear_controller: 2400,
            alarms_clear_worker: 600,
            alarms_first_query: 60,
            data_sync: 1800,
            data_sync_first_query: 120,
            migrate: 1800,
            host_services: 180,
            stop_instances: 900,
            start_instances: 900,
            conditional_alarm_age: 1800,
        }
    }
}

impl Timing {
    /// The original's fixed waits shortened to seconds (timeouts kept): a whole strategy
    /// then runs in seconds, for demos, tests and benchmarks on fast simulated hosts.
    pub fn shortened() -> Timing {
        Timing {
            swact_settle: 0,
            lock_no_disable_wait: 0,
            stabilize_after_install: 1,
            stabilize_in_service: 1,
            stabilize_final: 1,
            reboot_settle: 0,
            alarms_first_query: 0,
            data_sync_first_query: 0,
            ..Timing::default()
        }
    }
}
