//! Subclouds and subcloud groups as the system controller keeps them, with the original
//! dcmanager's state names.

use serde::Serialize;

/// A value that is not one of a field's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be one of {}, not {value:?}", valid.join(", "))]
pub struct BadValue {
    /// The field.
    pub field: &'static str,
    /// What was given.
    pub value: String,
    /// The names it may take.
    pub valid: &'static [&'static str],
}

macro_rules! named {
    ($(#[$m:meta])* $name:ident, $field:literal { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v),* }
        impl $name {
            /// The original's name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $name {
            type Err = $crate::model::BadValue;
            fn from_str(s: &str) -> Result<Self, $crate::model::BadValue> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err($crate::model::BadValue {
                        field: $field,
                        value: s.to_owned(),
                        valid: &[$($s),*],
                    }),
                }
            }
        }
    };
}
pub(crate) use named;

named!(
    /// Whether the system controller acts on a subcloud.
    Management, "management-state" {
        /// Audited, kept in sync and patched by strategies.
        Managed = "managed",
        /// Left alone (a new subcloud starts unmanaged, as in the original).
        Unmanaged = "unmanaged",
    }
);

named!(
    /// Whether the subcloud's controller answered the last audit.
    Availability, "availability" {
        /// It answered.
        Online = "online",
        /// It did not (or was never audited).
        Offline = "offline",
    }
);

named!(
    /// Whether the subcloud's patches equal the system controller's.
    SyncStatus, "sync-status" {
        /// Its applied and committed patches are the system controller's.
        InSync = "in-sync",
        /// They differ (the detail says how).
        OutOfSync = "out-of-sync",
        /// Not known: unmanaged, offline or not audited yet.
        Unknown = "unknown",
    }
);

named!(
    /// How a group's subclouds are updated by a strategy.
    ApplyType, "update_apply_type" {
        /// One subcloud at a time.
        Serial = "serial",
        /// Up to `max_parallel_subclouds` at once.
        Parallel = "parallel",
    }
);

/// The group every subcloud belongs to unless it is put in another (the original's).
pub const DEFAULT_GROUP: &str = "Default";

/// A subcloud as listed (the credential is never shown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subcloud {
    /// Number, from 1.
    pub id: i64,
    /// Name (also its region name).
    pub name: String,
    /// Its controller's patching API URL.
    pub url: String,
    /// Its orchestration and alarm API URL, when given.
    pub vim_url: Option<String>,
    /// Free text.
    pub description: String,
    /// Free text.
    pub location: String,
    /// Its group's id.
    pub group_id: i64,
    /// Managed or not.
    pub management: Management,
    /// Online or not, at the last audit.
    pub availability: Availability,
    /// Patching sync status, at the last audit.
    pub sync_status: SyncStatus,
    /// How it differs when out of sync (`missing: …; extra: …`), or why unknown.
    pub sync_detail: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
    /// When it was last audited (seconds since the epoch).
    pub audited_at: Option<i64>,
}

/// How the system controller reaches a subcloud's controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The patching API URL.
    pub url: String,
    /// An operator token of the subcloud's controller.
    pub token: String,
    /// The CA (PEM) its certificate chains to, for `https://` URLs.
    pub ca_pem: Option<String>,
    /// Its orchestration and alarm API URL (same CA and token), when given.
    pub vim_url: Option<String>,
}

/// A subcloud group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Number, from 1 (the default group).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Serial or parallel.
    pub update_apply_type: ApplyType,
    /// At most this many of its subclouds at once.
    pub max_parallel_subclouds: i64,
}

/// What `subcloud add` gives.
#[derive(Clone, Debug)]
pub struct NewSubcloud {
    /// Name.
    pub name: String,
    /// How it is reached.
    pub access: Access,
    /// Group name (the default group when none).
    pub group: Option<String>,
    /// Free text.
    pub description: String,
    /// Free text.
    pub location: String,
}

/// A name a subcloud or group may have: the region names the original allows (letters,
/// digits, `-`, `_`, `.`; at most 255), so it is safe in URLs, file names and logs.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("{what} name must be 1 to 255 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{what} name {name:?} may hold only letters, digits, '-', '_' and '.'"
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{what} name {name:?} cannot be only digits (it would read as an id)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_values_say_what_is_valid() {
        for s in [
            SyncStatus::InSync,
            SyncStatus::OutOfSync,
            SyncStatus::Unknown,
        ] {
            assert_eq!(s.as_str().parse::<SyncStatus>().unwrap(), s);
        }
        let err = "sideways".parse::<ApplyType>().unwrap_err().to_string();
        assert_eq!(
            err,
            "update_apply_type must be one of serial, parallel, not \"sideways\""
        );
    }

    #[test]
    fn names_are_region_safe() {
        assert!(validate_name("subcloud", "subcloud1-east.a_b").is_ok());
        for bad in ["", "a b", "../x", "x/y", "12", &"a".repeat(256)] {
            assert!(validate_name("subcloud", bad).is_err(), "{bad:?}");
        }
    }
}
