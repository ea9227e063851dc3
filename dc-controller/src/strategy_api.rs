//! The dcmanager API of the subcloud patch strategy (`/v1.0/sw-update-strategy`, its
//! `actions` and `steps`) and of `/v1.0/sw-update-options`, with the original's paths and
//! JSON keys; what stx-patch adds (`max-failed-subclouds`, `canary`, `upload-only`,
//! `dry-run`) are extra keys the original client ignores.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use crate::api_shared::{Api, error, failure};
use crate::client::{QUERY_TIMEOUT, client_for};
use crate::db::DbError;
use crate::db_strategy::OptionsUpdate;
use crate::model::{ApplyType, Availability, Group, Management, Subcloud};
use crate::remote::{Remote, patch_file_size};
use crate::sw_update::{
    StrategySpec, StrategyState, StrategyStep, SwUpdateStrategy, plan_stages, step_json,
    strategy_json,
};

/// The `type` query parameter, when given, must be `patch`.
fn check_type(query: &BTreeMap<String, String>) -> Option<Response> {
    match query.get("type").map(String::as_str) {
        None | Some("patch") => None,
        Some(other) => Some(error(
            StatusCode::BAD_REQUEST,
            format!("strategy type {other:?} is not supported here: only \"patch\""),
        )),
    }
}

async fn current(api: &Api) -> Result<(SwUpdateStrategy, Vec<StrategyStep>), Response> {
    match api.db.strategy().await {
        Ok(Some(s)) => match api.db.steps().await {
            Ok(steps) => Ok((s, steps)),
            Err(e) => Err(failure(e)),
        },
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            "Strategy of type 'patch' not found".into(),
        )),
        Err(e) => Err(failure(e)),
    }
}

/// `GET /v1.0/sw-update-strategy`.
pub(crate) async fn show(
    State(api): State<Api>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = check_type(&query) {
        return r;
    }
    match current(&api).await {
        Ok((s, steps)) => axum::Json(strategy_json(&s, &steps)).into_response(),
        Err(r) => r,
    }
}

/// `DELETE /v1.0/sw-update-strategy`.
pub(crate) async fn delete(
    State(api): State<Api>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = check_type(&query) {
        return r;
    }
    let steps = api.db.steps().await.unwrap_or_default();
    match api.db.delete_strategy().await {
        Ok(s) => {
            tracing::info!(target: "audit", "subcloud patch strategy deleted");
            axum::Json(strategy_json(&s, &steps)).into_response()
        }
        Err(e) => failure(e),
    }
}

/// `POST /v1.0/sw-update-strategy/actions`: `apply` (also to go on after the canary) or
/// `abort`.
pub(crate) async fn action(
    State(api): State<Api>,
    Query(query): Query<BTreeMap<String, String>>,
    bytes: Bytes,
) -> Response {
    if let Some(r) = check_type(&query) {
        return r;
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let (strategy, _) = match current(&api).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let moved = match body.get("action").and_then(Value::as_str) {
        Some("apply") => {
            let canary_done = (strategy.state == StrategyState::Paused).then_some(true);
            api.db
                .move_strategy(
                    &[StrategyState::Initial, StrategyState::Paused],
                    StrategyState::Applying,
                    canary_done,
                )
                .await
        }
        Some("abort") => {
            api.db
                .move_strategy(
                    &[
                        StrategyState::Initial,
                        StrategyState::Applying,
                        StrategyState::Paused,
                    ],
                    StrategyState::AbortRequested,
                    None,
                )
                .await
        }
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Invalid action {other:?}: apply or abort"),
            );
        }
        None => return error(StatusCode::BAD_REQUEST, "action is required".into()),
    };
    match moved {
        Ok(true) => {
            tracing::info!(target: "audit", "subcloud patch strategy: {}", body["action"]);
            api.wake.notify_one();
            match current(&api).await {
                Ok((s, steps)) => axum::Json(strategy_json(&s, &steps)).into_response(),
                Err(r) => r,
            }
        }
        Ok(false) => error(
            StatusCode::BAD_REQUEST,
            format!(
                "Strategy in state {} cannot be {}",
                strategy.state,
                if body["action"] == "apply" {
                    "applied"
                } else {
                    "aborted"
                }
            ),
        ),
        Err(e) => failure(e),
    }
}

/// `GET /v1.0/sw-update-strategy/steps` (the list is made by the database in one value).
pub(crate) async fn steps(State(api): State<Api>) -> Response {
    match api.db.steps_json().await {
        Ok(list) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!("{{\"strategy-steps\": {list}}}"),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

/// `GET /v1.0/sw-update-strategy/steps/<cloud>`.
pub(crate) async fn step(State(api): State<Api>, Path(cloud): Path<String>) -> Response {
    match api.db.step(&cloud).await {
        Ok(s) => axum::Json(step_json(&s)).into_response(),
        Err(e) => failure(e),
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn int(
    obj: &Map<String, Value>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, String> {
    let bad = || {
        format!(
            "{name} must be a number from {} to {}",
            range.start(),
            range.end()
        )
    };
    let n = match field(obj, name) {
        None => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if range.contains(&n) {
        Ok(Some(n))
    } else {
        Err(bad())
    }
}

fn flag(obj: &Map<String, Value>, name: &str) -> Result<bool, String> {
    match field(obj, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(format!("{name} must be true or false")),
    }
}

fn text(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// A create request: the spec and whether it is a dry run.
fn parse_create(bytes: &[u8]) -> Result<(StrategySpec, bool), String> {
    let obj = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("request body must be a JSON object".into()),
        Err(e) => return Err(format!("bad request body: {e}")),
    };
    if let Some(kind) = text(&obj, "type")?
        && kind != "patch"
    {
        return Err(format!(
            "strategy type {kind:?} is not supported here: only \"patch\""
        ));
    }
    let subcloud_apply_type = text(&obj, "subcloud-apply-type")?
        .map(|a| a.parse::<ApplyType>().map_err(|e| e.to_string()))
        .transpose()?;
    let spec = StrategySpec {
        subcloud_apply_type,
        max_parallel_subclouds: int(&obj, "max-parallel-subclouds", 1..=5000)?,
        stop_on_failure: flag(&obj, "stop-on-failure")?,
        max_failed_subclouds: int(&obj, "max-failed-subclouds", 0..=100_000)?,
        canary: int(&obj, "canary", 0..=5000)?.unwrap_or(0),
        upload_only: flag(&obj, "upload-only")?,
        cloud_name: text(&obj, "cloud_name")?,
        group: text(&obj, "subcloud_group")?,
    };
    if spec.group.is_some() {
        if spec.cloud_name.is_some() {
            return Err("The cloud_name and group options are mutually exclusive.".into());
        }
        if spec.subcloud_apply_type.is_some() {
            return Err(
                "The --subcloud-apply-type is not supported when --group option is applied.".into(),
            );
        }
        if spec.max_parallel_subclouds.is_some() {
            return Err("The --max-parallel-subclouds options is not supported when --group option is applied.".into());
        }
    }
    if spec.stop_on_failure && spec.max_failed_subclouds.is_some() {
        return Err("--stop-on-failure and --max-failed-subclouds are mutually exclusive (stop on failure is a budget of 0)".into());
    }
    Ok((spec, flag(&obj, "dry-run")?))
}

/// The managed subclouds the strategy covers, each with its group, in update order, and
/// those left out (offline) with why.
async fn scope(
    api: &Api,
    spec: &StrategySpec,
) -> Result<(Vec<(Subcloud, Group)>, Vec<(String, String)>), Response> {
    let groups: BTreeMap<i64, Group> = match api.db.groups().await {
        Ok(g) => g.into_iter().map(|g| (g.id, g)).collect(),
        Err(e) => return Err(failure(e)),
    };
    let mut candidates = match (&spec.cloud_name, &spec.group) {
        (Some(name), _) => match api.db.subcloud(name).await {
            Ok(s) => {
                if s.management != Management::Managed {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("Subcloud {} is not managed", s.name),
                    ));
                }
                if s.availability != Availability::Online {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("Subcloud {} is offline", s.name),
                    ));
                }
                vec![s]
            }
            Err(e) => return Err(failure(e)),
        },
        (None, Some(group)) => match api.db.group_subclouds(group).await {
            Ok(list) => list,
            Err(e) => return Err(failure(e)),
        },
        (None, None) => match api.db.subclouds().await {
            Ok(list) => list,
            Err(e) => return Err(failure(e)),
        },
    };
    candidates.retain(|s| s.management == Management::Managed);
    candidates.sort_by_key(|s| (s.group_id, s.id));
    let mut skipped = Vec::new();
    let mut chosen = Vec::new();
    for s in candidates {
        if s.availability != Availability::Online {
            skipped.push((s.name.clone(), format!("offline: {}", s.sync_detail)));
            continue;
        }
        let Some(group) = groups.get(&s.group_id).cloned() else {
            continue;
        };
        chosen.push((s, group));
    }
    if chosen.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "No subclouds to update: none is managed and online in the strategy's scope".into(),
        ));
    }
    Ok((chosen, skipped))
}

/// `POST /v1.0/sw-update-strategy`: creates the strategy (or, with `dry-run`, says what it
/// would do).
pub(crate) async fn create(State(api): State<Api>, bytes: Bytes) -> Response {
    let (spec, dry_run) = match parse_create(&bytes) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let (chosen, skipped) = match scope(&api, &spec).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let stages = plan_stages(&chosen, &spec);
    let skipped_json: Vec<Value> = skipped
        .iter()
        .map(|(cloud, reason)| json!({"cloud": cloud, "reason": reason}))
        .collect();
    if dry_run {
        return dry_run_answer(&api, &spec, &chosen, &stages, skipped_json).await;
    }
    match api.db.create_strategy(&spec, &stages).await {
        Ok(s) => {
            tracing::info!(
                target: "audit",
                "subcloud patch strategy created: {} subclouds in {} stages",
                stages.len(),
                stages.iter().map(|(_, st)| *st).max().unwrap_or(0)
            );
            let steps = api.db.steps().await.unwrap_or_default();
            let mut body = strategy_json(&s, &steps);
            body["skipped-subclouds"] = Value::Array(skipped_json);
            axum::Json(body).into_response()
        }
        Err(e) => failure(e),
    }
}

/// What a strategy would do: per subcloud, the patches it would be sent, applied and
/// removed and the bytes to transfer; the stages; and the predicted duration from the
/// subcloud steps this system controller has timed before.
async fn dry_run_answer(
    api: &Api,
    spec: &StrategySpec,
    chosen: &[(Subcloud, Group)],
    stages: &[(i64, i64)],
    skipped: Vec<Value>,
) -> Response {
    let ours = match crate::audit::patches_of(&api.reference, "the system controller").await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let wanted: Vec<String> = ours
        .iter()
        .filter(|(_, s)| matches!(s.as_str(), "Applied" | "Committed"))
        .map(|(id, _)| id.clone())
        .collect();
    let from = match client_for(&api.reference, "the system controller", Some(QUERY_TIMEOUT)) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let mut sizes = BTreeMap::new();
    for id in &wanted {
        match patch_file_size(&api.reference, &from, id).await {
            Ok(n) => {
                sizes.insert(id.clone(), n);
            }
            Err(e) => return error(StatusCode::BAD_GATEWAY, e),
        }
    }
    let mut accesses = Vec::new();
    for (s, _) in chosen {
        match api.db.access(s.id).await {
            Ok(a) => accesses.push((s.clone(), a)),
            Err(e) => return failure(e),
        }
    }
    let stage_of: BTreeMap<i64, i64> = stages.iter().copied().collect();
    let plans: Vec<Value> = futures_util::stream::iter(accesses)
        .map(|(s, access)| {
            let (wanted, sizes) = (&wanted, &sizes);
            let stage = stage_of.get(&s.id).copied().unwrap_or(0);
            async move {
                let theirs = match Remote::new(&access, &s.name, QUERY_TIMEOUT) {
                    Ok(r) => r.patches().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match theirs {
                    Err(why) => json!({"cloud": s.name, "stage": stage, "error": why}),
                    Ok(theirs) => {
                        let upload: Vec<&String> = wanted
                            .iter()
                            .filter(|id| !theirs.contains_key(*id))
                            .collect();
                        let apply: Vec<&String> = wanted
                            .iter()
                            .filter(|id| {
                                !theirs.get(*id).is_some_and(|st| {
                                    matches!(st.as_str(), "Applied" | "Committed")
                                })
                            })
                            .collect();
                        let remove: Vec<&String> = theirs
                            .iter()
                            .filter(|(id, st)| st.as_str() == "Applied" && !wanted.contains(id))
                            .map(|(id, _)| id)
                            .collect();
                        let bytes: u64 = upload.iter().filter_map(|id| sizes.get(*id)).sum();
                        json!({
                            "cloud": s.name, "stage": stage, "upload": upload, "apply": apply,
                            "remove": remove, "bytes": bytes,
                        })
                    }
                }
            }
        })
        .buffered(64)
        .collect()
        .await;
    let total_bytes: u64 = plans.iter().filter_map(|p| p["bytes"].as_u64()).sum();
    let stage_count = stages.iter().map(|(_, st)| *st).max().unwrap_or(0);
    let typical = match api.db.typical_step_seconds().await {
        Ok(t) => t,
        Err(e) => return failure(e),
    };
    let (predicted, basis) = match typical {
        Some(secs) => (
            json!(secs * stage_count),
            format!(
                "{stage_count} stages × {secs} s, the median time of a subcloud's step here so far"
            ),
        ),
        None => (
            Value::Null,
            "unknown: no subcloud step has completed on this system controller yet".to_owned(),
        ),
    };
    axum::Json(json!({
        "dry-run": {
            "type": "patch",
            "subcloud-apply-type": spec.subcloud_apply_type.map(ApplyType::as_str),
            "max-parallel-subclouds": spec.max_parallel_subclouds,
            "total-subclouds": stages.len(),
            "total-stages": stage_count,
            "bytes-to-transfer": total_bytes,
            "predicted-duration-seconds": predicted,
            "predicted-duration-basis": basis,
            "subclouds": plans,
            "skipped-subclouds": skipped,
        }
    }))
    .into_response()
}

/// `GET /v1.0/sw-update-options`.
pub(crate) async fn list_options(State(api): State<Api>) -> Response {
    match api.db.options_list().await {
        Ok(list) => axum::Json(json!({
            "sw-update-options": list.iter().map(|o| o.to_json()).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}

/// The subcloud an options path names (none: `SystemController`, the default).
async fn options_cloud(api: &Api, reference: &str) -> Result<Option<String>, Response> {
    if reference == "SystemController" || reference == crate::sw_update::DEFAULT_OPTIONS_NAME {
        return Ok(None);
    }
    match api.db.subcloud(reference).await {
        Ok(s) => Ok(Some(s.name)),
        Err(e) => Err(failure(e)),
    }
}

/// `GET /v1.0/sw-update-options/<subcloud|SystemController>`.
pub(crate) async fn show_options(
    State(api): State<Api>,
    Path(reference): Path<String>,
) -> Response {
    let cloud = match options_cloud(&api, &reference).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let shown = match &cloud {
        None => api.db.options_for(None).await,
        Some(c) => match api.db.own_options(c).await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(DbError::NotFound(format!(
                "No options found for subcloud {c}"
            ))),
            Err(e) => Err(e),
        },
    };
    match shown {
        Ok(o) => axum::Json(o.to_json()).into_response(),
        Err(e) => failure(e),
    }
}

/// `POST /v1.0/sw-update-options/<subcloud|SystemController>`.
pub(crate) async fn update_options(
    State(api): State<Api>,
    Path(reference): Path<String>,
    bytes: Bytes,
) -> Response {
    let cloud = match options_cloud(&api, &reference).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let obj = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "request body must be a JSON object".into(),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let parsed = (|| -> Result<OptionsUpdate, String> {
        let parse = |name: &str| text(&obj, name);
        Ok(OptionsUpdate {
            storage_apply_type: parse("storage-apply-type")?
                .map(|v| v.parse().map_err(|e: crate::model::BadValue| e.to_string()))
                .transpose()?,
            worker_apply_type: parse("worker-apply-type")?
                .map(|v| v.parse().map_err(|e: crate::model::BadValue| e.to_string()))
                .transpose()?,
            max_parallel_workers: int(&obj, "max-parallel-workers", 2..=100)?,
            alarm_restriction_type: parse("alarm-restriction-type")?
                .map(|v| v.parse().map_err(|e: crate::model::BadValue| e.to_string()))
                .transpose()?,
            default_instance_action: parse("default-instance-action")?
                .map(|v| v.parse().map_err(|e: crate::model::BadValue| e.to_string()))
                .transpose()?,
        })
    })();
    let update = match parsed {
        Ok(u) => u,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match api.db.update_options(cloud.as_deref(), update).await {
        Ok(o) => axum::Json(o.to_json()).into_response(),
        Err(e) => failure(e),
    }
}

/// `DELETE /v1.0/sw-update-options/<subcloud>`.
pub(crate) async fn delete_options(
    State(api): State<Api>,
    Path(reference): Path<String>,
) -> Response {
    let cloud = match options_cloud(&api, &reference).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(cloud) = cloud else {
        return error(
            StatusCode::BAD_REQUEST,
            "the default options cannot be deleted: update them instead".into(),
        );
    };
    match api.db.delete_options(&cloud).await {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(e) => failure(e),
    }
}
