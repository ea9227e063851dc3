//! Running an operator's script (a restart script, a health check) with a time limit: in a
//! process group of its own, so at the limit it is stopped with everything it started.

/// How a script with a time limit ended.
pub(super) enum ScriptRun {
    /// It exited (successfully or not).
    Finished(std::process::Output),
    /// It could not be started.
    Failed(std::io::Error),
    /// It was still running at the limit and was killed.
    TimedOut,
}

/// Runs `command` to completion or until `limit`, when it is killed (the child dies with the
/// dropped future).
pub(super) async fn run_with_limit(
    mut command: tokio::process::Command,
    limit: std::time::Duration,
) -> ScriptRun {
    // A group of its own, so a script that never ends is stopped with everything it
    // started (a child left behind would hold the output pipes open).
    command
        .kill_on_drop(true)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // A script just written may still be open for writing in a child another thread forked
    // meanwhile, until that child execs ("text file busy"): try again for a while.
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    let child = loop {
        match command.spawn() {
            Ok(child) => break child,
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => return ScriptRun::Failed(e),
        }
    };
    let group = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(output)) => ScriptRun::Finished(output),
        Ok(Err(e)) => ScriptRun::Failed(e),
        Err(_) => {
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            ScriptRun::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_script_past_its_limit_is_stopped_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", pid_file.display()));
        let started = std::time::Instant::now();
        assert!(matches!(
            run_with_limit(command, std::time::Duration::from_millis(500)).await,
            ScriptRun::TimedOut
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        let child: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie waiting for whoever adopted it: not sleeping on.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit(") ").next().map(|r| r.chars().next()));
            match state {
                None | Some(Some('Z')) => break,
                _ if std::time::Instant::now() > deadline => {
                    panic!("the script's child {child} still runs")
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let mut command = tokio::process::Command::new("sh");
        command.arg("-c").arg("echo done");
        match run_with_limit(command, std::time::Duration::from_secs(30)).await {
            ScriptRun::Finished(output) => assert_eq!(output.stdout, b"done\n"),
            _ => panic!("a quick script finishes"),
        }
    }
}
