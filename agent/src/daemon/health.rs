//! Health checks after an install, as greenboot has them: every executable in `required.d/`
//! must pass, one in `wanted.d/` may fail with a warning. Each runs with the root in
//! `STX_PATCH_ROOT`, in name order, killed (with what it started) at the time limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::script_run::{ScriptRun, run_with_limit};

/// What the checks found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every check passed (or there were none).
    Passed,
    /// Wanted checks failed: what they said.
    Warned(String),
    /// A required check failed: what it said.
    Failed(String),
}

/// Runs the checks under `dir` against `root`.
pub(super) async fn run_checks(dir: &Path, root: &Path, limit: Duration) -> Verdict {
    let mut warnings = Vec::new();
    for (kind, required) in [("required.d", true), ("wanted.d", false)] {
        for check in executables(&dir.join(kind)) {
            let name = format!(
                "{kind}/{}",
                check.file_name().unwrap_or_default().to_string_lossy()
            );
            let mut command = tokio::process::Command::new(&check);
            command.env("STX_PATCH_ROOT", root).current_dir(root);
            let failure = match run_with_limit(command, limit).await {
                ScriptRun::Finished(out) if out.status.success() => continue,
                ScriptRun::Finished(out) => {
                    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&out.stderr));
                    format!(
                        "{name} failed ({}): {}",
                        out.status,
                        crate::builtin::output_tail(&text, 500).trim()
                    )
                }
                ScriptRun::Failed(e) => format!("{name} could not run: {e}"),
                ScriptRun::TimedOut => format!(
                    "{name} did not finish within {} s and was stopped",
                    limit.as_secs()
                ),
            };
            if required {
                return Verdict::Failed(failure);
            }
            warnings.push(failure);
        }
    }
    if warnings.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Warned(warnings.join("; "))
    }
}

/// The regular files in `dir`, by name (none when it does not exist).
fn executables(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn check(dir: &Path, kind: &str, name: &str, body: &str) {
        let d = dir.join(kind);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn required_checks_fail_wanted_ones_warn_and_none_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let limit = Duration::from_secs(5);
        assert_eq!(
            run_checks(dir.path(), root.path(), limit).await,
            Verdict::Passed
        );
        check(
            dir.path(),
            "wanted.d",
            "10-disk",
            "echo 'disk 91% full'; exit 1",
        );
        check(
            dir.path(),
            "required.d",
            "10-api",
            "test -f \"$STX_PATCH_ROOT/api\"",
        );
        std::fs::write(root.path().join("api"), "").unwrap();
        match run_checks(dir.path(), root.path(), limit).await {
            Verdict::Warned(w) => assert!(
                w.contains("wanted.d/10-disk failed") && w.contains("disk 91% full"),
                "{w}"
            ),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(root.path().join("api")).unwrap();
        match run_checks(dir.path(), root.path(), limit).await {
            Verdict::Failed(f) => assert!(f.contains("required.d/10-api failed"), "{f}"),
            other => panic!("{other:?}"),
        }
        check(dir.path(), "required.d", "20-hang", "sleep 60");
        std::fs::write(root.path().join("api"), "").unwrap();
        match run_checks(dir.path(), root.path(), Duration::from_millis(300)).await {
            Verdict::Failed(f) => assert!(f.contains("20-hang did not finish"), "{f}"),
            other => panic!("{other:?}"),
        }
    }
}
