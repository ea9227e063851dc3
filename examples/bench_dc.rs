//! Benchmark of the distributed cloud system controller at scale, on SQLite and on
//! PostgreSQL:
//!
//! * **rollout**: a subcloud patch strategy over 1,000 subclouds, parallel, max 100 (10
//!   stages), against the real `dc-controller` process and the real `sw-patch-controller`
//!   as the system controller. Its wall time is set beside the ideal the issue defines:
//!   Σ over stages of the time one subcloud's step takes alone — of the slowest kind of
//!   subcloud in that stage, each kind measured alone in the same run, on subclouds of
//!   their own. The dc-controller's peak RSS is read from `/proc`, and the CPU it and the
//!   subclouds used during the rollout.
//! * **steps list**: `GET /v1.0/sw-update-strategy/steps` with 5,000 subclouds in the
//!   strategy: p50 and p99 of 200 calls.
//!
//! Subclouds are of two kinds, mixed evenly (`--real N` of them real, so every stage has
//! its share):
//!
//! * **real**: the `sw-patch-controller` library, many per process (this one), each a
//!   simplex cloud whose one host is the `agent` library installing into a root of its
//!   own; reached over TLS with a token, as any subcloud. Each verifies and stores the
//!   uploaded patch, builds and runs its own VIM strategy (lock, install, unlock) and ends
//!   with the new package in its root, which is checked, as is that each created its
//!   strategy once.
//! * **protocol-faithful stand-ins** served by this process (one listener, `/sc/<n>` each):
//!   the patching API calls the system controller makes (`query`, `query_hosts`, `upload`
//!   of the signed file, `apply`, `remove`) and the orchestration API's patch strategy
//!   (create, `apply-all`, show, delete), whose apply takes `--apply-secs` before it is
//!   `applied`. Why not all real: 1,000 real subclouds fit in memory (about 0.3 GiB) but
//!   their own work does not fit two CPUs — a stage of 100 real ones took 2.2× one alone,
//!   which measures the subclouds' CPU, not the system controller (BENCHMARKS.md).
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release --example bench_dc
//!       [-- --subclouds 1000 --real 100 --list-subclouds 5000 --apply-secs 5 --poll-ms 500]`.
//! `BENCH_DC_LOG=info` shows the dc-controller's log (each step's states, timed).

#[path = "support/real_subclouds.rs"]
mod real_subclouds;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use real_subclouds::{Farm, RealSubcloud};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TOKEN: &str = "bench-operator";

/// One stand-in subcloud.
#[derive(Default)]
struct Standin {
    /// Patch id → repository state.
    patches: BTreeMap<String, String>,
    /// Whether its one host runs what is applied.
    current: bool,
    /// Its patch strategy: when it was applied (none: ready to apply).
    strategy: Option<Option<Instant>>,
    /// Successful creates of its strategy.
    creates: u32,
}

#[derive(Clone)]
struct Standins {
    clouds: Arc<Mutex<HashMap<usize, Standin>>>,
    apply_time: Duration,
}

impl Standins {
    fn with<T>(&self, n: usize, f: impl FnOnce(&mut Standin) -> T) -> T {
        let mut clouds = self.clouds.lock().unwrap_or_else(|e| e.into_inner());
        f(clouds.entry(n).or_insert_with(|| Standin {
            current: true,
            ..Standin::default()
        }))
    }
}

fn strategy_doc(s: &Standin, apply_time: Duration) -> Value {
    match s.strategy {
        None => json!({"strategy": null}),
        Some(applied_at) => {
            let state = match applied_at {
                None => "ready-to-apply",
                Some(t) if t.elapsed() >= apply_time => "applied",
                Some(_) => "applying",
            };
            json!({"strategy": {"state": state, "current-phase-completion-percentage": 0,
                "apply-phase": {"reason": ""}}})
        }
    }
}

/// The patching API of stand-in `n`.
async fn patching(
    State(st): State<Standins>,
    UrlPath((n, rest)): UrlPath<(usize, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    body: Bytes,
) -> Response {
    let mut parts = rest.split('/');
    let action = parts.next().unwrap_or_default();
    let ids: Vec<String> = parts.map(str::to_owned).collect();
    let reply = st.with(n, |s| match (method.as_str(), action) {
        ("GET", "query") => json!({"pd": s.patches.iter().map(|(id, state)| {
            (id.clone(), json!({"repostate": state, "patchstate": state}))
        }).collect::<serde_json::Map<_, _>>()}),
        ("GET", "query_hosts") => json!({"data": [{
            "hostname": "controller-0", "patch_current": s.current, "interim_state": false,
        }]}),
        ("POST", "upload") => {
            // The signed file arrives whole: a gzip stream named after its patch.
            let id = query
                .as_deref()
                .and_then(|q| q.strip_prefix("filename="))
                .and_then(|f| f.strip_suffix(".patch"))
                .unwrap_or_default()
                .to_owned();
            if body.len() < 100 || body[..2] != [0x1f, 0x8b] || id.is_empty() {
                return json!({"error": "not a patch file"});
            }
            s.patches.insert(id.clone(), "Available".into());
            json!({"info": format!("{id} is now available\n"), "warning": "", "error": ""})
        }
        ("POST", "apply") | ("POST", "remove") => {
            let to = if action == "apply" {
                "Applied"
            } else {
                "Available"
            };
            for id in &ids {
                s.patches.insert(id.clone(), to.into());
            }
            s.current = false;
            json!({"info": "", "warning": "", "error": ""})
        }
        _ => json!({"error": format!("{method} {action} is not served by the stand-in")}),
    });
    axum::Json(reply).into_response()
}

/// The orchestration API's patch strategy of stand-in `n`.
async fn strategy(
    State(st): State<Standins>,
    UrlPath(n): UrlPath<usize>,
    method: Method,
) -> Response {
    let apply_time = st.apply_time;
    st.with(n, |s| match method.as_str() {
        "GET" => axum::Json(strategy_doc(s, apply_time)).into_response(),
        "POST" if s.strategy.is_some() => (
            StatusCode::CONFLICT,
            axum::Json(json!({"faultstring": "strategy already exists of type:sw-patch"})),
        )
            .into_response(),
        "POST" => {
            s.strategy = Some(None);
            s.creates += 1;
            axum::Json(strategy_doc(s, apply_time)).into_response()
        }
        "DELETE" => {
            if matches!(s.strategy, Some(Some(t)) if t.elapsed() >= apply_time) {
                s.current = true;
            }
            s.strategy = None;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    })
}

async fn strategy_action(State(st): State<Standins>, UrlPath(n): UrlPath<usize>) -> Response {
    let apply_time = st.apply_time;
    st.with(n, |s| {
        if s.strategy == Some(None) {
            s.strategy = Some(Some(Instant::now()));
        }
        (
            StatusCode::ACCEPTED,
            axum::Json(strategy_doc(s, apply_time)),
        )
            .into_response()
    })
}

/// `dc-controller`, built beside this example.
fn dc_command(
    dir: &Path,
    database_url: &str,
    reference: &str,
    poll_ms: u64,
) -> Result<std::process::Command> {
    let bin = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("dc-controller"))
        .filter(|p| p.exists())
        .ok_or("build it first: cargo build --release --workspace --bins")?;
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n"))?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--listen", "127.0.0.1:0", "--print-addresses"])
        .arg("--state-dir")
        .arg(dir.join("dc"))
        .args(["--database-url", database_url])
        .args(["--system-controller-url", reference])
        .arg("--tokens-file")
        .arg(dir.join("tokens"))
        .args(["--audit-interval", "3600"])
        .args(["--strategy-poll-ms", &poll_ms.to_string()])
        .env(
            "STX_PATCH_LOG",
            std::env::var("BENCH_DC_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    Ok(cmd)
}

struct Dc {
    child: std::process::Child,
    url: String,
    http: reqwest::blocking::Client,
}

impl Drop for Dc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dc {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}/v1.0/{path}", self.url))
            .header("X-Auth-Token", TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send()?;
        let status = answer.status();
        let text = answer.text()?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {text}").into());
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    fn add(&self, name: &str, base: &str) -> Result<()> {
        self.add_with(
            name,
            json!({"name": name, "url": base, "vim-url": base, "token": "standin"}),
        )
    }

    /// Adds a real subcloud of `farm`, reached over TLS with its token.
    fn add_real(&self, name: &str, cloud: &RealSubcloud, farm: &Farm) -> Result<()> {
        self.add_with(
            name,
            json!({"name": name, "url": cloud.url, "vim-url": cloud.vim_url,
                "token": real_subclouds::TOKEN, "ca-pem": farm.ca_pem}),
        )
    }

    fn add_with(&self, name: &str, body: Value) -> Result<()> {
        self.call(reqwest::Method::POST, "subclouds", Some(body))?;
        self.call(
            reqwest::Method::PATCH,
            &format!("subclouds/{name}"),
            Some(json!({"management-state": "managed"})),
        )?;
        Ok(())
    }

    fn state(&self) -> Result<String> {
        let s = self.call(reqwest::Method::GET, "sw-update-strategy?type=patch", None)?;
        Ok(s["state"].as_str().unwrap_or_default().to_owned())
    }

    /// Applies the strategy and waits until it ends; the time it took.
    fn apply(&self) -> Result<Duration> {
        let start = Instant::now();
        self.call(
            reqwest::Method::POST,
            "sw-update-strategy/actions?type=patch",
            Some(json!({"action": "apply"})),
        )?;
        loop {
            match self.state()?.as_str() {
                "complete" => return Ok(start.elapsed()),
                "failed" | "aborted" => {
                    let steps =
                        self.call(reqwest::Method::GET, "sw-update-strategy/steps", None)?;
                    let failed: Vec<&Value> = steps["strategy-steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|s| s["state"] == "failed")
                        .take(3)
                        .collect();
                    return Err(format!("the strategy failed: {failed:?}").into());
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

struct Run {
    /// One stand-in subcloud's step alone (median of 3).
    single: Duration,
    /// One real subcloud's step alone (median of 3), when real ones take part.
    single_real: Option<Duration>,
    stages: u64,
    /// Stages with at least one real subcloud.
    real_stages: u64,
    /// Σ over stages of the longest alone time among the kinds of subcloud in it.
    ideal: f64,
    wall: Duration,
    peak_rss_mib: f64,
    /// CPU seconds over the rollout: the dc-controller's, and this process's (every
    /// subcloud, real and stand-in).
    cpu_dc: f64,
    cpu_subclouds: f64,
    list_p50: f64,
    list_p99: f64,
    list_bytes: usize,
}

/// What every run shares.
struct Bench<'a> {
    dir: &'a Path,
    reference: &'a str,
    standins: &'a Standins,
    standin_addr: std::net::SocketAddr,
    runtime: &'a tokio::runtime::Runtime,
    subclouds: usize,
    real: usize,
    list_subclouds: usize,
    poll_ms: u64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let subclouds: usize = opt("--subclouds", "1000").parse()?;
    let real: usize = opt("--real", "100").parse()?;
    let list_subclouds: usize = opt("--list-subclouds", "5000").parse()?;
    let apply_secs: f64 = opt("--apply-secs", "5").parse()?;
    let poll_ms: u64 = opt("--poll-ms", "500").parse()?;
    let dir = std::path::absolute(opt("--dir", "target/bench-dc"))?;
    if real > subclouds || list_subclouds < subclouds {
        return Err("--real ≤ --subclouds ≤ --list-subclouds".into());
    }
    let key = support::bench_dir(&dir, &["feed", "patches"])?;

    // The stand-in subclouds.
    let runtime = tokio::runtime::Runtime::new()?;
    let standins = Standins {
        clouds: Arc::new(Mutex::new(HashMap::new())),
        apply_time: Duration::from_secs_f64(apply_secs),
    };
    let app = Router::new()
        .route(
            "/sc/{n}/api/orchestration/sw-patch/strategy",
            axum::routing::any(strategy),
        )
        .route(
            "/sc/{n}/api/orchestration/sw-patch/strategy/actions",
            axum::routing::post(strategy_action),
        )
        .route("/sc/{n}/v1/{*rest}", axum::routing::any(patching))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(standins.clone());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let standin_addr = listener.local_addr()?;
    runtime.spawn(async move { axum::serve(listener, app).await });

    // The system controller's own controller, with one reboot-required patch applied.
    std::fs::write(
        dir.join("controller.toml"),
        format!("state_dir = {:?}\nrelease = \"19.01\"\n", dir.join("state")),
    )?;
    std::fs::write(dir.join("token"), "bench-agent-token\n")?;
    TestRpm::new("sysinv", "1.0", "230")
        .file("/usr/lib/sysinv/api.py", "VERSION = 230\n")
        .build(&dir.join("feed"));
    let (mut controller, addrs) = support::spawn_controller(
        support::controller_command()?
            .arg("--config")
            .arg(dir.join("controller.toml"))
            .arg("--keyring")
            .arg(dir.join("keyring"))
            .args(["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"])
            .args(["--vim-listen", "127.0.0.1:0"])
            .arg("--agent-token-file")
            .arg(dir.join("token")),
    )?;
    let reference = format!("http://{}", addrs["api"].as_str().unwrap_or_default());
    let http = reqwest::blocking::Client::new();
    http.post(format!(
        "{reference}/v1/init_release/19.01?feed={}",
        dir.join("feed").display()
    ))
    .send()?;
    let patch = {
        let mut metadata = PatchMetadata::new("DC_BENCH_0001", "19.01");
        metadata.status = Status::Released;
        metadata.reboot_required = true;
        let mut builder = PatchBuilder::new(metadata);
        std::fs::create_dir_all(dir.join("rpms"))?;
        let rpm = TestRpm::new("sysinv", "1.0", "231")
            .file("/usr/lib/sysinv/api.py", "VERSION = 231\n")
            .build(&dir.join("rpms"));
        builder.add_rpm(&rpm, &[])?;
        builder.write_to_dir(&dir.join("patches"), &key)?.0
    };
    let uploaded: Value = http
        .post(format!(
            "{reference}/v1/upload?filename=DC_BENCH_0001.patch"
        ))
        .body(std::fs::read(&patch)?)
        .send()?
        .json()?;
    if !uploaded["error"].as_str().unwrap_or_default().is_empty() {
        return Err(format!("upload: {uploaded}").into());
    }
    http.post(format!("{reference}/v1/apply/DC_BENCH_0001"))
        .send()?;

    let bench = Bench {
        dir: &dir,
        reference: &reference,
        standins: &standins,
        standin_addr,
        runtime: &runtime,
        subclouds,
        real,
        list_subclouds,
        poll_ms,
    };
    let mut runs = Vec::new();
    let postgres = dc_controller::test_postgres::Postgres::start();
    for (backend, url) in [
        (
            "SQLite",
            format!("sqlite://{}?mode=rwc", dir.join("dc.sqlite").display()),
        ),
        ("PostgreSQL", postgres.url()),
    ] {
        eprintln!("{backend}: {subclouds} subclouds, {real} of them real…");
        runs.push(bench.rollout(backend, &url)?);
    }
    let _ = controller.kill();
    let _ = controller.wait();

    println!(
        "### Distributed cloud, {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| measure | SQLite | PostgreSQL | goal |");
    println!("|---|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&Run) -> String, goal: &str| {
        println!("| {name} | {} | {} | {goal} |", f(&runs[0]), f(&runs[1]));
    };
    row(
        &format!(
            "one stand-in subcloud's step alone ({apply_secs} s apply, {poll_ms} ms poll; median of 3)"
        ),
        &|r| format!("{:.2} s", r.single.as_secs_f64()),
        "",
    );
    if real > 0 {
        row(
            "one real subcloud's step alone (median of 3)",
            &|r| format!("{:.2} s", r.single_real.unwrap_or_default().as_secs_f64()),
            "",
        );
    }
    row(
        &format!("{subclouds} subclouds ({real} real), parallel, max 100: wall time"),
        &|r| {
            format!(
                "{:.1} s ({} stages, {} with real ones)",
                r.wall.as_secs_f64(),
                r.stages,
                r.real_stages
            )
        },
        "",
    );
    row(
        "… vs the ideal (Σ stages × its subclouds' longest time alone)",
        &|r| {
            format!(
                "{:.3}× (ideal {:.1} s)",
                r.wall.as_secs_f64() / r.ideal,
                r.ideal
            )
        },
        "≤ 1.10×",
    );
    row(
        "dc-controller peak RSS",
        &|r| format!("{:.1} MiB", r.peak_rss_mib),
        "≤ 300 MiB",
    );
    row(
        "CPU over the rollout: dc-controller / subclouds (real and stand-in)",
        &|r| format!("{:.1} s / {:.1} s", r.cpu_dc, r.cpu_subclouds),
        "",
    );
    row(
        &format!("`strategy-step list`, {list_subclouds} subclouds (200 calls)"),
        &|r| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms ({} KiB)",
                r.list_p50,
                r.list_p99,
                r.list_bytes / 1024
            )
        },
        "p99 ≤ 100 ms",
    );
    Ok(())
}

/// Whether subcloud `n` of `total` is a real one: `real` of them, evenly spread, so that
/// every stage of 100 has its share.
fn is_real(n: usize, total: usize, real: usize) -> bool {
    n * real / total != (n + 1) * real / total
}

impl Bench<'_> {
    /// Runs the strategy on each of the subclouds `names` alone in turn and returns the
    /// median time.
    fn alone(&self, dc: &Dc, names: &[String]) -> Result<Duration> {
        let mut times = Vec::new();
        for name in names {
            dc.call(
                reqwest::Method::POST,
                "sw-update-strategy/",
                Some(json!({"type": "patch", "cloud_name": name})),
            )?;
            times.push(dc.apply()?.as_secs_f64());
            dc.call(
                reqwest::Method::DELETE,
                "sw-update-strategy?type=patch",
                None,
            )?;
            dc.call(
                reqwest::Method::PATCH,
                &format!("subclouds/{name}"),
                Some(json!({"management-state": "unmanaged"})),
            )?;
        }
        let median = support::median(&mut times);
        eprintln!("  alone: {times:.2?} s, median {median:.2} s");
        Ok(Duration::from_secs_f64(median))
    }

    fn rollout(&self, backend: &str, database_url: &str) -> Result<Run> {
        let dir = self.dir;
        self.standins
            .clouds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let _ = std::fs::remove_dir_all(dir.join("dc"));
        // Real subclouds of their own for each run (the last three measured alone).
        let farm = if self.real > 0 {
            let started = Instant::now();
            let farm = self.runtime.block_on(Farm::start(
                &dir.join(format!("real-{backend}")),
                self.real + 3,
                &dir.join("keyring"),
                &dir.join("feed"),
            ))?;
            eprintln!(
                "  {} real subclouds up in {:.1} s, this process's RSS {:.0} MiB",
                self.real + 3,
                started.elapsed().as_secs_f64(),
                support::status_kib("self", "VmRSS:") / 1024.0
            );
            Some(farm)
        } else {
            None
        };
        let (child, addrs) = support::spawn_controller(&mut dc_command(
            dir,
            database_url,
            self.reference,
            self.poll_ms,
        )?)?;
        let dc = Dc {
            child,
            url: format!("http://{}", addrs["api"].as_str().unwrap_or_default()),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
        };
        let base = |n: usize| format!("http://{}/sc/{n}", self.standin_addr);
        // Baseline: one subcloud alone, three times (three subclouds of their own, each
        // then left out of the big run); the median. Of each kind.
        let alone: Vec<String> = (0..3).map(|n| format!("alone{n}")).collect();
        let real_alone: Vec<String> = (0..3).map(|n| format!("alone-real{n}")).collect();
        for (n, name) in alone.iter().enumerate() {
            dc.add(name, &base(100_000 + n))?;
        }
        let mut reals = Vec::new();
        if let Some(farm) = &farm {
            for (n, name) in real_alone.iter().enumerate() {
                dc.add_real(name, &farm.clouds[self.real + n], farm)?;
            }
        }
        for n in 0..self.subclouds {
            let name = format!("sc{n:05}");
            match &farm {
                Some(farm) if is_real(n, self.subclouds, self.real) => {
                    dc.add_real(&name, &farm.clouds[reals.len()], farm)?;
                    reals.push(name);
                }
                _ => dc.add(&name, &base(n))?,
            }
        }
        wait_online(&dc, self.subclouds + if farm.is_some() { 6 } else { 3 })?;
        let single = self.alone(&dc, &alone)?;
        let single_real = match farm {
            Some(_) => Some(self.alone(&dc, &real_alone)?),
            None => None,
        };

        let created = dc.call(
            reqwest::Method::POST,
            "sw-update-strategy/",
            Some(json!({"type": "patch", "subcloud-apply-type": "parallel", "max-parallel-subclouds": 100})),
        )?;
        let stages = created["progress"]["stages"].as_u64().unwrap_or(0);
        // The ideal: each stage as long as the slowest kind of subcloud in it takes alone.
        let steps = dc.call(reqwest::Method::GET, "sw-update-strategy/steps", None)?;
        // (stage → (has a stand-in, has a real subcloud))
        let mut kinds: BTreeMap<i64, (bool, bool)> = BTreeMap::new();
        for step in steps["strategy-steps"].as_array().into_iter().flatten() {
            let cloud = step["cloud"].as_str().unwrap_or_default();
            let kind = kinds
                .entry(step["stage"].as_i64().unwrap_or(0))
                .or_default();
            if reals.iter().any(|r| r == cloud) {
                kind.1 = true;
            } else {
                kind.0 = true;
            }
        }
        let real_stages = kinds.values().filter(|k| k.1).count() as u64;
        let ideal: f64 = kinds
            .values()
            .map(|&(standin, real)| {
                let standin = if standin { single } else { Duration::ZERO };
                let real = match single_real {
                    Some(r) if real => r,
                    _ => Duration::ZERO,
                };
                standin.max(real).as_secs_f64()
            })
            .sum();
        let cpu_before = (
            support::cpu_seconds(&dc.pid()),
            support::cpu_seconds("self"),
        );
        let wall = dc.apply()?;
        let cpu_dc = support::cpu_seconds(&dc.pid()) - cpu_before.0;
        let cpu_subclouds = support::cpu_seconds("self") - cpu_before.1;
        eprintln!(
            "  CPU during the rollout: dc-controller {cpu_dc:.1} s, subclouds (this process) {cpu_subclouds:.1} s"
        );
        let peak_rss_mib = support::status_kib(&dc.pid(), "VmHWM:") / 1024.0;
        eprintln!(
            "  {} subclouds: {:.1} s (ideal {ideal:.1} s), peak RSS {peak_rss_mib:.1} MiB",
            self.subclouds,
            wall.as_secs_f64()
        );
        let twice: Vec<usize> = {
            let clouds = self
                .standins
                .clouds
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            clouds
                .iter()
                .filter(|(_, s)| s.creates > 1)
                .map(|(n, _)| *n)
                .collect()
        };
        if !twice.is_empty() {
            return Err(format!("strategies created twice on stand-ins {twice:?}").into());
        }
        if let Some(farm) = farm {
            self.runtime.block_on(check_real(&farm, self.real + 3))?;
            self.runtime.block_on(farm.stop());
        }
        dc.call(
            reqwest::Method::DELETE,
            "sw-update-strategy?type=patch",
            None,
        )?;

        // The steps list with `list_subclouds` in the strategy (stand-ins added; the real
        // ones, stopped, are unmanaged first).
        for name in &reals {
            dc.call(
                reqwest::Method::PATCH,
                &format!("subclouds/{name}"),
                Some(json!({"management-state": "unmanaged"})),
            )?;
        }
        let replaced = (0..self.subclouds).filter(|n| is_real(*n, self.subclouds, self.real));
        for n in replaced {
            dc.add(&format!("standin{n:05}"), &base(n))?;
        }
        for n in self.subclouds..self.list_subclouds {
            dc.add(&format!("sc{n:05}"), &base(n))?;
        }
        wait_online(&dc, self.list_subclouds)?;
        dc.call(
            reqwest::Method::POST,
            "sw-update-strategy/",
            Some(json!({"type": "patch"})),
        )?;
        let mut times = Vec::new();
        let mut list_bytes = 0;
        for _ in 0..200 {
            let start = Instant::now();
            let answer = dc
                .http
                .get(format!("{}/v1.0/sw-update-strategy/steps", dc.url))
                .header("X-Auth-Token", TOKEN)
                .send()?
                .bytes()?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            list_bytes = answer.len();
            let listed: Value = serde_json::from_slice(&answer)?;
            if listed["strategy-steps"].as_array().map(Vec::len) != Some(self.list_subclouds) {
                return Err("the steps list is short".into());
            }
        }
        times.sort_by(f64::total_cmp);
        let list_p50 = times[times.len() / 2];
        let list_p99 = times[times.len() * 99 / 100];
        eprintln!(
            "  steps list of {}: p50 {list_p50:.1} ms, p99 {list_p99:.1} ms",
            self.list_subclouds
        );
        Ok(Run {
            single,
            single_real,
            stages,
            real_stages,
            ideal,
            wall,
            peak_rss_mib,
            cpu_dc,
            cpu_subclouds,
            list_p50,
            list_p99,
            list_bytes,
        })
    }
}

/// Every real subcloud (the first `n` of the farm) ends as a patched subcloud should: the
/// patch applied in its store, its host current with the new package installed in its
/// root, and its own patch strategy created once.
async fn check_real(farm: &Farm, n: usize) -> Result<()> {
    let http = reqwest::Client::new();
    for cloud in &farm.clouds[..n] {
        // Read as the system controller reads it: its authenticated API, its CA.
        let access = dc_controller::Access {
            url: cloud.url.clone(),
            token: real_subclouds::TOKEN.to_owned(),
            ca_pem: Some(farm.ca_pem.clone()),
            vim_url: None,
        };
        let patches = dc_controller::audit::patches_of(&access, &cloud.plain_url).await?;
        let installed =
            std::fs::read_to_string(cloud.root.join("usr/lib/sysinv/api.py")).unwrap_or_default();
        let creates = cloud.strategy_creates(&http).await?;
        if patches.get("DC_BENCH_0001").map(String::as_str) != Some("Applied")
            || !cloud.current(&http).await?
            || installed != "VERSION = 231\n"
            || creates != 1
        {
            return Err(format!(
                "real subcloud {} not patched as it should be: {patches:?}, installed {installed:?}, {creates} strategy creates",
                cloud.plain_url
            )
            .into());
        }
    }
    Ok(())
}

/// Waits until the audit saw `n` managed subclouds online (it runs once at start and at
/// each manage).
fn wait_online(dc: &Dc, n: usize) -> Result<()> {
    let start = Instant::now();
    loop {
        let list = dc.call(reqwest::Method::GET, "subclouds", None)?;
        let online = list["subclouds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["availability-status"] == "online" && s["management-state"] == "managed")
            .count();
        if online >= n {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {online} of {n} subclouds came online").into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
