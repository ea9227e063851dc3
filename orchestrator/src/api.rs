//! The strategy REST API's JSON (reference §4): the kebab-case strategy document, the create
//! request and the action request. Untrusted bodies are parsed into typed values with the
//! original's error texts.

use serde_json::{Map, Value, json};

use crate::model::{
    AlarmRestrictions, ApplyType, InstanceAction, Phase, Stage, Step, StepKind, Strategy,
    StrategyOptions, UnknownValue,
};
use crate::timing::Timing;

/// The strategy document (`{"strategy": ...}`'s value).
pub fn strategy_json(s: &Strategy) -> Value {
    let current_pct = s.completion_percentage();
    let o = &s.options;
    json!({
        "uuid": s.uuid,
        "name": s.name,
        "controller-apply-type": o.controller_apply_type.as_str(),
        "storage-apply-type": o.storage_apply_type.as_str(),
        "swift-apply-type": o.swift_apply_type.as_str(),
        "worker-apply-type": o.worker_apply_type.as_str(),
        "max-parallel-worker-hosts": o.max_parallel_worker_hosts,
        "default-instance-action": o.default_instance_action.as_str(),
        "alarm-restrictions": o.alarm_restrictions.as_str(),
        "max-failed-hosts": o.max_failed_hosts,
        "alarm-stale-after": o.alarm_stale_after_secs,
        "canary-hosts": o.canary_hosts,
        "canary-soak": o.canary_soak_secs,
        "soak-seconds": o.health_soak_secs,
        "canary-state": s.canary_state(),
        "abort-preview": s.abort_preview().map(|p| json!({
            "allowed": p.refused.is_none(),
            "refused": p.refused,
            "waits-for": p.waits_for,
            "undoes": p.undoes,
        })),
        "failed-hosts": s.failed_hosts,
        "state": s.state.as_str(),
        "current-phase": s.current_phase.as_str(),
        "current-phase-completion-percentage": current_pct,
        "build-phase": phase_json(&s.build_phase),
        "apply-phase": phase_json(&s.apply_phase),
        "abort-phase": phase_json(&s.abort_phase),
    })
}

/// One phase.
pub fn phase_json(p: &Phase) -> Value {
    json!({
        "phase-name": p.name.as_str(),
        "timeout": p.timeout,
        "total-stages": p.stages.len(),
        "current-stage": p.current_stage,
        "stop-at-stage": p.stop_at_stage,
        "inprogress": p.inprogress,
        "completion-percentage": p.completion_percentage(),
        "result": p.result.as_str(),
        "reason": p.reason,
        "response": p.response,
        "start-date-time": p.start_date_time,
        "end-date-time": p.end_date_time,
        "stages": p.stages.iter().map(stage_json).collect::<Vec<_>>(),
    })
}

/// One stage.
pub fn stage_json(s: &Stage) -> Value {
    json!({
        "stage-id": s.id,
        "stage-name": s.name,
        "timeout": s.timeout,
        "total-steps": s.steps.len(),
        "current-step": s.current_step,
        "inprogress": s.inprogress,
        "result": s.result.as_str(),
        "reason": s.reason,
        "start-date-time": s.start_date_time,
        "end-date-time": s.end_date_time,
        "steps": s.steps.iter().map(step_json).collect::<Vec<_>>(),
    })
}

/// One step.
pub fn step_json(s: &Step) -> Value {
    json!({
        "step-id": s.id,
        "step-name": s.name(),
        "timeout": s.timeout,
        "entity-type": s.entity_type,
        "entity-names": s.entity_names,
        "entity-uuids": s.entity_uuids,
        "result": s.result.as_str(),
        "reason": s.reason,
        "start-date-time": s.start_date_time,
        "end-date-time": s.end_date_time,
    })
}

/// A dry run's plan: the stages and the predicted duration.
pub fn plan_json(stages: &[Stage], timing: &Timing) -> Value {
    let (least, most) = predicted_duration(stages, timing);
    json!({
        "total-stages": stages.len(),
        "stages": stages.iter().map(stage_json).collect::<Vec<_>>(),
        "predicted-duration-min-seconds": least,
        "predicted-duration-max-seconds": most,
    })
}

/// The predicted duration of an apply phase, in seconds: at least the waits the strategy
/// imposes itself (stabilize periods, settle delays, the first alarm queries), at most the
/// sum of the stage timeouts. Lock, install and reboot take what the hosts take in between.
pub fn predicted_duration(stages: &[Stage], timing: &Timing) -> (u64, u64) {
    let least = stages
        .iter()
        .flat_map(|s| &s.steps)
        .map(|step| match &step.kind {
            StepKind::SystemStabilize | StepKind::CanarySoak => step.timeout,
            StepKind::SwactHosts => 0,
            StepKind::LockHosts {
                wait_until_disabled: false,
            } => timing.lock_no_disable_wait,
            StepKind::RebootHosts => timing.reboot_settle,
            StepKind::WaitAlarmsClear => timing.alarms_first_query,
            StepKind::WaitDataSync => timing.data_sync_first_query,
            _ => 0,
        })
        .sum();
    let most = stages.iter().map(|s| s.timeout).sum::<u64>() + 1;
    (least, most)
}

/// What a create request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    /// The options.
    pub options: StrategyOptions,
    /// Plan only; store nothing.
    pub dry_run: bool,
    /// Create even though the precheck warns (never when it fails).
    pub force: bool,
}

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// Why a strategy request body was refused (HTTP 400); the texts are the original's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is over [`MAX_BODY`].
    #[error("request body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// A mandatory field is absent.
    #[error("Mandatory field '{0}' missing.")]
    Missing(String),
    /// A choice field names no valid choice.
    #[error("Invalid input for field/attribute {field}. Value: '{value}'. {reason}")]
    BadChoice {
        /// The field.
        field: String,
        /// What it held.
        value: String,
        /// Which values are valid.
        reason: String,
    },
    /// A choice field is not a string.
    #[error("Invalid input for field/attribute {field}. Value: '{value}'.")]
    NotAString {
        /// The field.
        field: String,
        /// What it held, as JSON.
        value: String,
    },
    /// A numeric or boolean field is out of range or of the wrong type.
    #[error("Invalid value for {0}")]
    InvalidValue(String),
}

fn enum_field<T: std::str::FromStr<Err = UnknownValue>>(
    obj: &Map<String, Value>,
    name: &str,
    default: Option<T>,
) -> Result<T, RequestError> {
    match field(obj, name) {
        None => default.ok_or_else(|| RequestError::Missing(name.to_owned())),
        Some(Value::String(s)) => s.parse::<T>().map_err(|e| RequestError::BadChoice {
            field: name.to_owned(),
            value: s.clone(),
            reason: e.to_string(),
        }),
        Some(other) => Err(RequestError::NotAString {
            field: name.to_owned(),
            value: other.to_string(),
        }),
    }
}

/// An integer given as a number or a numeric string (the original's scripts send strings).
fn int_field(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>, RequestError> {
    let invalid = || RequestError::InvalidValue(name.to_owned());
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(invalid),
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, RequestError> {
    if body.len() > MAX_BODY {
        return Err(RequestError::TooLarge);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(RequestError::NotAnObject),
        Err(e) => Err(RequestError::NotJson(e.to_string())),
    }
}

/// Parses a create request (reference §4.2, plus `max-failed-hosts` and `dry-run`).
pub fn parse_create(body: &[u8]) -> Result<CreateRequest, RequestError> {
    let obj = object(body)?;
    let max_parallel = int_field(&obj, "max-parallel-worker-hosts")?.unwrap_or(2);
    if !(2..=100).contains(&max_parallel) {
        return Err(RequestError::InvalidValue(
            "max-parallel-worker-hosts".into(),
        ));
    }
    let max_failed = int_field(&obj, "max-failed-hosts")?.unwrap_or(0);
    let max_failed_hosts = u32::try_from(max_failed)
        .map_err(|_| RequestError::InvalidValue("max-failed-hosts".into()))?;
    let alarm_stale_after_secs = match int_field(&obj, "alarm-stale-after")? {
        None => None,
        Some(secs) if (1..=30 * 86_400).contains(&secs) => Some(secs),
        Some(_) => return Err(RequestError::InvalidValue("alarm-stale-after".into())),
    };
    let canary_hosts = int_field(&obj, "canary-hosts")?.unwrap_or(0);
    let canary_hosts = u32::try_from(canary_hosts)
        .ok()
        .filter(|n| *n <= 1000)
        .ok_or_else(|| RequestError::InvalidValue("canary-hosts".into()))?;
    let canary_soak_secs = match int_field(&obj, "canary-soak")? {
        None => None,
        Some(secs) if canary_hosts > 0 && (1..=7 * 86_400).contains(&secs) => Some(secs),
        Some(_) => return Err(RequestError::InvalidValue("canary-soak".into())),
    };
    let health_soak_secs = match int_field(&obj, "soak-seconds")? {
        None => None,
        Some(secs) if (1..=86_400).contains(&secs) => Some(secs),
        Some(_) => return Err(RequestError::InvalidValue("soak-seconds".into())),
    };
    let flag = |name: &str| match field(&obj, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(RequestError::InvalidValue(name.into())),
    };
    let dry_run = flag("dry-run")?;
    let force = flag("force")?;
    let options = StrategyOptions {
        controller_apply_type: enum_field(&obj, "controller-apply-type", None::<ApplyType>)?,
        storage_apply_type: enum_field(&obj, "storage-apply-type", None::<ApplyType>)?,
        swift_apply_type: enum_field(&obj, "swift-apply-type", Some(ApplyType::Ignore))?,
        worker_apply_type: enum_field(&obj, "worker-apply-type", None::<ApplyType>)?,
        max_parallel_worker_hosts: max_parallel as u32,
        default_instance_action: enum_field(
            &obj,
            "default-instance-action",
            None::<InstanceAction>,
        )?,
        alarm_restrictions: enum_field(
            &obj,
            "alarm-restrictions",
            Some(AlarmRestrictions::Strict),
        )?,
        max_failed_hosts,
        alarm_stale_after_secs,
        canary_hosts,
        canary_soak_secs,
        health_soak_secs,
    };
    Ok(CreateRequest {
        options,
        dry_run,
        force,
    })
}

/// An action request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Apply every remaining stage (`None`) or one stage.
    Apply(Option<usize>),
    /// Abort, optionally naming the current stage.
    Abort(Option<usize>),
}

/// Why an action request was rejected before reaching the strategy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionParseError {
    /// `apply-stage` without a stage id (HTTP 400 `No stage-id received`).
    #[error("No stage-id received")]
    NoStageId,
    /// Anything else wrong with the body (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] RequestError),
}

/// Parses an action request (reference §4.3).
pub fn parse_action(body: &[u8]) -> Result<Action, ActionParseError> {
    let obj = object(body)?;
    let stage = int_field(&obj, "stage-id")?.map(|id| usize::try_from(id).unwrap_or(usize::MAX));
    let action = match field(&obj, "action") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(RequestError::Missing("action".into()).into()),
    };
    match action {
        "apply-all" => Ok(Action::Apply(None)),
        "apply-stage" => stage
            .map(|id| Action::Apply(Some(id)))
            .ok_or(ActionParseError::NoStageId),
        "abort" => Ok(Action::Abort(None)),
        // sw-manager sends abort-stage with a null stage-id for a plain abort.
        "abort-stage" => Ok(Action::Abort(stage)),
        other => Err(RequestError::BadChoice {
            field: "action".into(),
            value: other.to_owned(),
            reason: "Value should be one of: apply-all, apply-stage, abort, abort-stage".into(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_accepts_numeric_strings_and_defaults() {
        let r = parse_create(
            br#"{"controller-apply-type":"serial","storage-apply-type":"serial",
                "worker-apply-type":"parallel","max-parallel-worker-hosts":"3",
                "default-instance-action":"migrate"}"#,
        )
        .unwrap();
        assert_eq!(r.options.max_parallel_worker_hosts, 3);
        assert_eq!(r.options.swift_apply_type, ApplyType::Ignore);
        assert_eq!(r.options.alarm_restrictions, AlarmRestrictions::Strict);
        assert!(!r.dry_run);
    }

    #[test]
    fn create_rejects_bad_values_with_the_original_text() {
        let base = r#""controller-apply-type":"serial","storage-apply-type":"serial","worker-apply-type":"serial","default-instance-action":"migrate""#;
        for bad in ["1", "101", "\"x\"", "-2"] {
            let body = format!("{{{base},\"max-parallel-worker-hosts\":{bad}}}");
            assert_eq!(
                parse_create(body.as_bytes()).unwrap_err().to_string(),
                "Invalid value for max-parallel-worker-hosts"
            );
        }
        let err = parse_create(
            br#"{"controller-apply-type":"sideways","storage-apply-type":"serial","worker-apply-type":"serial","default-instance-action":"migrate"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("controller-apply-type"), "{err}");
        assert!(parse_create(b"[1]").is_err());
        assert!(parse_create(b"{").is_err());
        assert!(
            parse_create(br#"{"storage-apply-type":"serial"}"#)
                .unwrap_err()
                .to_string()
                .contains("Mandatory field")
        );
    }

    #[test]
    fn actions_parse_as_the_original_client_sends_them() {
        assert_eq!(
            parse_action(br#"{"action":"apply-all"}"#),
            Ok(Action::Apply(None))
        );
        assert_eq!(
            parse_action(br#"{"action":"apply-stage","stage-id":"3"}"#),
            Ok(Action::Apply(Some(3)))
        );
        assert_eq!(
            parse_action(br#"{"action":"apply-stage"}"#),
            Err(ActionParseError::NoStageId)
        );
        assert_eq!(
            parse_action(br#"{"action":"abort-stage","stage-id":null}"#),
            Ok(Action::Abort(None))
        );
        assert!(matches!(
            parse_action(br#"{"action":"explode"}"#),
            Err(ActionParseError::Invalid(_))
        ));
    }
}
