//! Slow and idle clients against a controller (a separate release process), with the
//! operators and agents it must keep serving timed side by side:
//!
//! * 2,000 connections to the TLS API that never send a byte;
//! * 600 uploads to the plain API dripping one byte a second;
//! * meanwhile, every second for `--seconds`: an operator's `apply`/`remove` of a small patch,
//!   `query` and `query_hosts`, and 50 enrolled hosts each posting a report over TLS.
//!
//! Reported: each operation's latency (p50, max) under that load and without it (the
//! baseline, same run), and when the idle connections were closed against the configured
//! head timeout.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release --example
//!       bench_slow_clients -- [--idle 2000] [--drips 600] [--seconds 30]`

#[path = "support/slow_clients.rs"]
mod slow_clients;
#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const HEAD_TIMEOUT_SECS: u64 = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let idle: usize = opt("--idle", "2000").parse()?;
    let drips: usize = opt("--drips", "600").parse()?;
    let seconds: u64 = opt("--seconds", "30").parse()?;
    let dir = std::path::absolute(PathBuf::from(opt("--dir", "target/bench-slow-clients")))?;
    let key = support::bench_dir(&dir, &[]).map_err(|e| e.to_string())?;
    slow_clients::raise_open_files();
    let setup = slow_clients::prepare(
        &dir,
        &key,
        &format!("head_timeout_secs = {HEAD_TIMEOUT_SECS}"),
    )?;
    let (mut controller, addrs) = support::spawn_controller(
        support::controller_command()
            .map_err(|e| e.to_string())?
            .args(&setup.args),
    )
    .map_err(|e| e.to_string())?;

    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let site = slow_clients::Site::new(&setup, &addrs, None)?;
        let hosts = site.populate(&setup, 50).await?;

        eprintln!("baseline: {seconds} s of operations without slow clients…");
        let quiet = site.operate(&hosts, seconds).await?;

        eprintln!("{idle} idle connections and {drips} dripping uploads…");
        let idle_tasks = site.open_idle(idle).await?;
        let drip_tasks = site.open_drips(&setup, drips)?;
        let loaded = site.operate(&hosts, seconds).await?;
        let mut closed = Vec::new();
        for t in idle_tasks {
            match tokio::time::timeout(Duration::from_secs(HEAD_TIMEOUT_SECS + 30), t).await {
                Ok(Ok(at)) => closed.push(at.as_secs_f64()),
                _ => closed.push(f64::INFINITY),
            }
        }
        for t in drip_tasks {
            t.abort();
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((quiet, loaded, closed))
    });
    let _ = controller.kill();
    let _ = controller.wait();
    let (quiet, loaded, mut closed) = result?;

    println!(
        "### Slow and idle clients, {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| operation, every 1 s for {seconds} s | under {idle} idle + {drips} dripping | alone (same run) | goal |"
    );
    println!("|---|---|---|---|");
    for (name, (mut under, mut alone)) in [
        ("apply / remove", (loaded.mutate, quiet.mutate)),
        ("query", (loaded.query, quiet.query)),
        ("query_hosts", (loaded.hosts, quiet.hosts)),
        (
            "50 agents' reports over TLS",
            (loaded.reports, quiet.reports),
        ),
    ] {
        println!(
            "| {name} | p50 {:.1} ms, max {:.1} ms | p50 {:.1} ms, max {:.1} ms | max < 1 s |",
            support::median(&mut under) * 1000.0,
            max(&under) * 1000.0,
            support::median(&mut alone) * 1000.0,
            max(&alone) * 1000.0
        );
    }
    closed.sort_by(f64::total_cmp);
    println!(
        "| idle connections closed by the server | first at {:.1} s, last at {:.1} s | head_timeout_secs = {HEAD_TIMEOUT_SECS} | |",
        closed.first().copied().unwrap_or(0.0),
        closed.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}
