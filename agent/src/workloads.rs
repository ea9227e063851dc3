//! The workload hook: one operator-configured command that lists the host's workloads
//! (`<hook> list`, a JSON array on stdout) and acts on them (`<hook> stop|start|migrate NAME`,
//! `<hook> disable-services|enable-services HOST`; exit status 0 means done). Arguments are
//! passed as argv, never through the shell's parser.

use std::time::Duration;

use host_state::protocol::{Workload, WorkloadVerb};

/// Largest output of the hook accepted (a listing of thousands of workloads fits).
const MAX_OUTPUT_BYTES: usize = 4 << 20;
/// How long a listing may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an action may take (a migration can be slow).
const ACTION_TIMEOUT: Duration = Duration::from_secs(1800);

/// Runs the hook; returns its stdout, of which at most [`MAX_OUTPUT_BYTES`] are kept (a
/// longer output is an error, and the hook is not waited on past its timeout).
async fn run(hook: &str, args: &[&str], timeout: Duration) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{hook} \"$@\""))
        .arg("workload-hook")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the workload hook: {e}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = async {
        // Both pipes are read at once (a hook filling one must not block on the other); a
        // hook writing past the limit is killed rather than waited for.
        let read_out = async {
            let mut out = Vec::new();
            if let Some(s) = stdout {
                s.take(MAX_OUTPUT_BYTES as u64 + 1)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if out.len() > MAX_OUTPUT_BYTES {
                let _ = child.start_kill();
            }
            Ok::<_, String>(out)
        };
        let read_err = async {
            let mut err = Vec::new();
            if let Some(mut s) = stderr {
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    // Kept up to 4 KiB; the rest is drained so the hook never blocks on it.
                    let room = 4096usize.saturating_sub(err.len());
                    err.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
            Ok::<_, String>(err)
        };
        let (out, err) = tokio::join!(read_out, read_err);
        let (out, err) = (out?, err?);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, out, err))
    };
    let (status, out, err) = tokio::time::timeout(timeout, finished)
        .await
        .map_err(|_| format!("workload hook {} timed out after {timeout:?}", args[0]))?
        .map_err(|e| format!("workload hook {}: {e}", args[0]))?;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(format!(
            "workload hook {} wrote more than {MAX_OUTPUT_BYTES} bytes",
            args[0]
        ));
    }
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        return Err(format!(
            "workload hook {} failed ({status}): {}",
            args.join(" "),
            stderr.trim().chars().take(500).collect::<String>()
        ));
    }
    Ok(out)
}

/// The workloads the hook lists.
pub(crate) async fn list(hook: &str) -> Result<Vec<Workload>, String> {
    let out = run(hook, &["list"], LIST_TIMEOUT).await?;
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
        // Endless output is cut off, not buffered.
        let err = list("yes #").await.unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
