//! SIGKILL the agent at random moments during installs: after it restarts, the root is
//! byte-identical to before the install or to after it — never in between — the host reports
//! install-failed or idle accordingly, and a retry succeeds.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    controller: Child,
    url: String,
    agent_url: String,
    agent: Option<Child>,
    http: reqwest::blocking::Client,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(a) = &mut self.agent {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = self.controller.kill();
        let _ = self.controller.wait();
    }
}

impl Env {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn agent_cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sw-patch-agent"));
        c.args([
            "--controller",
            &self.agent_url,
            "--hostname",
            "compute-0",
            "--personality",
            "worker",
        ])
        .args(["--release", "19.01", "--heartbeat", "1"])
        .arg("--token-file")
        .arg(self.dir.path().join("token"))
        .arg("--root")
        .arg(self.root())
        .env("STX_PATCH_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        c
    }

    fn start_agent(&mut self) {
        self.agent = Some(self.agent_cmd().spawn().unwrap());
    }

    fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill().unwrap();
            a.wait().unwrap();
        }
    }

    fn call(&self, path: &str) -> Value {
        self.http
            .post(format!("{}/v1/{path}", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn host(&self) -> Value {
        let v: Value = self
            .http
            .get(format!("{}/v1/query_hosts", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["data"]
            .as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until the host reports and is not installing; returns its entry.
    fn settled(&self) -> Value {
        let start = Instant::now();
        loop {
            let h = self.host();
            if !h.is_null() && h["state"] != "installing" {
                return h;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "host never settled: {h}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn install(&self) -> Value {
        let r = self.call("host_install_async/compute-0");
        assert_eq!(r["error"], "", "{r}");
        self.settled()
    }
}

#[test]
fn sigkill_during_installs_never_leaves_a_half_installed_root() {
    let (dir, key) = common::work_dir(&["feed", "rpms", "patches", "root"]);
    let d = dir.path();
    std::fs::write(d.join("token"), "t0ken\n").unwrap();
    // A base load of 4 packages with 40 files each; the patch upgrades all of them.
    let files = |version: &str| -> Vec<TestRpm> {
        (0..4)
            .map(|p| {
                let mut rpm = TestRpm::new(&format!("pkg{p}"), "1.0", version);
                for f in 0..40 {
                    rpm = rpm.file(
                        &format!("/opt/pkg{p}/f{f}"),
                        format!("pkg{p} file {f} version {version}\n").repeat(50),
                    );
                }
                rpm
            })
            .collect()
    };
    for rpm in files("1") {
        rpm.build(&d.join("feed"));
    }
    let (controller, addrs) = common::spawn_with_addresses(
        common::controller()
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--keyring")
            .arg(d.join("keyring"))
            .args([
                "--release",
                "19.01",
                "--listen",
                "127.0.0.1:0",
                "--agent-listen",
                "127.0.0.1:0",
            ])
            .arg("--agent-token-file")
            .arg(d.join("token"))
            .env("STX_PATCH_LOG", "error"),
    );
    let mut env = Env {
        url: format!("http://{}", addrs["api"].as_str().unwrap()),
        agent_url: format!("http://{}", addrs["agent_api"].as_str().unwrap()),
        dir,
        controller,
        agent: None,
        http: reqwest::blocking::Client::new(),
    };
    let r = env.call(&format!(
        "init_release/19.01?feed={}",
        env.dir.path().join("feed").display()
    ));
    assert_eq!(r["error"], "");
    assert!(
        env.agent_cmd()
            .arg("--install-local")
            .status()
            .unwrap()
            .success()
    );
    let before = common::root_snapshot(&env.root());

    let mut m = PatchMetadata::new("P1", "19.01");
    m.status = Status::Released;
    m.reboot_required = false;
    let mut b = PatchBuilder::new(m);
    for rpm in files("2") {
        b.add_rpm(&rpm.build(&env.dir.path().join("rpms")), &[])
            .unwrap();
    }
    let (p1, _) = b
        .write_to_dir(&env.dir.path().join("patches"), &key)
        .unwrap();
    let part = reqwest::blocking::multipart::Part::bytes(std::fs::read(&p1).unwrap())
        .file_name("P1.patch");
    let r: Value = env
        .http
        .post(format!("{}/v1/upload", env.url))
        .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["error"], "", "{r}");

    // One clean install to learn the "after" root and how long an install takes.
    env.start_agent();
    env.settled();
    assert_eq!(env.call("apply/P1")["error"], "");
    let t = Instant::now();
    assert_eq!(env.install()["state"], "idle");
    let took = t.elapsed();
    let after = common::root_snapshot(&env.root());
    assert_ne!(before, after);

    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("agent crash test seed {seed}, one install takes {took:?}");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let (mut landed_before, mut landed_after) = (0, 0);
    for round in 0..55 {
        // Point the repo at the other state, so the next install has work to do.
        let now = common::root_snapshot(&env.root());
        let action = if now == after {
            "remove/P1"
        } else {
            "apply/P1"
        };
        let r = env.call(action);
        assert_eq!(r["error"], "", "round {round} {action}: {r}");
        let r = env.call("host_install_async/compute-0");
        assert_eq!(r["error"], "", "{r}");
        std::thread::sleep(Duration::from_micros(rand(
            took.as_micros() as u64 * 3 / 2 + 1,
        )));
        env.kill_agent();
        env.start_agent();
        let host = env.settled();
        let root = common::root_snapshot(&env.root());
        let target = if action == "apply/P1" {
            &after
        } else {
            &before
        };
        if root == *target {
            landed_after += 1;
            assert!(
                host["state"] == "idle" || host["state"] == "install-failed",
                "round {round}: {host}"
            );
        } else {
            assert!(
                root == before || root == after,
                "round {round}: the root is half installed"
            );
            landed_before += 1;
            assert!(
                host["state"] == "install-failed" || host["state"] == "idle",
                "round {round}: {host}"
            );
        }
    }
    eprintln!("{landed_before} kills left the old root, {landed_after} the new one");
    assert!(
        landed_before > 0,
        "no kill landed before an install finished"
    );
    // A retry succeeds.
    let host = env.install();
    assert_eq!(host["state"], "idle", "{host}");
    assert_eq!(host["patch_current"], true, "{host}");
}
