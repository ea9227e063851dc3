//! A controller and real agents (separate processes, temp roots) on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use patch_format::testing::TestRpm;
use patch_sign::PrivateKey;
use serde_json::Value;

/// A site: its temp directory, controller, agents and signing key.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub controller: Child,
    pub url: String,
    pub agent_url: String,
    pub vim_url: String,
    /// The web dashboard, when the site's TOML sets `web_listen`.
    pub web_url: Option<String>,
    /// The authenticated patching API, when the site's TOML sets `auth_listen`.
    pub auth_url: Option<String>,
    pub agents: Vec<Child>,
    pub key: PrivateKey,
    /// The site's development CA: every listener but the plain API serves TLS with a
    /// certificate it signed, and every client is given it.
    pub ca: tls::dev_ca::DevCa,
    controller_args: Vec<String>,
}

/// The controller of a site, listening on [api, agent api, vim api].
fn controller_command(d: &Path, listen: [&str; 3], extra: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"));
    cmd.arg("--print-addresses")
        .arg("--config")
        .arg(d.join("controller.toml"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .arg("--keyring")
        .arg(d.join("keyring"))
        .args(["--release", "19.01"])
        .args(["--listen", listen[0], "--agent-listen", listen[1]])
        .args(["--vim-listen", listen[2]])
        .arg("--agent-token-file")
        .arg(d.join("agent-token"))
        .arg("--tls-cert")
        .arg(d.join("tls/server.pem"))
        .arg("--tls-key")
        .arg(d.join("tls/server-key.pem"))
        .args(extra)
        .env("STX_PATCH_LOG", "warn")
        .stdout(Stdio::piped());
    // Always kept: warnings and refusals are few, and the audit log is asserted on.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("controller.log"))
        .expect("the log file opens");
    cmd.stderr(log);
    cmd
}

impl Drop for Site {
    fn drop(&mut self) {
        for child in self
            .agents
            .iter_mut()
            .chain(std::iter::once(&mut self.controller))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Site {
    pub fn new() -> Site {
        Site::new_with(&[])
    }

    pub fn new_with(controller_args: &[&str]) -> Site {
        Site::with_toml("", controller_args)
    }

    /// A site whose controller also reads `extra_toml` (e.g. a `[strategy_timing]` table).
    pub fn with_toml(extra_toml: &str, controller_args: &[&str]) -> Site {
        let (dir, key) = super::work_dir(&["feed", "rpms", "patches", "roots"]);
        let d = dir.path();
        std::fs::write(
            d.join("controller.toml"),
            format!(
                "state_dir = {:?}\nrelease = \"19.01\"\n{extra_toml}",
                d.join("state")
            ),
        )
        .unwrap();
        std::fs::write(d.join("agent-token"), "agent-secret\n").unwrap();
        let ca = tls::dev_ca::create(&d.join("tls"), &[]).unwrap();
        TestRpm::new("sysinv", "1.0", "230")
            .file("/usr/lib/sysinv/api.py", "VERSION = 230\n")
            .build(&d.join("feed"));
        let extra: Vec<String> = controller_args.iter().map(|a| (*a).to_owned()).collect();
        let (controller, addrs) = super::spawn_with_addresses(&mut controller_command(
            d,
            ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"],
            &extra,
        ));
        let site = Site {
            url: format!("http://{}", addrs["api"].as_str().unwrap()),
            agent_url: format!("https://{}", addrs["agent_api"].as_str().unwrap()),
            vim_url: format!("https://{}", addrs["vim_api"].as_str().unwrap()),
            web_url: addrs["web"].as_str().map(|a| format!("https://{a}")),
            auth_url: addrs["auth_api"].as_str().map(|a| format!("https://{a}")),
            ca,
            dir,
            controller,
            agents: Vec::new(),
            key,
            controller_args: extra,
        };
        site.ok(&[
            "init-release",
            "19.01",
            "--feed",
            site.path("feed").to_str().unwrap(),
        ]);
        site
    }

    /// SIGKILLs the controller and starts it again on the same addresses.
    pub fn restart_controller(&mut self) {
        if let Err(e) = self.try_restart_controller() {
            panic!("{e}");
        }
    }

    /// SIGKILLs the controller and starts it again on the same addresses, or says why it did
    /// not come up (its log's last lines).
    pub fn try_restart_controller(&mut self) -> Result<(), String> {
        let _ = self.controller.kill();
        let _ = self.controller.wait();
        let strip = |u: &str| {
            u.trim_start_matches("https://")
                .trim_start_matches("http://")
                .to_owned()
        };
        let listen = [
            strip(&self.url),
            strip(&self.agent_url),
            strip(&self.vim_url),
        ];
        match super::try_spawn_with_addresses(&mut controller_command(
            self.dir.path(),
            [&listen[0], &listen[1], &listen[2]],
            &self.controller_args,
        )) {
            Ok((child, _)) => {
                self.controller = child;
                Ok(())
            }
            Err(e) => {
                let log = std::fs::read_to_string(self.path("controller.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                Err(format!("{e}: {}", tail.join(" | ")))
            }
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn root(&self, host: &str) -> PathBuf {
        self.path("roots").join(host)
    }

    pub fn agent_command(&self, host: &str, personality: &str) -> Command {
        let mut cmd = super::agent_command(
            &self.agent_url,
            &self.path("agent-token"),
            &self.root(host),
            host,
            personality,
        );
        cmd.env("OS_CACERT", &self.ca.ca_cert);
        cmd
    }

    /// Enrols `host` with the agent token, as an agent does on its first start: its own
    /// credential.
    pub fn enrol(&self, host: &str) -> String {
        let answer = self
            .http()
            .post(format!("{}/agent/v1/enrol", self.agent_url))
            .bearer_auth("agent-secret")
            .json(&serde_json::json!({ "hostname": host }))
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json::<Value>().unwrap()["credential"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// An HTTP client that trusts the site's CA.
    pub fn http(&self) -> reqwest::blocking::Client {
        let trust = tls::Trust::CaBundle(self.ca.ca_cert.clone());
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(trust.client_config().unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub fn start_agent(&mut self, host: &str, personality: &str) {
        self.start_agent_with(host, personality, &[]);
    }

    pub fn start_agent_with(&mut self, host: &str, personality: &str, extra: &[&str]) {
        // Boot-time install of the base load first, as a host does before it joins.
        let status = self
            .agent_command(host, personality)
            .args(extra)
            .arg("--install-local")
            .status()
            .unwrap();
        assert!(status.success());
        let child = self
            .agent_command(host, personality)
            .args(extra)
            .spawn()
            .unwrap();
        self.agents.push(child);
    }

    pub fn run(&self, bin: &str, args: &[&str]) -> Output {
        let (path, url) = match bin {
            "system" => (env!("CARGO_BIN_EXE_system"), &self.url),
            "sw-manager" => (env!("CARGO_BIN_EXE_sw-manager"), &self.vim_url),
            "fm" => (env!("CARGO_BIN_EXE_fm"), &self.vim_url),
            _ => (env!("CARGO_BIN_EXE_sw-patch"), &self.url),
        };
        Command::new(path)
            .args(["--url", url])
            .env("OS_CACERT", &self.ca.ca_cert)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run("sw-patch", args);
        assert!(
            out.status.success(),
            "sw-patch {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn system(&self, args: &[&str]) -> String {
        let out = self.run("system", args);
        assert!(
            out.status.success(),
            "system {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn hosts(&self) -> Vec<Value> {
        let out = self.ok(&["query-hosts", "--format", "json"]);
        serde_json::from_str::<Value>(&out).unwrap()["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn host(&self, name: &str) -> Value {
        self.hosts()
            .into_iter()
            .find(|h| h["hostname"] == name)
            .unwrap_or(Value::Null)
    }

    pub fn patch_state(&self, id: &str) -> String {
        let out = self.ok(&["query", "--format", "json"]);
        serde_json::from_str::<Value>(&out).unwrap()["pd"][id]["patchstate"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&Site) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn patch(&self, id: &str, rr: bool, rpms: &[TestRpm], new: &[&str]) -> PathBuf {
        super::build_patch(self.dir.path(), &self.key, id, rr, rpms, new)
    }
}
