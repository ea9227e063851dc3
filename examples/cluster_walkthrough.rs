//! The main job: the seed's walkthrough on a 2+2+2 system, all on this machine.
//!
//! A controller (in this process, loopback) and six hosts — controller-0/1, compute-0/1,
//! storage-0/1 — each a real agent process with its own root directory under the work dir.
//! Patch 001 (in-service, a fix plus a new package for every node type) is uploaded, applied
//! and installed host by host; patch 002 (reboot-required) goes through lock → install →
//! unlock/reboot; then both are removed and every root is back to its base load.
//!
//! Run: `cargo run --release --example cluster_walkthrough [-- <work-dir>]`
//! (default work dir: `target/stx-patch-cluster`, recreated on each run).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use controller::{Controller, ControllerConfig};
use patch_format::testing::roots;
use patch_format::testing::{Payload, SpecRpm, TestRpm, rpmbuild_available};
use patch_format::{PatchBuilder, PatchMetadata, Personality, Status};
use patch_sign::PrivateKey;
use serde_json::Value;
use stx_patch_cli::tables::{hosts_table, query_table};

const HOSTS: [(&str, &str); 6] = [
    ("controller-0", "controller"),
    ("controller-1", "controller"),
    ("compute-0", "worker"),
    ("compute-1", "worker"),
    ("storage-0", "storage"),
    ("storage-1", "storage"),
];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("__agent") {
        support::run_agent(&args[1..])
    } else {
        walkthrough(
            args.first()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target/stx-patch-cluster")),
        )
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Cluster {
    url: String,
    http: reqwest::blocking::Client,
    agents: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

impl Cluster {
    fn call(&self, method: &str, path: &str) -> Result<Value> {
        let url = format!("{}/v1/{path}", self.url);
        let request = if method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url)
        };
        Ok(request.send()?.json()?)
    }

    /// Prints an operation result as `sw-patch` does; fails on an error.
    fn op(&self, path: &str) -> Result<()> {
        let v = self.call("POST", path)?;
        print!("{}", v["info"].as_str().unwrap_or(""));
        let error = v["error"].as_str().unwrap_or("");
        if !error.is_empty() {
            return Err(format!("{path}: {error}").into());
        }
        Ok(())
    }

    fn upload(&self, file: &Path) -> Result<()> {
        let part = reqwest::blocking::multipart::Part::bytes(std::fs::read(file)?).file_name(
            file.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        let v: Value = self
            .http
            .post(format!("{}/v1/upload", self.url))
            .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
            .send()?
            .json()?;
        print!("{}", v["info"].as_str().unwrap_or(""));
        let error = v["error"].as_str().unwrap_or("");
        if error.is_empty() {
            Ok(())
        } else {
            Err(error.to_owned().into())
        }
    }

    fn show_query(&self) -> Result<()> {
        println!("\n$ sw-patch query");
        print!("{}", query_table(&self.call("GET", "query")?));
        Ok(())
    }

    fn show_hosts(&self) -> Result<()> {
        println!("\n$ sw-patch query-hosts");
        print!("{}", hosts_table(&self.call("GET", "query_hosts")?));
        Ok(())
    }

    fn hosts(&self) -> Result<Vec<Value>> {
        Ok(self.call("GET", "query_hosts")?["data"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn wait(&self, what: &str, cond: impl Fn(&[Value]) -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if cond(&self.hosts()?) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("timed out waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Lock, install, unlock (which reboots the host when the install needs it), and wait
    /// until the host no longer needs a reboot.
    fn locked_install(&self, host: &str) -> Result<()> {
        println!("\n$ system host-lock {host}");
        self.op(&format!("host_lock/{host}"))?;
        self.host_install(host)?;
        println!("\n$ system host-unlock {host}");
        self.op(&format!("host_unlock/{host}"))?;
        self.wait("reboot", |h| {
            h.iter()
                .any(|h| h["hostname"] == host && h["requires_reboot"] == false)
        })
    }

    /// `sw-patch host-install H`: order, then wait for the host to finish.
    fn host_install(&self, host: &str) -> Result<()> {
        println!("\n$ sw-patch host-install {host}");
        self.op(&format!("host_install_async/{host}"))?;
        self.wait(host, |hosts| {
            hosts.iter().any(|h| {
                h["hostname"] == host && h["state"] != "installing" && h["interim_state"] == false
            })
        })?;
        let h = self
            .hosts()?
            .into_iter()
            .find(|h| h["hostname"] == host)
            .unwrap_or_default();
        match h["state"].as_str() {
            Some("idle") => println!("Installation was successful."),
            other => return Err(format!("{host}: {other:?}: {}", h["last_error"]).into()),
        }
        Ok(())
    }
}

/// How the demo builds its packages: with the real `rpmbuild` when it is installed (xz
/// payloads, a hard link, a `%config(noreplace)` file and, when the hosts have a shell to
/// run it, a `%post` scriptlet — what a StarlingX build produces), else with the `rpm`
/// crate's builder (gzip, plain files).
#[derive(Clone)]
struct Packager {
    rpmbuild: bool,
    /// A static busybox to give every host root a `/bin/sh` for scriptlets.
    busybox: Option<PathBuf>,
}

impl Packager {
    fn detect() -> Packager {
        let rpmbuild = rpmbuild_available();
        Packager {
            rpmbuild,
            busybox: roots::static_busybox().filter(|_| rpmbuild),
        }
    }

    fn describe(&self) -> &'static str {
        match (self.rpmbuild, self.busybox.is_some()) {
            (true, true) => {
                "rpmbuild (xz payloads, hard links, %config(noreplace), %post scriptlets)"
            }
            (true, false) => {
                "rpmbuild (xz payloads, hard links, %config(noreplace); no static shell for %post here)"
            }
            _ => "the rpm crate's builder (rpmbuild is not installed)",
        }
    }

    /// Builds `name-version-release` with `files` into `dir`.
    fn build(
        &self,
        name: &str,
        version: &str,
        release: &str,
        files: &[(&str, String)],
        dir: &Path,
    ) -> PathBuf {
        if !self.rpmbuild {
            let mut rpm = TestRpm::new(name, version, release);
            for (path, content) in files {
                rpm = rpm.file(path, content.clone());
            }
            return rpm.build(dir);
        }
        let mut spec = SpecRpm::new(name, version, release).payload(Payload::Xz);
        for (path, content) in files {
            spec = spec.file(path, content.clone());
        }
        // What real packages carry: a hard link, an administrator-editable config, a %post.
        let (first, _) = files[0];
        spec = spec
            .hard_link(&format!("{first}.hardlink"), first)
            .file_with(
                &format!("/etc/{name}/{name}.conf"),
                format!("# {name} {version}-{release}\n"),
                0o644,
                "root",
                "root",
                "%config(noreplace)",
            );
        if self.busybox.is_some() {
            spec = spec.script("%post", &format!("echo \"$(date -u +%FT%TZ) {name}-{version}-{release} installed (instances: $1)\" >> /var/log/stx-patch-demo.log"));
        }
        spec.build(dir)
    }

    /// Prepares a host root: the shell scriptlets run with and an rpm database.
    fn prepare_root(&self, root: &Path) -> Result<()> {
        if let Some(busybox) = &self.busybox {
            roots::give_shell(root, busybox)?;
            std::fs::create_dir_all(root.join("var/log"))?;
        }
        if self.rpmbuild {
            roots::init_rpmdb(root)?;
        }
        Ok(())
    }
}

/// `rpm -qa` of a host root, as the host's own rpm sees it.
fn rpm_qa(root: &Path) -> String {
    roots::rpm_lines(root, &["-qa"]).join(" ")
}

fn walkthrough(work: PathBuf) -> Result<()> {
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    for sub in ["keyring", "feed", "rpms", "patches", "roots"] {
        std::fs::create_dir_all(work.join(sub))?;
    }
    let work = std::path::absolute(&work)?;
    let key = PrivateKey::generate(2048)?;
    std::fs::write(
        work.join("keyring/dev.pem"),
        key.public_key().to_spki_pem()?,
    )?;
    std::fs::write(work.join("agent-token"), "demo-agent-token\n")?;
    let packager = Packager::detect();
    println!("== Packages built with {}", packager.describe());
    // The base load every host starts from.
    let version_py = "/usr/lib/python2.7/site-packages/sysinv/version.py";
    packager.build(
        "sysinv",
        "1.0",
        "230.tis",
        &[(version_py, "VERSION = '1.0-230'\n".into())],
        &work.join("feed"),
    );
    packager.build(
        "kernel",
        "3.10.0",
        "957.tis",
        &[("/boot/vmlinuz-stx", "kernel 957\n".into())],
        &work.join("feed"),
    );

    println!(
        "== Controller on loopback, state in {}",
        work.join("state").display()
    );
    // TLS on every channel that could leave the host (the agent endpoint and the strategy
    // API); the plain API stays on loopback for the original `sw-patch`.
    println!(
        "\n$ sw-patch-controller tls-init {}",
        work.join("tls").display()
    );
    let ca = tls::dev_ca::create(&work.join("tls"), &[])?;
    let trust = tls::Trust::CaBundle(ca.ca_cert.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    let mut config = ControllerConfig::new(work.join("state"), "19.01");
    config.tls_cert = Some(ca.server_cert.clone());
    config.tls_key = Some(ca.server_key.clone());
    config.keyring = Some(work.join("keyring"));
    config.listen = "127.0.0.1:0".into();
    config.agent_listen = Some("127.0.0.1:0".into());
    config.agent_token_file = Some(work.join("agent-token"));
    // The strategy API, with the original's waits shortened to seconds for the demo.
    config.vim_listen = Some("127.0.0.1:0".into());
    config.strategy_audit_ms = 200;
    config.strategy_timing = orchestrator::Timing::shortened();
    let controller = runtime.block_on(Controller::start(config))?;
    let vim_url = format!("https://{}", controller.vim_addr.ok_or("no strategy API")?);
    let agent_url = format!(
        "https://{}",
        controller.agent_addr.ok_or("no agent endpoint")?
    );
    let mut cluster = Cluster {
        url: format!("http://{}", controller.api_addr),
        http: reqwest::blocking::Client::new(),
        agents: Vec::new(),
    };
    println!(
        "\n$ sw-patch init-release 19.01 --feed {}",
        work.join("feed").display()
    );
    cluster.op(&format!(
        "init_release/19.01?feed={}",
        work.join("feed").display()
    ))?;

    println!(
        "\n== Six hosts (2 controllers, 2 computes, 2 storage), each an agent process with its own root"
    );
    let me = std::env::current_exe()?;
    for (host, personality) in HOSTS {
        let root = work.join("roots").join(host);
        std::fs::create_dir_all(&root)?;
        packager.prepare_root(&root)?;
        let agent = |mode: &str| {
            let mut c = Command::new(&me);
            c.args(["__agent", &agent_url, "demo-agent-token", host, personality])
                .arg(&root)
                .arg(mode)
                .env("OS_CACERT", &ca.ca_cert)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        // Boot-time install of the base load, then the agent daemon.
        if !agent("boot").status()?.success() {
            return Err(format!("{host}: boot-time install failed").into());
        }
        cluster.agents.push(agent("run").spawn()?);
    }
    cluster.wait("six hosts", |h| {
        h.len() == 6 && h.iter().all(|h| h["patch_current"] == true)
    })?;
    cluster.show_hosts()?;

    println!("\n== Patch 001: in-service; fixes sysinv, adds newpkg on every node type");
    let mut m = PatchMetadata::new("001", "19.01");
    m.status = Status::Released;
    m.reboot_required = false;
    m.summary = "sysinv fix and newpkg".into();
    let mut b = PatchBuilder::new(m);
    let fix = packager.build(
        "sysinv",
        "1.0",
        "231.tis",
        &[(version_py, "VERSION = '1.0-231'\n".into())],
        &work.join("rpms"),
    );
    let newpkg = packager.build(
        "newpkg",
        "1.0",
        "1.tis",
        &[("/usr/bin/newpkg", "#!/bin/sh\necho newpkg\n".into())],
        &work.join("rpms"),
    );
    b.add_rpm(&fix, &[])?.add_rpm(&newpkg, &Personality::ALL)?;
    let (p1, _) = b.write_to_dir(&work.join("patches"), &key)?;
    println!("\n$ sw-patch upload {}", p1.display());
    cluster.upload(&p1)?;
    cluster.show_query()?;
    println!("\n$ sw-patch apply 001");
    cluster.op("apply/001")?;
    cluster.wait("hosts to see 001", |h| {
        h.iter().all(|h| h["patch_current"] == false)
    })?;
    cluster.show_query()?;
    cluster.show_hosts()?;
    for (host, _) in HOSTS {
        cluster.host_install(host)?;
    }
    cluster.wait("all current", |h| {
        h.iter().all(|h| h["patch_current"] == true)
    })?;
    cluster.show_query()?;
    cluster.show_hosts()?;

    println!("\n== Patch 002: reboot-required kernel update");
    let mut m = PatchMetadata::new("002", "19.01");
    m.status = Status::Released;
    m.reboot_required = true;
    m.summary = "kernel update".into();
    let mut b = PatchBuilder::new(m);
    let kernel = packager.build(
        "kernel",
        "3.10.0",
        "958.tis",
        &[("/boot/vmlinuz-stx", "kernel 958\n".into())],
        &work.join("rpms"),
    );
    b.add_rpm(&kernel, &[])?;
    let (p2, _) = b.write_to_dir(&work.join("patches"), &key)?;
    println!("\n$ sw-patch upload {}", p2.display());
    cluster.upload(&p2)?;
    println!("\n$ sw-patch apply 002");
    cluster.op("apply/002")?;
    cluster.wait("hosts to see 002", |h| {
        h.iter().all(|h| h["requires_reboot"] == true)
    })?;
    cluster.show_query()?;
    cluster.show_hosts()?;
    for (host, _) in HOSTS {
        cluster.locked_install(host)?;
    }
    cluster.wait("all current", |h| {
        h.iter().all(|h| h["patch_current"] == true)
    })?;
    cluster.show_query()?;
    cluster.show_hosts()?;
    let root = work.join("roots/compute-0");
    println!(
        "\ncompute-0 root: {} / {}",
        std::fs::read_to_string(root.join("usr/lib/python2.7/site-packages/sysinv/version.py"))?
            .trim(),
        std::fs::read_to_string(root.join("boot/vmlinuz-stx"))?.trim()
    );

    if packager.rpmbuild {
        println!("\n$ rpm --root {} -qa\n{}", root.display(), rpm_qa(&root));
    }

    strategy_rollout(&cluster, (&vim_url, &trust), &work, &key, &packager)?;

    println!("\n== Remove the patches");
    println!("\n$ sw-patch remove 003 002 001");
    cluster.op("remove/003/002/001")?;
    for (host, _) in HOSTS {
        cluster.locked_install(host)?;
    }
    cluster.wait("all current", |h| {
        h.iter()
            .all(|h| h["patch_current"] == true && h["requires_reboot"] == false)
    })?;
    cluster.show_query()?;
    cluster.show_hosts()?;
    println!(
        "\ncompute-0 root: {} / {} / newpkg present: {}",
        std::fs::read_to_string(root.join("usr/lib/python2.7/site-packages/sysinv/version.py"))?
            .trim(),
        std::fs::read_to_string(root.join("boot/vmlinuz-stx"))?.trim(),
        root.join("usr/bin/newpkg").exists()
    );
    if packager.rpmbuild {
        println!("\n$ rpm --root {} -qa\n{}", root.display(), rpm_qa(&root));
        let log = root.join("var/log/stx-patch-demo.log");
        if log.exists() {
            println!(
                "\n%post scriptlets on compute-0:\n{}",
                std::fs::read_to_string(log)?.trim_end()
            );
        }
    }
    drop(cluster);
    runtime.block_on(controller.stop());
    println!("\nDone. Everything is under {}", work.display());
    Ok(())
}

/// Patch 003 (reboot-required) rolled out by a patch strategy instead of host by host.
fn strategy_rollout(
    cluster: &Cluster,
    (vim_url, trust): (&str, &tls::Trust),
    work: &Path,
    key: &PrivateKey,
    packager: &Packager,
) -> Result<()> {
    use stx_patch_cli::strategy_text::{ShowOptions, strategy_text};
    use stx_patch_cli::vim_client::VimClient;

    println!("\n== Patch 003: reboot-required sysinv update, rolled out by a patch strategy");
    let mut m = PatchMetadata::new("003", "19.01");
    m.status = Status::Released;
    m.reboot_required = true;
    m.summary = "sysinv update (reboot required)".into();
    let mut b = PatchBuilder::new(m);
    let fix = packager.build(
        "sysinv",
        "1.0",
        "232.tis",
        &[(
            "/usr/lib/python2.7/site-packages/sysinv/version.py",
            "VERSION = '1.0-232'\n".into(),
        )],
        &work.join("rpms"),
    );
    b.add_rpm(&fix, &[])?;
    let (p3, _) = b.write_to_dir(&work.join("patches"), key)?;
    println!("\n$ sw-patch upload {}", p3.display());
    cluster.upload(&p3)?;
    println!("\n$ sw-patch apply 003");
    cluster.op("apply/003")?;
    cluster.wait("hosts to see 003", |h| {
        h.iter()
            .all(|h| h["requires_reboot"] == true && h["interim_state"] == false)
    })?;
    let vim = VimClient::new(vim_url, None, Some(trust))?;
    const STRATEGY: &str = "/api/orchestration/sw-patch/strategy";
    let strategy = || -> Result<Value> { Ok(vim.get(STRATEGY)?["strategy"].clone()) };
    let wait = |what: &str, done: &dyn Fn(&Value) -> bool| -> Result<Value> {
        let start = std::time::Instant::now();
        let mut last_stage = String::new();
        loop {
            let s = strategy()?;
            let phase = &s["apply-phase"];
            if s["state"] == "applying" {
                let i = phase["current-stage"].as_u64().unwrap_or(0) as usize;
                if let Some(stage) = phase["stages"].as_array().and_then(|st| st.get(i)) {
                    let hosts: Vec<String> = stage["steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|x| x["entity-type"] == "hosts")
                        .flat_map(|x| x["entity-names"].as_array().cloned().unwrap_or_default())
                        .filter_map(|h| h.as_str().map(str::to_owned))
                        .fold(Vec::new(), |mut acc, h| {
                            if !acc.contains(&h) {
                                acc.push(h);
                            }
                            acc
                        });
                    let line = format!(
                        "   stage {}/{} {}: {}",
                        i + 1,
                        phase["total-stages"],
                        stage["stage-name"].as_str().unwrap_or(""),
                        hosts.join(", ")
                    );
                    if line != last_stage {
                        println!("{line}");
                        last_stage = line;
                    }
                }
            }
            if done(&s) {
                return Ok(s);
            }
            if start.elapsed() > Duration::from_secs(300) {
                return Err(format!("timed out waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    println!(
        "\n$ sw-manager patch-strategy create --storage-apply-type parallel --worker-apply-type parallel"
    );
    vim.post(
        STRATEGY,
        &serde_json::json!({
            "controller-apply-type": "serial",
            "storage-apply-type": "parallel",
            "worker-apply-type": "parallel",
            "max-parallel-worker-hosts": 2,
            "default-instance-action": "stop-start",
        }),
    )?;
    let built = wait("the build", &|s| s["state"] != "building")?;
    print!("{}", strategy_text(&built, ShowOptions::default()));
    if built["state"] != "ready-to-apply" {
        return Err(format!("build failed: {}", built["build-phase"]["reason"]).into());
    }
    println!("\n$ sw-manager patch-strategy apply");
    vim.post(
        &format!("{STRATEGY}/actions"),
        &serde_json::json!({"action": "apply-all"}),
    )?;
    let done = wait("the apply", &|s| s["state"] != "applying")?;
    print!("{}", strategy_text(&done, ShowOptions::default()));
    if done["state"] != "applied" {
        return Err(format!("the strategy ended {}", done["state"]).into());
    }
    cluster.show_query()?;
    cluster.show_hosts()?;
    println!("\n$ sw-manager patch-strategy delete");
    vim.delete(STRATEGY, Some(&serde_json::json!({"force": false})))?;
    println!("Strategy deleted");
    Ok(())
}
