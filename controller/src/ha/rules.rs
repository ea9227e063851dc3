//! The pair protocol's decisions as pure functions of the durable role (`ha.json`) and what a
//! message says: the daemon ([`super::Ha`]) and the model test (`model_tests`) both run
//! exactly these, so the schedules the model explores test the rules the controllers follow.

use super::{HaState, Role};

/// Why a message from the peer is refused (HTTP 409 on the wire).
pub(crate) type Refusal = String;

/// The rules; a trait so the model test can run a deliberately broken variant against the
/// real ones.
pub(crate) trait Rules {
    /// What a controller at `me` becomes on seeing the peer `peer_host` at `peer_term` in
    /// `peer_role` (the periodic peer check); `None` keeps its role.
    fn on_peer_status(
        &self,
        me: &HaState,
        my_host: &str,
        peer_host: &str,
        peer_term: u64,
        peer_role: Role,
    ) -> Option<HaState> {
        match (me.role, peer_role) {
            // A newer active exists: step down.
            (Role::Active | Role::HandingOver, Role::Active) if peer_term > me.term => {
                Some(HaState {
                    term: peer_term,
                    role: Role::Standby,
                    active: peer_host.to_owned(),
                })
            }
            // Two actives at one term cannot come from a swact; settle it deterministically.
            (Role::Active, Role::Active) if peer_term == me.term && peer_host < my_host => {
                Some(HaState {
                    term: me.term,
                    role: Role::Standby,
                    active: peer_host.to_owned(),
                })
            }
            // The promotion never reached the peer: stay active.
            (Role::HandingOver, Role::Standby) if peer_term <= me.term => Some(HaState {
                term: me.term,
                role: Role::Active,
                active: my_host.to_owned(),
            }),
            (Role::Standby, _)
                if peer_term > me.term || (peer_role == Role::Active && me.active != peer_host) =>
            {
                Some(HaState {
                    term: peer_term.max(me.term),
                    role: Role::Standby,
                    active: if peer_role == Role::Active {
                        peer_host.to_owned()
                    } else {
                        me.active.clone()
                    },
                })
            }
            _ => None,
        }
    }

    /// A replication message (`sync`, `commit`) at `term` from `from`: refused if older than
    /// this controller's term or if this controller is itself active at that term; otherwise
    /// the role this controller takes (standby under `from`), `None` if unchanged.
    fn accept_term(
        &self,
        me: &HaState,
        my_host: &str,
        term: u64,
        from: &str,
    ) -> Result<Option<HaState>, Refusal> {
        if term < me.term {
            return Err(format!(
                "stale term {term}: {my_host} is at term {} (active {})",
                me.term, me.active
            ));
        }
        if me.role != Role::Standby && term == me.term {
            return Err(format!("{my_host} is itself active at term {term}"));
        }
        Ok(
            (term > me.term || me.active != from || me.role != Role::Standby).then(|| HaState {
                term,
                role: Role::Standby,
                active: from.to_owned(),
            }),
        )
    }

    /// A promotion to `term`: taken only at a newer term and when this controller holds the
    /// final state of the one handing over.
    fn on_promote(
        &self,
        me: &HaState,
        my_host: &str,
        term: u64,
        from: &str,
        holds_final_state: bool,
    ) -> Result<HaState, Refusal> {
        if term <= me.term {
            return Err(format!(
                "stale term {term}: {my_host} is at term {}",
                me.term
            ));
        }
        if !holds_final_state {
            return Err(format!("{my_host} does not hold {from}'s final state"));
        }
        Ok(HaState {
            term,
            role: Role::Active,
            active: my_host.to_owned(),
        })
    }

    /// The term a swact promotes the peer to.
    fn swact_term(&self, me: &HaState, peer_term: u64) -> u64 {
        me.term.max(peer_term) + 1
    }

    /// The role a standby takes when forced to take over (its peer's last known term given).
    /// Only a standby may: a controller handing over may have promised its peer the next
    /// term in a promotion still on its way (the model test found two actives at one term
    /// when the handing-over side was forced).
    fn takeover(&self, me: &HaState, my_host: &str, peer_term: u64) -> Result<HaState, Refusal> {
        match me.role {
            Role::Standby => Ok(HaState {
                term: me.term.max(peer_term) + 1,
                role: Role::Active,
                active: my_host.to_owned(),
            }),
            Role::Active => Err(format!("{my_host} is already active.")),
            Role::HandingOver => Err(format!(
                "{my_host} is handing over (a swact is unsettled); it settles when the controllers reach each other, then force the standby if the active is gone."
            )),
        }
    }
}

/// The rules the controllers run.
pub(crate) struct PairRules;

impl Rules for PairRules {}
