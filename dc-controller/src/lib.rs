//! The distributed cloud system controller: the subclouds it knows (each a full cluster
//! with its own `sw-patch-controller`), their groups, and whether each one's patches equal
//! the system controller's, kept in a database ([`db`]) and refreshed by an audit
//! ([`audit`]).
#![forbid(unsafe_code)]

pub mod db;
pub mod model;
#[cfg(test)]
mod test_postgres;

pub use db::{AuditResult, Backend, Db, DbError, GroupUpdate};
pub use model::{
    Access, ApplyType, Availability, DEFAULT_GROUP, Group, Management, NewSubcloud, Subcloud,
    SyncStatus,
};
