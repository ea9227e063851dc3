//! A distributed cloud's system controller (`dc-controller`) and its subclouds, for the
//! tests: the daemon on a fixed loopback port (a restart keeps it), `dcmanager` against it,
//! and subcloud sites reached over TLS with their own CA and token.

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use patch_format::testing::TestRpm;
use serde_json::Value;

use super::Site;

pub const TOKEN: &str = "dc-operator";
pub const SUBCLOUD_TOKEN: &str = "subcloud-admin";

pub struct Dc {
    child: Option<Child>,
    pub url: String,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Drop for Dc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("dc.log")).unwrap_or_default();
            eprintln!("dc-controller log:\n{log}");
        }
    }
}

impl Dc {
    /// The system controller of `system_controller`'s patches, on SQLite or the database
    /// at `database_url`, with `extra` arguments.
    pub fn start(system_controller: &Site, database_url: Option<&str>) -> Dc {
        Dc::start_with(system_controller, database_url, &[])
    }

    pub fn start_with(system_controller: &Site, database_url: Option<&str>, extra: &[&str]) -> Dc {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens"), format!("{TOKEN}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--print-addresses".into(),
            "--state-dir".into(),
            dir.path().join("state").display().to_string(),
            "--system-controller-url".into(),
            system_controller.url.clone(),
            "--tokens-file".into(),
            dir.path().join("tokens").display().to_string(),
            "--audit-interval".into(),
            "1".into(),
        ];
        if let Some(url) = database_url {
            args.extend(["--database-url".into(), url.to_owned()]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut dc = Dc {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            args,
        };
        dc.restart();
        dc
    }

    /// SIGKILLs the daemon (if running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs the daemon (if running) and starts it again on the same port and state.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dc.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dc-controller"));
        cmd.args(&self.args)
            .env("STX_PATCH_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(log);
        let (child, _) = super::spawn_with_addresses(&mut cmd);
        self.child = Some(child);
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dcmanager"))
            .args(["--dcmanager-url", &self.url, "--token", TOKEN])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dcmanager {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn subcloud(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["subcloud", "show", name, "--format", "json"])).unwrap()
    }

    pub fn wait_for(&self, name: &str, availability: &str, sync: &str) -> Value {
        self.wait_until(name, &format!("{availability}/{sync}"), |s| {
            s["availability-status"] == availability && s["sync_status"] == sync
        })
    }

    pub fn wait_until(&self, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.subcloud(name);
            if cond(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} never became {what}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A subcloud: a controller with an authenticated (TLS) patching API, on a port of its own
/// that a restart keeps.
pub fn subcloud() -> Site {
    subcloud_with("")
}

/// [`subcloud`] whose controller also reads `extra_toml`.
pub fn subcloud_with(extra_toml: &str) -> Site {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Site::with_toml(
        &format!(
            "auth_listen = \"127.0.0.1:{port}\"\nauth_tokens = [\"{SUBCLOUD_TOKEN}\"]\n{extra_toml}"
        ),
        &[],
    )
}

/// Uploads and applies a patch `id` of sysinv `release` on `site` (built with that site's
/// own key).
pub fn apply(site: &Site, id: &str, release: &str) {
    let patch = site.patch(
        id,
        false,
        &[TestRpm::new("sysinv", "1.0", release).file("/usr/lib/sysinv/api.py", "VERSION\n")],
        &[],
    );
    site.ok(&["upload", patch.to_str().unwrap()]);
    site.ok(&["apply", id]);
}

/// Makes `site` trust the patches `signer` signs (its key in the keyring; a restart
/// reads it).
pub fn trust(site: &mut Site, signer: &Site) {
    std::fs::copy(
        signer.path("keyring/dev.pem"),
        site.path("keyring/system-controller.pem"),
    )
    .unwrap();
    site.restart_controller();
}

pub fn add(dc: &Dc, name: &str, site: &Site, group: Option<&str>) {
    add_at(
        dc,
        name,
        site.auth_url.as_deref().unwrap(),
        &site.vim_url,
        &site.ca.ca_cert,
        group,
    );
}

/// Adds subcloud `name` reached at `url` (patching) and `vim_url`, with the CA at `ca`.
pub fn add_at(
    dc: &Dc,
    name: &str,
    url: &str,
    vim_url: &str,
    ca: &std::path::Path,
    group: Option<&str>,
) {
    let token_file = dc.dir.path().join(format!("{name}.token"));
    std::fs::write(&token_file, format!("{SUBCLOUD_TOKEN}\n")).unwrap();
    let token_file = token_file.display().to_string();
    let ca = ca.display().to_string();
    let mut args = vec![
        "subcloud",
        "add",
        "--name",
        name,
        "--url",
        url,
        "--token-file",
        &token_file,
        "--ca-file",
        &ca,
        "--vim-url",
        vim_url,
    ];
    if let Some(g) = group {
        args.extend(["--group", g]);
    }
    dc.ok(&args);
}
