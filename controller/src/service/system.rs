//! What `system show` reports: the release, the mode, the active controller and, for a
//! pair, both controllers as this one sees them.

use serde::Serialize;

use super::{Service, ServiceError, blocking};
use crate::ha::Role;

/// The system (the sysinv `isystems` entry, with the fields this controller knows).
/// Serialized, it is that entry.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SystemInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) active_controller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) controllers: Option<Vec<ControllerInfo>>,
    pub(crate) patch_op_counter: u64,
    pub(crate) software_version: String,
    pub(crate) system_mode: &'static str,
}

/// One controller of a pair.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ControllerInfo {
    /// One that answered (or this one).
    Reachable {
        hostname: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        in_sync: Option<bool>,
        reachable: bool,
        role: Role,
        term: u64,
    },
    /// A peer that did not answer.
    Unreachable { reachable: bool },
}

impl SystemInfo {
    /// `simplex` or `duplex`.
    pub(crate) fn mode(single_controller: bool) -> &'static str {
        if single_controller {
            "simplex"
        } else {
            "duplex"
        }
    }
}

impl Service {
    /// The system now. A pair compares its state with the peer's (a walk of each state),
    /// so this runs off the async threads.
    pub(crate) async fn system(&self) -> Result<SystemInfo, ServiceError> {
        let app = self.app.clone();
        blocking(move || {
            let config = &app.config;
            let controllers = app.ha.as_ref().map(|ha| {
                let me = ha.state();
                let mut controllers = vec![ControllerInfo::Reachable {
                    hostname: ha.host.clone(),
                    in_sync: None,
                    reachable: true,
                    role: me.role,
                    term: me.term,
                }];
                controllers.push(match ha.peer_status() {
                    Some(p) => ControllerInfo::Reachable {
                        hostname: p.host,
                        in_sync: ha.in_sync(),
                        reachable: true,
                        role: p.role,
                        term: p.term,
                    },
                    None => ControllerInfo::Unreachable { reachable: false },
                });
                controllers
            });
            Ok(SystemInfo {
                active_controller: app.active_controller(),
                controllers,
                patch_op_counter: app.op_counter(),
                software_version: config.release.clone(),
                system_mode: SystemInfo::mode(config.single_controller),
            })
        })
        .await
    }
}
