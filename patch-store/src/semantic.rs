//! Semantic check scripts: `semantics/<action>/<ID>`, run as `<script> -p ID=state …`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use host_state::PatchState;
use patch_format::SemanticAction;

use crate::StoreError;

/// How long a semantic check may run when the caller sets no limit.
pub const DEFAULT_SEMANTIC_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the patch's `action` script if it has one; a non-zero exit refuses the operation
/// with the original's message and the script's output. A script still running after
/// `timeout` is killed and refuses the operation too: it runs while the store is held.
pub(crate) fn run_semantic_checks(
    root: &Path,
    action: SemanticAction,
    id: &str,
    patch_states: &BTreeMap<String, PatchState>,
    timeout: Duration,
) -> Result<(), StoreError> {
    let script = root.join("semantics").join(action.as_str()).join(id);
    if !script.is_file() {
        return Ok(());
    }
    let mut cmd = Command::new(&script);
    for (patch, state) in patch_states {
        cmd.arg("-p").arg(format!("{patch}={}", state.as_str()));
    }
    // A group of its own, so a check that never ends is stopped with everything it started
    // (a child left behind would hold the pipes, and the store's lock, open).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_retrying_busy(&mut cmd).map_err(StoreError::io(&script))?;
    // Both pipes drain on their own threads, so a chatty script never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                // Bound what is kept: the first 64 KiB.
                let _ = pipe.by_ref().take(64 * 1024).read_to_end(&mut text);
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(StoreError::io(&script))? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut text = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&stderr.join().unwrap_or_default()));
    // Bound what goes back to the client.
    let text: String = text.chars().take(4000).collect();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(_) => Err(StoreError::refused(format!(
            "Semantic check failed for {id}:\n{}",
            text.trim_end()
        ))),
        None => Err(StoreError::refused(format!(
            "Semantic check for {id} did not finish within {} s and was stopped (semantic_check_timeout_secs):\n{}",
            timeout.as_secs_f64(),
            text.trim_end()
        ))),
    }
}

/// Spawns `cmd`, trying again for a while when the script is "busy" (ETXTBSY): a file just
/// written can still be open for writing in a child another thread forked meanwhile, until
/// that child execs.
fn spawn_retrying_busy(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(root: &Path, body: &str) {
        let dir = root
            .join("semantics")
            .join(SemanticAction::PreApply.as_str());
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("P1");
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_hung_semantic_check_is_stopped_and_refuses() {
        let root = tempfile::tempdir().unwrap();
        // The sleep is a child of the script, and holds its output pipes.
        script(
            root.path(),
            "#!/bin/sh\necho checking\nsleep 60\necho never\n",
        );
        let started = Instant::now();
        let err = run_semantic_checks(
            root.path(),
            SemanticAction::PreApply,
            "P1",
            &BTreeMap::new(),
            Duration::from_millis(200),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("did not finish"), "{text}");
        assert!(text.contains("checking"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the check's child kept it waiting"
        );
    }

    #[test]
    fn a_failing_semantic_check_refuses_with_its_output() {
        let root = tempfile::tempdir().unwrap();
        script(root.path(), "#!/bin/sh\necho \"$@\" >&2\nexit 3\n");
        let states = BTreeMap::from([("P1".to_owned(), PatchState::Available)]);
        let err = run_semantic_checks(
            root.path(),
            SemanticAction::PreApply,
            "P1",
            &states,
            DEFAULT_SEMANTIC_TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Semantic check failed for P1:\n-p P1=Available"
        );
    }
}
