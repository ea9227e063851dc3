//! Benchmarks of the host side, each beside its baseline in the same run:
//!
//! * builtin install of 200 MiB of RPMs (one transaction into an empty root) vs
//!   `rpm2cpio X.rpm | cpio -idm` on the same RPMs (no transaction, no rollback);
//! * the controller (`sw-patch-controller`, a separate process) with 200 real agents
//!   (the agent library, as tasks in this process) heartbeating every second: its CPU use and
//!   resident memory over 30 s.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release --example bench_agent
//!       [-- --size-mib 200 --agents 200 --seconds 30]` (needs rpm2cpio and cpio).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Agent, AgentConfig, BuiltinInstaller, Transaction, TransactionPackage};
use host_state::InstalledPackage;
use patch_format::{Evr, PackageId, Personality};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let size_mib: u64 = opt("--size-mib", "200").parse()?;
    let agents: usize = opt("--agents", "200").parse()?;
    let seconds: u64 = opt("--seconds", "30").parse()?;
    let dir = std::path::absolute(PathBuf::from(opt("--dir", "target/bench-agent")))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("rpms"))?;

    eprintln!("building {size_mib} MiB of RPMs…");
    let rpms = make_rpms(&dir.join("rpms"), size_mib)?;
    let (ours, base) = install_vs_cpio(&dir, &rpms)?;

    eprintln!("starting a controller and {agents} agents for {seconds} s, plain HTTP…");
    let (cpu, rss, hwm) = controller_under_agents(&dir, agents, seconds, false)?;
    eprintln!("the same over TLS…");
    let (tls_cpu, tls_rss, tls_hwm) = controller_under_agents(&dir, agents, seconds, true)?;

    println!(
        "### Host side, {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| measure | stx-patch | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| install {size_mib} MiB of RPMs ({} packages, zstd payloads; median of 3) | {ours:.2} s, {:.0} MiB/s | {base:.2} s (`rpm2cpio \\| cpio -idm`), {:.0} MiB/s | {:.2}× throughput | ≥ 0.8× |",
        rpms.len(),
        size_mib as f64 / ours,
        size_mib as f64 / base,
        base / ours
    );
    println!(
        "| controller with {agents} agents reporting every 1 s ({seconds} s) | {:.1} % of one CPU, RSS {rss:.1} MiB (peak {hwm:.1} MiB) | | | |",
        cpu * 100.0
    );
    println!(
        "| the same over TLS vs plain HTTP | {:.1} % of one CPU, RSS {tls_rss:.1} MiB (peak {tls_hwm:.1} MiB) | {:.1} %, {rss:.1} MiB (peak {hwm:.1} MiB) | CPU {:.2}×, RSS {:.2}× | |",
        tls_cpu * 100.0,
        cpu * 100.0,
        tls_cpu / cpu,
        tls_rss / rss
    );
    Ok(())
}

fn make_rpms(dir: &Path, size_mib: u64) -> Result<Vec<PathBuf>> {
    let per = 8u64 << 20;
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut made = 0;
    let mut out = Vec::new();
    let mut i = 0;
    while made < size_mib << 20 {
        let size = per.min((size_mib << 20) - made);
        let mut builder =
            rpm::PackageBuilder::new(&format!("bench{i:03}"), "1.0", "MIT", "x86_64", "bench");
        builder
            .release("1")
            .using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Zstd));
        // 32 files per package, half random (incompressible), half text.
        for f in 0..32 {
            let mut content = vec![0u8; (size / 32) as usize];
            if f % 2 == 0 {
                std::io::Read::read_exact(&mut urandom, &mut content)?;
            } else {
                for (j, b) in content.iter_mut().enumerate() {
                    *b = b"stx-patch benchmark line\n"[j % 25];
                }
            }
            builder.with_file_contents(
                content,
                rpm::FileOptions::new(format!("/opt/bench{i:03}/file{f:02}")),
            )?;
        }
        let path = dir.join(format!("bench{i:03}-1.0-1.x86_64.rpm"));
        builder.build()?.write_file(&path)?;
        out.push(path);
        made += size;
        i += 1;
    }
    Ok(out)
}

fn install_vs_cpio(dir: &Path, rpms: &[PathBuf]) -> Result<(f64, f64)> {
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for round in 0..3 {
        let cpio_root = dir.join(format!("cpio-{round}"));
        std::fs::create_dir_all(&cpio_root)?;
        let t = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && shift && for f in \"$@\"; do rpm2cpio \"$f\" | cpio -idm --quiet || exit 1; done")
            .arg("sh")
            .arg(&cpio_root)
            .args(rpms)
            .status()?;
        if !status.success() {
            return Err("rpm2cpio | cpio failed (install rpm2cpio and cpio)".into());
        }
        base.push(t.elapsed().as_secs_f64());

        let root = dir.join(format!("root-{round}"));
        std::fs::create_dir_all(&root)?;
        let tx = Transaction {
            install: rpms
                .iter()
                .enumerate()
                .map(|(i, rpm)| TransactionPackage {
                    package: InstalledPackage {
                        id: PackageId::new(
                            format!("bench{i:03}"),
                            Evr::new(0, "1.0", "1"),
                            "x86_64",
                        ),
                        patch: None,
                        reboot_required: false,
                    },
                    rpm: rpm.clone(),
                })
                .collect(),
            remove: Vec::new(),
        };
        let t = Instant::now();
        let (mut installer, _) = BuiltinInstaller::open(&root)?;
        installer.apply(&tx)?;
        ours.push(t.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&cpio_root)?;
        std::fs::remove_dir_all(&root)?;
    }
    let med = |v: &mut Vec<f64>| support::median(v);
    Ok((med(&mut ours), med(&mut base)))
}

fn proc_stat(pid: u32) -> Result<(f64, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let kib = |field: &str| support::status_kib(&pid.to_string(), field);
    Ok((
        ticks / 100.0,
        kib("VmRSS:") / 1024.0,
        kib("VmHWM:") / 1024.0,
    ))
}

/// The controller's CPU share and memory while `agents` real agents report every second;
/// over TLS (a development CA, agents verifying against it) or plain HTTP.
fn controller_under_agents(
    dir: &Path,
    agents: usize,
    seconds: u64,
    over_tls: bool,
) -> Result<(f64, f64, f64)> {
    let dir = &dir.join(if over_tls { "tls" } else { "plain" });
    std::fs::create_dir_all(dir)?;
    let ca = over_tls
        .then(|| tls::dev_ca::create(&dir.join("ca"), &[]))
        .transpose()?;
    std::fs::create_dir_all(dir.join("feed"))?;
    std::fs::write(dir.join("token"), "bench-token\n")?;
    let (mut controller, addrs) = support::spawn_controller(
        support::controller_command()?
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args([
                "--release",
                "19.01",
                "--listen",
                "127.0.0.1:0",
                "--agent-listen",
                "127.0.0.1:0",
                "--vim-listen",
                "off",
            ])
            .arg("--agent-token-file")
            .arg(dir.join("token"))
            .args(ca.iter().flat_map(|ca| {
                [
                    "--tls-cert".into(),
                    ca.server_cert.clone().into_os_string(),
                    "--tls-key".into(),
                    ca.server_key.clone().into_os_string(),
                ]
            })),
    )?;
    let api = format!("http://{}", addrs["api"].as_str().unwrap_or_default());
    let scheme = if over_tls { "https" } else { "http" };
    let agent_url = format!(
        "{scheme}://{}",
        addrs["agent_api"].as_str().unwrap_or_default()
    );
    reqwest::blocking::Client::new()
        .post(format!(
            "{api}/v1/init_release/19.01?feed={}",
            dir.join("feed").display()
        ))
        .send()?;

    let runtime = tokio::runtime::Runtime::new()?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let personalities = [
        Personality::Controller,
        Personality::Worker,
        Personality::Storage,
    ];
    let mut tasks = Vec::new();
    for i in 0..agents {
        let root = dir.join("roots").join(format!("host-{i:03}"));
        std::fs::create_dir_all(&root)?;
        let agent = Arc::new(Agent::open(AgentConfig {
            ip: format!("10.0.{}.{}", i / 250, i % 250 + 1),
            heartbeat: Duration::from_secs(1),
            ca_bundle: ca.as_ref().map(|ca| ca.ca_cert.clone()),
            ..AgentConfig::new(
                &agent_url,
                "bench-token",
                format!("host-{i:03}"),
                personalities[i % 3],
                "19.01",
                root,
            )
        })?);
        tasks.push(runtime.spawn(agent.run(rx.clone())));
    }
    // Let every agent register, then measure a steady window.
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, _, _) = proc_stat(controller.id())?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, rss, hwm) = proc_stat(controller.id())?;
    let hosts: serde_json::Value =
        reqwest::blocking::get(format!("{api}/v1/query_hosts"))?.json()?;
    let reporting = hosts["data"].as_array().map_or(0, |a| a.len());
    let _ = stop.send(true);
    for t in tasks {
        let _ = runtime.block_on(t);
    }
    let _ = controller.kill();
    let _ = controller.wait();
    if reporting != agents {
        return Err(format!("only {reporting} of {agents} agents registered").into());
    }
    Ok(((cpu1 - cpu0) / t.elapsed().as_secs_f64(), rss, hwm))
}
