//! The systemd units, checked by systemd's own `systemd-analyze`, and the daemons'
//! readiness protocol (`Type=notify`) checked on a `NOTIFY_SOCKET` of the test's own: the
//! controller says READY=1 only once every listener accepts connections, pings the watchdog
//! when asked for one, and says STOPPING=1 when told to stop.

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UNITS: &[(&str, &str)] = &[
    (
        "sw-patch-controller.service",
        env!("CARGO_BIN_EXE_sw-patch-controller"),
    ),
    (
        "sw-patch-agent.service",
        env!("CARGO_BIN_EXE_sw-patch-agent"),
    ),
];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd")
}

/// The unit, its `ExecStart` pointed at the binary this build made (`verify` checks that
/// the program exists and is executable).
fn unit_here(dir: &Path, name: &str, binary: &str) -> PathBuf {
    let text = std::fs::read_to_string(packaging().join(name)).unwrap();
    let tool = name.trim_end_matches(".service");
    let text = text.replace(&format!("/usr/bin/{tool}"), binary);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)")
}

#[test]
fn both_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (name, binary) in UNITS {
        let unit = unit_here(dir.path(), name, binary);
        let out = analyze(&["verify", "--man=no"], &unit);
        // verify exits 0 even on unknown keys: it only says so.
        assert!(out.status.success(), "{name}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{name}");
    }
}

/// The controller needs nothing but its state, configuration and the network: systemd's
/// own assessment rates its unit's exposure low (the agent, which must write the whole root
/// and reboot, cannot be).
#[test]
fn the_controller_unit_is_rated_low_exposure() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_here(dir.path(), UNITS[0].0, UNITS[0].1);
    let out = analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let level: f64 = text
        .split("Overall exposure level for sw-patch-controller.service:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(level <= 2.0, "exposure {level}: {text}");
}

/// A notify socket of the test's own, as systemd passes one to a `Type=notify` service.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next message, or panics after 20 s.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).trim().to_owned()
    }

    /// Waits for `wanted`, returning what came before it.
    fn until(&self, wanted: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let message = self.next();
            if message == wanted {
                return before;
            }
            before.push(message);
        }
    }
}

/// Runs `program args` as systemd would with `WatchdogSec=`: NOTIFY_SOCKET, WATCHDOG_USEC
/// and WATCHDOG_PID (the pid the program runs as: `sh` execs it).
fn as_a_notify_service(notify: &NotifySocket, program: &str, args: &[&str]) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "400000")
        .env("STX_PATCH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_controller_is_ready_only_once_it_accepts_connections() {
    let state = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new();
    let mut controller = as_a_notify_service(
        &notify,
        env!("CARGO_BIN_EXE_sw-patch-controller"),
        &[
            "--state-dir",
            state.path().to_str().unwrap(),
            "--release",
            "19.01",
            "--listen",
            "127.0.0.1:0",
            // Never the well-known VIM port (4545): tests run in parallel.
            "--vim-listen",
            "127.0.0.1:0",
            "--print-addresses",
        ],
    );
    let before = notify.until("READY=1");
    assert!(before.is_empty(), "{before:?}");
    // Ready: the listener it printed accepts a connection at once.
    let mut line = String::new();
    std::io::BufReader::new(controller.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addresses: serde_json::Value = serde_json::from_str(&line).unwrap();
    let api = addresses["api"].as_str().unwrap();
    std::net::TcpStream::connect(api).expect("the API accepts connections once READY=1 is sent");
    // The watchdog is pinged at half its 400 ms interval.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(notify.next(), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Told to stop, it says so.
    rustix_kill(controller.id());
    let _ = notify.until("STOPPING=1");
    assert!(controller.wait().unwrap().success());
}

#[test]
fn the_agent_is_ready_once_its_state_is_loaded() {
    let root = tempfile::tempdir().unwrap();
    let token = root.path().join("token");
    std::fs::write(&token, "agent-secret\n").unwrap();
    let notify = NotifySocket::new();
    let mut agent = as_a_notify_service(
        &notify,
        env!("CARGO_BIN_EXE_sw-patch-agent"),
        &[
            // Nobody answers there: readiness does not wait for the controller.
            "--controller",
            "http://127.0.0.1:9",
            "--token-file",
            token.to_str().unwrap(),
            "--hostname",
            "compute-0",
            "--personality",
            "worker",
            "--release",
            "19.01",
            "--root",
            root.path().to_str().unwrap(),
        ],
    );
    let _ = notify.until("READY=1");
    assert!(root.path().join("var/lib/stx-patch/agent").is_dir());
    assert_eq!(notify.next(), "WATCHDOG=1");
    rustix_kill(agent.id());
    let _ = notify.until("STOPPING=1");
    assert!(agent.wait().unwrap().success());
}

/// SIGTERM, as systemd stops a service.
fn rustix_kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}
