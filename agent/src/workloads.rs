//! The workload hook: one operator-configured command that lists the host's workloads
//! (`<hook> list`, a JSON array on stdout) and acts on them (`<hook> stop|start|migrate NAME`,
//! `<hook> disable-services|enable-services HOST`; exit status 0 means done). Arguments are
//! passed as argv, never through the shell's parser.

use std::time::Duration;

use host_state::protocol::{Workload, WorkloadVerb};

/// Largest listing accepted.
const MAX_LIST_BYTES: usize = 4 << 20;
/// How long a listing may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an action may take (a migration can be slow).
const ACTION_TIMEOUT: Duration = Duration::from_secs(1800);

async fn run(hook: &str, args: &[&str], timeout: Duration) -> Result<Vec<u8>, String> {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{hook} \"$@\""))
        .arg("workload-hook")
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| format!("workload hook {} timed out after {timeout:?}", args[0]))?
        .map_err(|e| format!("cannot run the workload hook: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "workload hook {} failed ({}): {}",
            args.join(" "),
            output.status,
            stderr.trim().chars().take(500).collect::<String>()
        ));
    }
    Ok(output.stdout)
}

/// The workloads the hook lists.
pub(crate) async fn list(hook: &str) -> Result<Vec<Workload>, String> {
    let out = run(hook, &["list"], LIST_TIMEOUT).await?;
    if out.len() > MAX_LIST_BYTES {
        return Err(format!(
            "the workload list is larger than {MAX_LIST_BYTES} bytes"
        ));
    }
    serde_json::from_slice(&out)
        .map_err(|e| format!("the workload hook's list is not a JSON array of workloads: {e}"))
}

/// Runs one action.
pub(crate) async fn act(hook: &str, verb: WorkloadVerb, target: &str) -> Result<(), String> {
    run(hook, &[verb.as_str(), target], ACTION_TIMEOUT)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_and_acts_with_arguments_passed_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook.sh");
        std::fs::write(
            &hook,
            "#!/bin/sh\ncase \"$1\" in\n list) echo '[{\"name\":\"vm 1\",\"locked\":true}]';;\n \
             *) printf '%s|%s' \"$1\" \"$2\" > \"$(dirname \"$0\")/last\";;\nesac\n",
        )
        .unwrap();
        let hook = format!("sh {}", hook.display());
        let listed = list(&hook).await.unwrap();
        assert_eq!(listed[0].name, "vm 1");
        assert!(listed[0].locked);
        act(&hook, WorkloadVerb::Stop, "vm 1; rm -rf /")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("last")).unwrap(),
            "stop|vm 1; rm -rf /"
        );
    }

    #[tokio::test]
    async fn failures_and_bad_listings_are_errors() {
        assert!(list("false").await.unwrap_err().contains("failed"));
        assert!(list("echo nope #").await.unwrap_err().contains("JSON"));
        assert!(act("exit 3 #", WorkloadVerb::Start, "x").await.is_err());
    }
}
