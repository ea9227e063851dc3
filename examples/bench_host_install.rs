//! `sw-patch host-install` as an operator waits for it (order, download from the controller,
//! checks, install with every file flushed and the journal, rpm database update, report) of
//! an upgrade of 40 packages built by `rpmbuild` (xz payloads, 200 MiB in all), beside its
//! baseline in the same run: `rpm --root R -U` of the same files already on local disk.
//! Also the agent's peak resident memory.
//!
//! Run: `cargo run --release --example bench_host_install [-- --packages 40 --mib-each 5
//!       --rounds 3]` (needs rpmbuild and rpm).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patch_format::testing::{Payload, SpecRpm, roots};
use patch_format::{PatchBuilder, PatchMetadata, Status};
use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__agent") {
        return support::run_agent(&args[1..]);
    }
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let packages: usize = opt("--packages", "40").parse()?;
    let mib_each: usize = opt("--mib-each", "5").parse()?;
    let rounds: usize = opt("--rounds", "3").parse()?;
    let dir = std::path::absolute(PathBuf::from(opt("--dir", "target/bench-host-install")))?;
    let key = support::bench_dir(&dir, &["feed", "rpms", "patches", "roots"])?;
    std::fs::write(dir.join("agent-token"), "bench-agent-token\n")?;

    eprintln!("building 2 × {packages} packages of {mib_each} MiB with rpmbuild (xz)…");
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut v2_files = Vec::new();
    let mut v1_files = Vec::new();
    for v in [1, 2] {
        for i in 0..packages {
            let name = format!("bench{i:03}");
            let mut spec = SpecRpm::new(&name, &format!("{v}.0"), "1").payload(Payload::Xz);
            // 8 files: half random (incompressible), half text.
            for f in 0..8 {
                let mut content = vec![0u8; mib_each * (1 << 20) / 8];
                if f % 2 == 0 {
                    std::io::Read::read_exact(&mut urandom, &mut content)?;
                } else {
                    for (j, b) in content.iter_mut().enumerate() {
                        *b = b"stx-patch benchmark line\n"[j % 25];
                    }
                }
                spec = spec.file(&format!("/opt/{name}/file{f}"), content);
            }
            let out = if v == 1 {
                dir.join("feed")
            } else {
                dir.join("rpms")
            };
            let file = spec.build(&out);
            if v == 1 {
                v1_files.push(file)
            } else {
                v2_files.push(file)
            }
        }
    }
    let mut metadata = PatchMetadata::new("BENCH_UPGRADE", "19.01");
    metadata.status = Status::Released;
    metadata.reboot_required = false;
    let mut builder = PatchBuilder::new(metadata);
    for f in &v2_files {
        builder.add_rpm(f, &[])?;
    }
    let (patch, _) = builder.write_to_dir(&dir.join("patches"), &key)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let mut config = support::controller_config(&dir, "state");
    config.agent_listen = Some("127.0.0.1:0".into());
    config.agent_token_file = Some(dir.join("agent-token"));
    let controller = runtime.block_on(controller::Controller::start(config))?;
    let api = format!("http://{}/v1", controller.api_addr);
    let agent_url = format!(
        "http://{}",
        controller.agent_addr.ok_or("no agent endpoint")?
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let call = |path: &str| -> Result<Value> {
        let v: Value = http.post(format!("{api}/{path}")).send()?.json()?;
        match v["error"].as_str() {
            Some(e) if !e.is_empty() => Err(format!("{path}: {e}").into()),
            _ => Ok(v),
        }
    };
    call(&format!(
        "init_release/19.01?feed={}",
        dir.join("feed").display()
    ))?;
    let form = reqwest::blocking::multipart::Form::new().file("file", &patch)?;
    http.post(format!("{api}/upload"))
        .multipart(form)
        .send()?
        .error_for_status()?;

    let me = std::env::current_exe()?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut peak_rss = 0f64;
    for round in 0..rounds {
        // Baseline: rpm -U of the same files, local, on a root where rpm installed v1.
        let rpm_root = dir.join(format!("roots/rpm-{round}"));
        roots::init_rpmdb(&rpm_root)?;
        rpm_u(&rpm_root, &v1_files)?;
        let t = Instant::now();
        rpm_u(&rpm_root, &v2_files)?;
        theirs.push(t.elapsed().as_secs_f64());

        // stx-patch: a host with v1 (boot-time install), then the patch and host-install.
        call("remove/BENCH_UPGRADE").ok();
        let host = format!("bench-{round}");
        let root = dir.join(format!("roots/{host}"));
        roots::init_rpmdb(&root)?;
        let agent = |mode: &str| {
            let mut c = Command::new(&me);
            c.args(["__agent", &agent_url, "bench-agent-token", &host, "worker"])
                .arg(&root)
                .arg(mode)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null());
            c
        };
        if !agent("boot").status()?.success() {
            return Err("boot-time install failed".into());
        }
        let mut daemon = agent("run").spawn()?;
        let hosts = || -> Result<Vec<Value>> {
            let v: Value = http.get(format!("{api}/query_hosts")).send()?.json()?;
            Ok(v["data"].as_array().cloned().unwrap_or_default())
        };
        let host_state = |want: &dyn Fn(&Value) -> bool| -> Result<Value> {
            let start = Instant::now();
            loop {
                if let Some(h) = hosts()?
                    .into_iter()
                    .find(|h| h["hostname"] == host.as_str())
                    && want(&h)
                {
                    return Ok(h);
                }
                if start.elapsed() > Duration::from_secs(600) {
                    return Err(format!("{host}: timed out").into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        host_state(&|h| h["patch_current"] == true)?;
        call("apply/BENCH_UPGRADE")?;
        host_state(&|h| h["patch_current"] == false)?;
        // What the operator waits for: `sw-patch host-install` until it reports the outcome.
        let t = Instant::now();
        call(&format!("host_install_async/{host}"))?;
        let h = host_state(&|h| {
            h["state"] != "installing"
                && h["interim_state"] == false
                && (h["patch_current"] == true || h["state"] != "idle")
        })?;
        ours.push(t.elapsed().as_secs_f64());
        if h["state"] != "idle" {
            return Err(format!("{host}: {} {}", h["state"], h["last_error"]).into());
        }
        peak_rss = peak_rss.max(support::status_kib(&daemon.id().to_string(), "VmHWM:"));
        let _ = daemon.kill();
        let _ = daemon.wait();
        let listed = roots::rpm_lines(&root, &["-qa"])
            .iter()
            .filter(|l| l.contains("-2.0-1"))
            .count();
        if listed != packages {
            return Err(format!("rpm -qa lists {listed} upgraded packages, not {packages}").into());
        }
        std::fs::remove_dir_all(&root)?;
        std::fs::remove_dir_all(&rpm_root)?;
    }
    runtime.block_on(controller.stop());
    let size = packages * mib_each;
    let (ours, theirs) = (support::median(&mut ours), support::median(&mut theirs));
    println!(
        "### host-install of an upgrade, {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| measure | stx-patch | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| upgrade {packages} packages, {size} MiB, xz (rpmbuild); median of {rounds} | {ours:.2} s (`sw-patch host-install`, from the controller, all files flushed, journal, rpm database) | {theirs:.2} s (`rpm --root R -U`, files local, no flush) | {:.2}× the time | ≤ 1.0× |",
        ours / theirs
    );
    println!(
        "| agent peak RSS during the install | {:.1} MiB | | | bounded |",
        peak_rss / 1024.0
    );
    Ok(())
}

/// `rpm -U` of `files` into `root`, as the baseline (and the base load) installs them.
fn rpm_u(root: &Path, files: &[PathBuf]) -> Result<()> {
    match roots::rpm_upgrade(root, files) {
        (true, _) => Ok(()),
        (false, lines) => Err(format!("rpm -U failed: {}", lines.join("; ")).into()),
    }
}
