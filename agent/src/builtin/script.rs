//! Running a package's scriptlets as rpm runs them: inside the root (chroot when it is not
//! `/`), the body in a temporary file under the root's `/var/tmp`, the interpreter from the
//! package (`/bin/sh` by default), `$1` the instance count, working directory `/`, rpm's
//! `PATH`, and nothing else of the agent's environment (its token stays out).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::package::Script;

/// rpm's `%_install_script_path`.
const SCRIPT_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/X11R6/bin";

/// How long one scriptlet may run before it is killed (with what it started) and counted as
/// failed.
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long the output of a finished scriptlet is still read: a daemon it started in the
/// background keeps its pipes open, and the install must not wait for the daemon.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Resolves `path` (absolute, as seen inside the root) to the file it names on this host,
/// following symlinks inside the root; `None` when it does not exist.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = path
        .split('/')
        .rev()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let candidate = current.join(&part);
        let meta = std::fs::symlink_metadata(root.join(&candidate)).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(root.join(&candidate)).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                current = PathBuf::new();
            }
            pending.extend(
                target
                    .split('/')
                    .rev()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        } else {
            current = candidate;
        }
    }
    Some(root.join(current))
}

/// Why a scriptlet cannot run in `root`, checked before anything changes; `None` if it can.
pub(crate) fn cannot_run(root: &Path, script: &Script) -> Option<String> {
    let interpreter = script.prog.first().map(String::as_str).unwrap_or("/bin/sh");
    if interpreter.starts_with('<') {
        return Some(format!(
            "it is written for rpm's embedded {interpreter} interpreter, which only rpm itself \
             runs; install this package with --installer rpm"
        ));
    }
    if !interpreter.starts_with('/') {
        return Some(format!(
            "its interpreter {interpreter:?} is not an absolute path"
        ));
    }
    match resolve_in_root(root, interpreter) {
        Some(file)
            if file
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) =>
        {
            None
        }
        _ => Some(format!(
            "its interpreter {interpreter} does not exist or is not executable in the root {}",
            root.display()
        )),
    }
}

/// Runs `script` with `$1 = arg`. `Err` carries the exit status and the tail of its output.
pub(crate) fn run(root: &Path, script: &Script, arg: u32) -> Result<(), String> {
    let chrooted = root != Path::new("/");
    let mut temp = None;
    let mut argv: Vec<String> = script.prog.clone();
    if argv.is_empty() {
        argv.push("/bin/sh".into());
    }
    if let Some(body) = &script.body {
        let tmp_dir = root.join("var/tmp");
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| format!("cannot create {}: {e}", tmp_dir.display()))?;
        let mut file = tempfile::Builder::new()
            .prefix("rpm-tmp.")
            .rand_bytes(6)
            .tempfile_in(&tmp_dir)
            .map_err(|e| format!("cannot write the script under {}: {e}", tmp_dir.display()))?;
        file.write_all(body.as_bytes())
            .map_err(|e| format!("cannot write the script: {e}"))?;
        let name = file
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        argv.push(format!("/var/tmp/{name}"));
        temp = Some(file);
    }
    argv.push(arg.to_string());
    let mut command = if chrooted {
        let mut c = Command::new("chroot");
        c.arg(root).args(&argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).current_dir("/");
        c
    };
    command
        .env_clear()
        .env("PATH", SCRIPT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: a timeout kills whatever the script started too.
        .process_group(0);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {} ({e})",
            if chrooted { "chroot" } else { &argv[0] }
        )
    })?;
    // Output is collected by threads so a chatty script never blocks on a full pipe.
    let (sender, collected) = mpsc::channel();
    for (n, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let sender = sender.clone();
        std::thread::spawn(move || sender.send((n, read_all(pipe))));
    }
    drop(sender);
    let status = match child.wait_timeout(SCRIPT_TIMEOUT) {
        Ok(Some(status)) => Ok(status),
        Ok(None) => {
            let group = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "it ran longer than {} s and was killed",
                SCRIPT_TIMEOUT.as_secs()
            ))
        }
        Err(e) => Err(e.to_string()),
    };
    // stdout, then stderr: what has come once the pipes close, or by the end of the grace.
    let mut parts = [String::new(), String::new()];
    let until = Instant::now() + OUTPUT_GRACE;
    while let Ok((n, text)) =
        collected.recv_timeout(until.saturating_duration_since(Instant::now()))
    {
        parts[n] = text;
    }
    let text = parts.concat();
    drop(temp);
    let status = status?;
    if status.success() {
        if !text.trim().is_empty() {
            tracing::info!("scriptlet output: {}", text.trim());
        }
        return Ok(());
    }
    let tail = output_tail(&text, 400).trim();
    Err(format!(
        "it failed ({status}){}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    ))
}

/// The last `chars` characters of a program's output (where its error usually is).
pub(crate) fn output_tail(text: &str, chars: usize) -> &str {
    match text.char_indices().rev().nth(chars.saturating_sub(1)) {
        Some((start, _)) => &text[start..],
        None => text,
    }
}

/// Output kept of a scriptlet: its last 64 KiB (a chatty script never grows the agent).
const OUTPUT_KEPT: usize = 64 * 1024;

fn read_all(pipe: Option<Box<dyn std::io::Read + Send>>) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    if let Some(mut p) = pipe {
        while let Ok(n) = p.read(&mut chunk) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&chunk[..n]);
            if kept.len() > 2 * OUTPUT_KEPT {
                kept.drain(..kept.len() - OUTPUT_KEPT);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_output_keeps_whole_characters() {
        assert_eq!(output_tail("abcdef", 3), "def");
        assert_eq!(output_tail("ab", 3), "ab");
        assert_eq!(output_tail("xé€", 2), "é€");
    }

    /// A scriptlet that starts a daemon in the background (which keeps its output pipes open)
    /// is done when the script exits: the install does not wait for the daemon to end.
    #[test]
    fn a_background_process_the_script_started_is_not_waited_for() {
        use patch_format::testing::roots;
        let busybox = roots::static_busybox()
            .expect("busybox-static is installed (./scripts/test.sh installs it)");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        roots::give_shell(root, &busybox).unwrap();
        // The shell gives a background job /dev/null as its input.
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/null"), "").unwrap();
        let script = Script {
            prog: vec!["/bin/sh".into()],
            body: Some("/bin/busybox sleep 600 &\necho $! > /daemon.pid\necho started\n".into()),
        };
        run(root, &script, 1).unwrap();
        let pid: i32 = std::fs::read_to_string(root.join("daemon.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Still running (not gone, not a zombie): run() returned without waiting for it.
        let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let alive = state
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| !s.trim().starts_with('Z'));
        let _ = Command::new("kill").arg(pid.to_string()).status();
        assert!(alive, "the background process {pid} had already ended");
    }

    #[test]
    fn interpreters_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/busybox"), "").unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // Absolute targets are read inside the root, not on the agent's host.
        std::os::unix::fs::symlink("/usr/bin/busybox", root.join("bin/sh")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/bin/sh"),
            Some(root.join("usr/bin/busybox"))
        );
        let sh = Script {
            prog: vec!["/bin/sh".into()],
            body: Some("true".into()),
        };
        assert_eq!(cannot_run(root, &sh), None);
        let python = Script {
            prog: vec!["/usr/bin/python3".into()],
            body: None,
        };
        assert!(
            cannot_run(root, &python)
                .unwrap()
                .contains("/usr/bin/python3")
        );
        let lua = Script {
            prog: vec!["<lua>".into()],
            body: None,
        };
        assert!(cannot_run(root, &lua).unwrap().contains("--installer rpm"));
        std::os::unix::fs::symlink("loop", root.join("bin/loop")).unwrap();
        assert_eq!(resolve_in_root(root, "/bin/loop"), None);
    }
}
