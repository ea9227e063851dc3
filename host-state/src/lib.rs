//! Hosts: inventory facts, installed versus desired packages, install states, and the pure
//! derivation of patch states (Available, Partial-Apply, Applied, Partial-Remove, Committed)
//! from repository state and host reports.
//!
//! Not built yet: see the "Hosts" issue.
