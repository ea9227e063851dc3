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

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const HEAD_TIMEOUT_SECS: u64 = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let idle: usize = opt("--idle", "2000").parse()?;
    let drips: usize = opt("--drips", "600").parse()?;
    let seconds: u64 = opt("--seconds", "30").parse()?;
    let dir = std::path::absolute(PathBuf::from(opt("--dir", "target/bench-slow-clients")))?;
    let key = support::bench_dir(&dir, &["rpms", "patches", "state"])?;
    raise_open_files();

    let rpm = TestRpm::new("slow", "1.0", "1").build(&dir.join("rpms"));
    let mut metadata = PatchMetadata::new("SLOW_0001", "19.01");
    metadata.status = Status::Released;
    let mut builder = PatchBuilder::new(metadata);
    builder.add_rpm(&rpm, &[])?;
    let patch = builder.write_to_dir(&dir.join("patches"), &key)?.0;

    let ca = tls::dev_ca::create(&dir.join("tls"), &[])?;
    std::fs::write(dir.join("agent-token"), "bench-agent\n")?;
    std::fs::write(dir.join("tokens"), "bench-admin\n")?;
    std::fs::write(
        dir.join("controller.toml"),
        format!(
            "state_dir = {:?}\nrelease = \"19.01\"\n[connections]\nhead_timeout_secs = {HEAD_TIMEOUT_SECS}\n",
            dir.join("state")
        ),
    )?;
    let (mut controller, addrs) = support::spawn_controller(
        support::controller_command()?
            .arg("--config")
            .arg(dir.join("controller.toml"))
            .arg("--keyring")
            .arg(dir.join("keyring"))
            .args(["--listen", "127.0.0.1:0", "--auth-listen", "127.0.0.1:0"])
            .args(["--agent-listen", "127.0.0.1:0", "--vim-listen", "off"])
            .arg("--auth-tokens-file")
            .arg(dir.join("tokens"))
            .arg("--agent-token-file")
            .arg(dir.join("agent-token"))
            .arg("--tls-cert")
            .arg(&ca.server_cert)
            .arg("--tls-key")
            .arg(&ca.server_key),
    )?;
    let addr = |k: &str| addrs[k].as_str().unwrap_or_default().to_owned();
    let (api, auth, agent) = (addr("api"), addr("auth_api"), addr("agent_api"));

    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let trust = tls::Trust::CaBundle(ca.ca_cert.clone());
        let plain = reqwest::Client::new();
        let secure = reqwest::Client::builder()
            .tls_backend_preconfigured(trust.client_config()?)
            .build()?;
        let api_url = format!("http://{api}");
        post(&plain, &format!("{api_url}/v1/init_release/19.01")).await?;
        let bytes = tokio::fs::read(&patch).await?;
        let part = reqwest::multipart::Part::bytes(bytes).file_name("SLOW_0001.patch");
        plain
            .post(format!("{api_url}/v1/upload"))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await?;
        let mut hosts = Vec::new();
        for i in 0..50 {
            let host = format!("compute-{i}");
            let r: serde_json::Value = secure
                .post(format!("https://{agent}/agent/v1/enrol"))
                .bearer_auth("bench-agent")
                .json(&serde_json::json!({ "hostname": host }))
                .send()
                .await?
                .json()
                .await?;
            let credential = r["credential"].as_str().ok_or("no credential")?.to_owned();
            hosts.push((host, credential));
        }
        let hosts = Arc::new(hosts);

        eprintln!("baseline: {seconds} s of operations without slow clients…");
        let quiet = operate(&plain, &secure, &api_url, &agent, &hosts, seconds).await?;

        eprintln!("{idle} idle connections and {drips} dripping uploads…");
        let started = Instant::now();
        let mut idle_tasks = Vec::new();
        for _ in 0..idle {
            let stream = tokio::net::TcpStream::connect(&auth).await?;
            idle_tasks.push(tokio::spawn(async move {
                let mut stream = stream;
                let mut buf = [0u8; 1];
                let _ = stream.read(&mut buf).await;
                started.elapsed()
            }));
        }
        let mut drip_tasks = Vec::new();
        for _ in 0..drips {
            let api = api.clone();
            drip_tasks.push(tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(&api).await else {
                    return;
                };
                let head = "POST /v1/upload?filename=drip.patch HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if s.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }));
        }
        let loaded = operate(&plain, &secure, &api_url, &agent, &hosts, seconds).await?;
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
        Ok::<_, Box<dyn std::error::Error>>((quiet, loaded, closed))
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

/// Latencies in seconds, per operation kind.
#[derive(Default)]
struct Latencies {
    mutate: Vec<f64>,
    query: Vec<f64>,
    hosts: Vec<f64>,
    reports: Vec<f64>,
}

async fn post(http: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let r: serde_json::Value = http.post(url).send().await?.json().await?;
    if r["error"].as_str().is_some_and(|e| !e.is_empty()) {
        return Err(format!("{url}: {}", r["error"]).into());
    }
    Ok(r)
}

async fn timed<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<f64> {
    let t = Instant::now();
    f.await?;
    Ok(t.elapsed().as_secs_f64())
}

async fn operate(
    plain: &reqwest::Client,
    secure: &reqwest::Client,
    api: &str,
    agent: &str,
    hosts: &Arc<Vec<(String, String)>>,
    seconds: u64,
) -> Result<Latencies> {
    let mut l = Latencies::default();
    for second in 0..seconds {
        let tick = Instant::now();
        let action = if second % 2 == 0 { "apply" } else { "remove" };
        l.mutate.push(
            timed(async {
                post(plain, &format!("{api}/v1/{action}/SLOW_0001")).await?;
                Ok(())
            })
            .await?,
        );
        let get = |action: &'static str| async move {
            plain
                .get(format!("{api}/v1/{action}"))
                .send()
                .await?
                .bytes()
                .await?;
            Ok(())
        };
        l.query.push(timed(get("query")).await?);
        l.hosts.push(timed(get("query_hosts")).await?);
        let reports = hosts.iter().map(|(host, credential)| {
            let body = serde_json::json!({
                "hostname": host, "ip": "127.0.0.1", "personality": "Worker",
                "subfunctions": ["worker"], "sw_version": "19.01", "install_state": "idle",
                "last_error": null, "reboot_pending": false, "boot_id": "b1", "installed": [],
                "op_counter": 0, "install_done": 0, "instance": "i1", "workloads": [],
                "workload_actions": false, "services_disabled": false
            });
            timed(async move {
                let r = secure
                    .post(format!("https://{agent}/agent/v1/report"))
                    .bearer_auth(credential)
                    .json(&body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("report: HTTP {}", r.status()).into());
                }
                Ok(())
            })
        });
        for r in futures_util::future::join_all(reports).await {
            l.reports.push(r?);
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    Ok(l)
}

/// This process holds thousands of sockets: the soft limit on open files goes up to the hard.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}
