//! Semantic check scripts: `semantics/<action>/<ID>`, run as `<script> -p ID=state …`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use host_state::PatchState;
use patch_format::SemanticAction;

use crate::StoreError;

/// Runs the patch's `action` script if it has one; a non-zero exit refuses the operation
/// with the original's message and the script's output.
pub(crate) fn run_semantic_checks(
    root: &Path,
    action: SemanticAction,
    id: &str,
    patch_states: &BTreeMap<String, PatchState>,
) -> Result<(), StoreError> {
    let script = root.join("semantics").join(action.as_str()).join(id);
    if !script.is_file() {
        return Ok(());
    }
    let mut cmd = Command::new(&script);
    for (patch, state) in patch_states {
        cmd.arg("-p").arg(format!("{patch}={}", state.as_str()));
    }
    let output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(StoreError::io(&script))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    // Bound what goes back to the client.
    let text: String = text.chars().take(4000).collect();
    Err(StoreError::refused(format!(
        "Semantic check failed for {id}:\n{}",
        text.trim_end()
    )))
}
