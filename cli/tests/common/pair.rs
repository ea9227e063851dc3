//! Two controller daemons as a pair (each with its own state directory) and real agents,
//! on loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use patch_format::testing::TestRpm;
use patch_sign::PrivateKey;
use serde_json::Value;

/// A controller pair and its agents.
pub struct Pair {
    pub dir: tempfile::TempDir,
    pub key: PrivateKey,
    controllers: [Option<Child>; 2],
    /// Listening addresses, fixed after the first start: [api, agent, vim, peer].
    addrs: [[String; 4]; 2],
    pub agents: Vec<Child>,
    /// The pair's development CA: both controllers serve TLS (the pair endpoint included,
    /// each verifying the other against it), and every client is given it.
    pub ca: tls::dev_ca::DevCa,
    /// Whether the remote listeners serve TLS (the default; `plain` for tests that put a
    /// hand-written HTTP peer in the standby's place).
    tls: bool,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in self
            .agents
            .iter_mut()
            .chain(self.controllers.iter_mut().flatten())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (the pair's endpoints must be known before either starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Files of a state directory as they matter for equality: path → (mode, content), without
/// locks, scratch space and temporaries.
pub fn state_files(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    super::tree_snapshot(dir, |rel, name| {
        rel.starts_with("tmp") || name == ".lock" || name.starts_with(".tmp")
    })
}

impl Pair {
    /// Both controllers started (controller-0 active), the release initialized; TLS on
    /// every remote listener.
    pub fn new(extra_toml: &str) -> Pair {
        Pair::start_pair(extra_toml, true)
    }

    /// [`Pair::new`] with plain HTTP between the controllers (on loopback).
    pub fn plain(extra_toml: &str) -> Pair {
        Pair::start_pair(extra_toml, false)
    }

    fn start_pair(extra_toml: &str, tls: bool) -> Pair {
        let (dir, key) = super::work_dir(&["feed", "rpms", "patches", "roots", "c0", "c1"]);
        let d = dir.path();
        std::fs::write(d.join("agent-token"), "agent-secret\n").unwrap();
        std::fs::write(d.join("peer-token"), "peer-secret\n").unwrap();
        let ca = tls::dev_ca::create(&d.join("tls"), &[]).unwrap();
        for i in 0..2 {
            std::fs::write(
                d.join(format!("c{i}.toml")),
                format!(
                    "state_dir = {:?}\nrelease = \"19.01\"\n{extra_toml}",
                    d.join(format!("c{i}"))
                ),
            )
            .unwrap();
        }
        TestRpm::new("sysinv", "1.0", "230")
            .file("/usr/lib/sysinv/api.py", "VERSION = 230\n")
            .build(&d.join("feed"));
        let any = || "127.0.0.1:0".to_owned();
        let mut pair = Pair {
            dir,
            key,
            controllers: [None, None],
            addrs: [[any(), any(), any(), any()], [any(), any(), any(), any()]],
            agents: Vec::new(),
            ca,
            tls,
        };
        // Each side must know the other's pair port before it starts: ports probed free, and
        // probed again if another process took one meanwhile.
        let mut attempts = 0;
        loop {
            attempts += 1;
            for i in 0..2 {
                pair.addrs[i] = [any(), any(), any(), format!("127.0.0.1:{}", free_port())];
            }
            match pair.try_start(0).and_then(|()| pair.try_start(1)) {
                Ok(()) => break,
                Err(e) if attempts < 5 => {
                    eprintln!("retrying the pair's start: {e}");
                    pair.kill(0);
                    pair.kill(1);
                }
                Err(e) => panic!("{e}"),
            }
        }
        pair.wait_for("the pair to see each other", |p| {
            p.system_show(0)["controllers"][1]["reachable"] == true
                && p.system_show(1)["controllers"][1]["reachable"] == true
        });
        let feed = pair.path("feed");
        pair.ok(&["init-release", "19.01", "--feed", feed.to_str().unwrap()]);
        pair
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The remote listeners' URL scheme.
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Controller `i`'s state as the controller uses it.
    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.path(&format!("c{i}/current"))
    }

    /// Starts controller `i` (again) on its addresses.
    pub fn start(&mut self, i: usize) {
        self.try_start(i)
            .unwrap_or_else(|e| panic!("controller-{i}: {e}"));
    }

    fn try_start(&mut self, i: usize) -> Result<(), String> {
        let d = self.dir.path().to_owned();
        let other = 1 - i;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"));
        let a = &self.addrs[i];
        cmd.arg("--print-addresses")
            .arg("--config")
            .arg(d.join(format!("c{i}.toml")))
            .arg("--state-dir")
            .arg(d.join(format!("c{i}")))
            .arg("--keyring")
            .arg(d.join("keyring"))
            .args(["--release", "19.01"])
            .args([
                "--listen",
                &a[0],
                "--agent-listen",
                &a[1],
                "--vim-listen",
                &a[2],
            ])
            .arg("--agent-token-file")
            .arg(d.join("agent-token"))
            .args(["--host-name", &format!("controller-{i}")])
            .args([
                "--peer",
                &format!("{}://{}", self.scheme(), self.addrs[other][3]),
            ])
            .args(["--peer-listen", &a[3]])
            .arg("--peer-token-file")
            .arg(d.join("peer-token"))
            .env("STX_PATCH_LOG", "warn")
            .stdout(Stdio::piped());
        if self.tls {
            cmd.arg("--tls-cert")
                .arg(&self.ca.server_cert)
                .arg("--tls-key")
                .arg(&self.ca.server_key)
                .arg("--tls-ca")
                .arg(&self.ca.ca_cert);
        }
        cmd.stderr(super::daemon_log(&d.join(format!("c{i}.log"))));
        let (child, addrs) = super::try_spawn_with_addresses(&mut cmd)?;
        for (slot, key) in ["api", "agent_api", "vim_api", "peer"].iter().enumerate() {
            self.addrs[i][slot] = addrs[key].as_str().unwrap().to_owned();
        }
        self.controllers[i] = Some(child);
        Ok(())
    }

    /// SIGKILLs controller `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.controllers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.controllers[i].is_some()
    }

    /// Controller `i`'s patching API URL.
    pub fn api_url(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i][0])
    }

    /// Controller `i`'s pair endpoint address.
    pub fn peer_addr(&self, i: usize) -> String {
        self.addrs[i][3].clone()
    }

    /// Both patching API URLs, as the CLIs take them.
    pub fn api_urls(&self) -> String {
        format!("{},{}", self.api_url(0), self.api_url(1))
    }

    /// Both orchestration API URLs.
    pub fn vim_urls(&self) -> String {
        let s = self.scheme();
        format!("{s}://{},{s}://{}", self.addrs[0][2], self.addrs[1][2])
    }

    pub fn run_at(&self, bin: &str, urls: &str, args: &[&str]) -> Output {
        let path = match bin {
            "system" => env!("CARGO_BIN_EXE_system"),
            "sw-manager" => env!("CARGO_BIN_EXE_sw-manager"),
            _ => env!("CARGO_BIN_EXE_sw-patch"),
        };
        let child = Command::new(path)
            .args(["--url", urls])
            .env("OS_CACERT", &self.ca.ca_cert)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A hung controller fails the test instead of hanging it.
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(output) => output.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("{bin} {args:?} did not finish within 120 s");
            }
        }
    }

    pub fn run(&self, bin: &str, args: &[&str]) -> Output {
        let urls = if bin == "sw-manager" {
            self.vim_urls()
        } else {
            self.api_urls()
        };
        self.run_at(bin, &urls, args)
    }

    /// `sw-patch` against the pair; panics unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with("sw-patch", args)
    }

    pub fn ok_with(&self, bin: &str, args: &[&str]) -> String {
        let out = self.run(bin, args);
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `system show` of controller `i` alone, as JSON (Null if it does not answer).
    pub fn system_show(&self, i: usize) -> Value {
        let out = self.run_at("system", &self.api_url(i), &["show", "--format", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Which controller its own `ha.json` says is active (from the files: works while down).
    pub fn role(&self, i: usize) -> String {
        std::fs::read(self.path(&format!("c{i}/ha.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["role"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The active controller, by the roles on disk.
    pub fn active(&self) -> Option<usize> {
        (0..2).find(|&i| self.role(i) == "active")
    }

    /// Whether both stores hold the same files (patches, packages, repository and its index,
    /// app dependencies, strategy): host records and alarms are left out. Agents change host
    /// records at any moment, and the strategy audit raises and clears alarms from the host
    /// and patch states in the background (after an apply, "Patching operation in progress");
    /// both follow within a replication tick.
    pub fn store_in_sync(&self) -> bool {
        let store = |i| {
            let mut files = state_files(&self.state_dir(i));
            files.retain(|path, _| !path.starts_with("hosts") && !path.starts_with("alarms.json"));
            files
        };
        let (a, b) = (store(0), store(1));
        if a != b {
            // Say which files differ, so a failure names what did not reach the standby.
            let differ: Vec<_> = a
                .keys()
                .chain(b.keys())
                .filter(|p| a.get(*p) != b.get(*p))
                .collect();
            eprintln!("stores differ in: {differ:?}");
        }
        a == b
    }

    /// Whether both state directories hold the same files.
    pub fn in_sync(&self) -> bool {
        state_files(&self.state_dir(0)) == state_files(&self.state_dir(1))
    }

    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&Pair) -> bool) {
        self.wait_for_secs(what, 60, &mut cond);
    }

    pub fn wait_for_secs(&self, what: &str, secs: u64, cond: &mut dyn FnMut(&Pair) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn root(&self, host: &str) -> PathBuf {
        self.path("roots").join(host)
    }

    fn agent_command(&self, host: &str, personality: &str) -> Command {
        let s = self.scheme();
        let controllers = format!("{s}://{},{s}://{}", self.addrs[0][1], self.addrs[1][1]);
        let mut cmd = super::agent_command(
            &controllers,
            &self.path("agent-token"),
            &self.root(host),
            host,
            personality,
        );
        cmd.env("OS_CACERT", &self.ca.ca_cert);
        cmd
    }

    pub fn start_agent(&mut self, host: &str, personality: &str) {
        let status = self
            .agent_command(host, personality)
            .arg("--install-local")
            .status()
            .unwrap();
        assert!(status.success());
        let child = self.agent_command(host, personality).spawn().unwrap();
        self.agents.push(child);
    }

    pub fn hosts(&self) -> Vec<Value> {
        let out = self.ok(&["query-hosts", "--format", "json"]);
        serde_json::from_str::<Value>(&out).unwrap()["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn patch(&self, id: &str, rr: bool, rpms: &[TestRpm], new: &[&str]) -> PathBuf {
        super::build_patch(self.dir.path(), &self.key, id, rr, rpms, new)
    }

    /// Repo state of every patch in a state directory, by where its metadata sits.
    pub fn repo_states(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for state in ["available", "applied", "committed"] {
            if let Ok(entries) = std::fs::read_dir(dir.join("metadata").join(state)) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(id) = name.strip_suffix("-metadata.xml") {
                        out.push((id.to_owned(), state.to_owned()));
                    }
                }
            }
        }
        out.sort();
        out
    }
}
