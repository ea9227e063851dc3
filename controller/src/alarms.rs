//! Active alarms (the part of FM the patch strategy needs): operators and monitoring raise and
//! clear them through the API, patching and the strategy raise and clear their own. Kept in
//! `<state>/alarms.json`, written atomically.

use std::path::{Path, PathBuf};

use orchestrator::Alarm;

use crate::hosts::now;

/// Patching operation in progress (some patch is partially applied or removed).
pub(crate) const PATCH_IN_PROGRESS: &str = "900.001";
/// A host failed to install patches.
pub(crate) const PATCH_HOST_INSTALL_FAILED: &str = "900.002";
/// A patch strategy is being applied.
pub(crate) const STRATEGY_APPLY_IN_PROGRESS: &str = "900.101";
/// A patch strategy is being aborted.
pub(crate) const STRATEGY_ABORT_IN_PROGRESS: &str = "900.102";
/// A patch strategy failed.
pub(crate) const STRATEGY_FAILED: &str = "900.103";

/// What a raise request carries.
#[derive(Clone, Debug)]
pub(crate) struct NewAlarm {
    pub(crate) alarm_id: String,
    pub(crate) entity_instance_id: String,
    pub(crate) severity: String,
    pub(crate) reason_text: String,
    pub(crate) mgmt_affecting: bool,
}

/// Why an alarm request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AlarmError {
    #[error("{0}")]
    Invalid(String),
    /// The saved alarms could not be read.
    #[error(
        "cannot read the alarms in {path}: {reason}; repair the file or move it aside (the patching alarms are raised again while their causes persist)"
    )]
    Unreadable { path: PathBuf, reason: String },
    /// No alarm matched a clear.
    #[error("Alarm {0} not found")]
    NotFound(String),
    #[error("cannot save alarms to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The alarm list and where it lives.
pub(crate) struct Alarms {
    path: PathBuf,
    list: Vec<Alarm>,
}

const SEVERITIES: &[&str] = &["critical", "major", "minor", "warning"];
const MAX_ALARMS: usize = 10_000;

fn valid_alarm_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

impl Alarms {
    /// The saved alarms (none when the file does not exist yet). A file that cannot be read
    /// is an error, never "no alarms": a strategy would then no longer be held back by them.
    pub(crate) fn load(dir: &Path) -> Result<Alarms, AlarmError> {
        let path = dir.join("alarms.json");
        let unreadable = |reason: String| AlarmError::Unreadable {
            path: path.clone(),
            reason,
        };
        let list = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(unreadable(e.to_string())),
        };
        Ok(Alarms { path, list })
    }

    pub(crate) fn list(&self) -> &[Alarm] {
        &self.list
    }

    fn save(&self) -> Result<(), AlarmError> {
        let bytes = serde_json::to_vec_pretty(&self.list).map_err(|e| AlarmError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        durable_fs::write(&self.path, &bytes).map_err(|e| AlarmError::Io {
            path: e.path,
            source: e.source,
        })
    }

    /// Raises an alarm (or refreshes the one with the same id and entity); returns its uuid.
    pub(crate) fn raise(&mut self, new: NewAlarm) -> Result<String, AlarmError> {
        if !valid_alarm_id(&new.alarm_id) {
            return Err(AlarmError::Invalid(format!(
                "alarm id '{}' is not of the form NNN.NNN",
                new.alarm_id
            )));
        }
        if !SEVERITIES.contains(&new.severity.as_str()) {
            return Err(AlarmError::Invalid(format!(
                "severity '{}' is not one of: {}",
                new.severity,
                SEVERITIES.join(", ")
            )));
        }
        if new.entity_instance_id.is_empty()
            || new.entity_instance_id.len() > 255
            || new.reason_text.len() > 1024
            || new.entity_instance_id.chars().any(char::is_control)
            || new.reason_text.chars().any(char::is_control)
        {
            return Err(AlarmError::Invalid(
                "entity-instance-id must be 1..255 printable characters, reason-text at most 1024"
                    .into(),
            ));
        }
        if let Some(existing) = self
            .list
            .iter_mut()
            .find(|a| a.alarm_id == new.alarm_id && a.entity_instance_id == new.entity_instance_id)
        {
            let unchanged = existing.severity == new.severity
                && existing.reason_text == new.reason_text
                && existing.mgmt_affecting == new.mgmt_affecting;
            existing.severity = new.severity;
            existing.reason_text = new.reason_text;
            existing.mgmt_affecting = new.mgmt_affecting;
            let uuid = existing.uuid.clone();
            if !unchanged {
                // The time of the last change: how long an alarm has been as it is decides
                // whether a strategy treats it as stale.
                existing.raised_at = now();
                self.save()?;
            }
            return Ok(uuid);
        }
        if self.list.len() >= MAX_ALARMS {
            return Err(AlarmError::Invalid(format!(
                "{MAX_ALARMS} alarms are active already; clear some first"
            )));
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        self.list.push(Alarm {
            uuid: uuid.clone(),
            alarm_id: new.alarm_id,
            entity_instance_id: new.entity_instance_id,
            severity: new.severity,
            reason_text: new.reason_text,
            mgmt_affecting: new.mgmt_affecting,
            raised_at: now(),
        });
        self.save()?;
        Ok(uuid)
    }

    /// Clears alarms matching `pred`; returns how many.
    pub(crate) fn clear(&mut self, pred: impl Fn(&Alarm) -> bool) -> Result<usize, AlarmError> {
        let before = self.list.len();
        self.list.retain(|a| !pred(a));
        let cleared = before - self.list.len();
        if cleared > 0 {
            self.save()?;
        }
        Ok(cleared)
    }

    /// Makes the alarms with this id exactly the given (entity, severity, text) set.
    pub(crate) fn sync(
        &mut self,
        alarm_id: &str,
        wanted: &[(String, &str, String)],
    ) -> Result<(), AlarmError> {
        self.clear(|a| {
            a.alarm_id == alarm_id && !wanted.iter().any(|(e, _, _)| e == &a.entity_instance_id)
        })?;
        for (entity, severity, text) in wanted {
            self.raise(NewAlarm {
                alarm_id: alarm_id.into(),
                entity_instance_id: entity.clone(),
                severity: (*severity).into(),
                reason_text: text.clone(),
                mgmt_affecting: true,
            })?;
        }
        Ok(())
    }
}

/// When an alarm was raised, as `fm` shows it (`2026-12-01T22:54:33`, UTC).
pub(crate) fn timestamp(alarm: &orchestrator::Alarm) -> String {
    chrono::DateTime::from_timestamp(alarm.raised_at as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, entity: &str) -> NewAlarm {
        NewAlarm {
            alarm_id: id.into(),
            entity_instance_id: entity.into(),
            severity: "major".into(),
            reason_text: "text".into(),
            mgmt_affecting: true,
        }
    }

    #[test]
    fn raise_is_idempotent_clear_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut alarms = Alarms::load(dir.path()).unwrap();
        let a = alarms.raise(new("100.101", "host=worker-0")).unwrap();
        assert_eq!(alarms.raise(new("100.101", "host=worker-0")).unwrap(), a);
        alarms.raise(new("100.101", "host=worker-1")).unwrap();
        assert_eq!(Alarms::load(dir.path()).unwrap().list().len(), 2);
        assert_eq!(alarms.clear(|x| x.uuid == a).unwrap(), 1);
        assert_eq!(Alarms::load(dir.path()).unwrap().list().len(), 1);
    }

    /// A corrupt alarm file is an error naming it, never "no alarms" (a strategy held back
    /// by an alarm would otherwise run).
    #[test]
    fn a_corrupt_alarm_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alarms.json"), b"[{\"uuid\": 1").unwrap();
        let err = Alarms::load(dir.path())
            .err()
            .expect("a corrupt file is refused");
        let text = err.to_string();
        assert!(text.contains("alarms.json"), "{text}");
        assert!(text.contains("move it aside"), "{text}");
    }

    #[test]
    fn bad_alarms_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut alarms = Alarms::load(dir.path()).unwrap();
        for id in ["100", "1000.1", "abc.def", "100.101.1", ""] {
            assert!(alarms.raise(new(id, "host=x")).is_err(), "{id}");
        }
        let mut bad = new("100.101", "host=x");
        bad.severity = "apocalyptic".into();
        assert!(alarms.raise(bad).is_err());
        assert!(alarms.raise(new("100.101", "")).is_err());
        assert!(alarms.raise(new("100.101", "a\nb")).is_err());
    }

    #[test]
    fn sync_raises_and_clears_exactly_the_wanted_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut alarms = Alarms::load(dir.path()).unwrap();
        let want = |hosts: &[&str]| -> Vec<(String, &'static str, String)> {
            hosts
                .iter()
                .map(|h| (format!("host={h}"), "major", "failed".to_string()))
                .collect()
        };
        alarms.sync("900.002", &want(&["a", "b"])).unwrap();
        alarms.sync("900.002", &want(&["b"])).unwrap();
        let left: Vec<&str> = alarms
            .list()
            .iter()
            .map(|a| a.entity_instance_id.as_str())
            .collect();
        assert_eq!(left, ["host=b"]);
    }
}
