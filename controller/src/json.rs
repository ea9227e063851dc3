//! The original API's JSON shapes (reference §6 and §10).

use patch_store::{Outcome, PatchRecord};
use serde_json::{Map, Value, json};

/// Lines joined the original's way: each followed by a newline.
fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

/// `{"info", "warning", "error"}` of a successful operation.
pub(crate) fn outcome(o: &Outcome) -> Value {
    json!({"info": lines(&o.info), "warning": lines(&o.warning), "error": ""})
}

/// `{"info", "warning", "error"}` of a refused or failed operation.
pub(crate) fn error(message: &str) -> Value {
    json!({"info": "", "warning": "", "error": format!("{}\n", message.trim_end())})
}

/// `{"info", "warning", "error"}` of an operation that says one line either way.
pub(crate) fn info_or_error<E: std::fmt::Display>(result: Result<String, E>) -> Value {
    match result {
        Ok(info) => json!({"info": info, "warning": "", "error": ""}),
        Err(e) => error(&e.to_string()),
    }
}

/// The metadata dict the original keeps per patch (in `pd` and `show`).
pub(crate) fn metadata_dict(record: &PatchRecord, patch_state: host_state::PatchState) -> Value {
    let m = &record.metadata;
    let yn = |b: bool| if b { "Y" } else { "N" };
    let mut map = Map::new();
    map.insert("status".into(), json!(m.status.as_str()));
    map.insert("unremovable".into(), json!(yn(m.unremovable)));
    map.insert("sw_version".into(), json!(m.sw_version));
    map.insert("summary".into(), json!(m.summary));
    map.insert("description".into(), json!(m.description));
    map.insert("install_instructions".into(), json!(m.install_instructions));
    map.insert("warnings".into(), json!(m.warnings));
    map.insert("reboot_required".into(), json!(yn(m.reboot_required)));
    map.insert(
        "apply_active_release_only".into(),
        json!(yn(m.apply_active_release_only)),
    );
    map.insert("requires".into(), json!(m.requires));
    map.insert("repostate".into(), json!(record.repo_state.as_str()));
    map.insert("patchstate".into(), json!(patch_state.as_str()));
    for (personality, packages) in &m.personalities {
        map.insert(format!("personality-{personality}"), json!(packages));
    }
    if let Some(script) = &m.restart_script {
        map.insert("restart_script".into(), json!(script.name));
    }
    Value::Object(map)
}
