//! Benchmarks of patch orchestration:
//!
//! * planning a strategy for 10,000 hosts (parallel workers, instances in anti-affinity
//!   groups, host aggregates): median time of `orchestrator::plan`;
//! * a reboot-required patch rolled out by a strategy across 1,000 real agents (the agent
//!   library, as tasks in this process, tiny roots) with parallel workers, max-parallel 100,
//!   against `sw-patch-controller` in its own process: the apply's wall time beside the ideal
//!   schedule (each stage's own fixed waits plus the lock/install/unlock time one host takes
//!   alone, measured on the single-host controller stages of the same run), and the
//!   controller's peak RSS.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release --example
//!       bench_strategy [-- --agents 1000 --plan-hosts 10000]`.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Agent, AgentConfig};
use host_state::{AdminState, Availability, OperState};
use orchestrator::{
    ApplyType, Collected, Instance, InventoryHost, PatchHost, PlanContext, ServerGroup,
    StrategyOptions, Timing,
};
use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Personality, Status};
use patch_sign::PrivateKey;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let agents: usize = opt("--agents", "1000").parse()?;
    let plan_hosts: usize = opt("--plan-hosts", "10000").parse()?;
    let dir = std::path::absolute(opt("--dir", "target/bench-strategy"))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;

    let (plan_ms, stages) = plan_time(plan_hosts)?;
    eprintln!("planned {plan_hosts} hosts into {stages} stages in {plan_ms:.1} ms (median of 5)");

    eprintln!("rolling a reboot-required patch out to {agents} agents…");
    let run = rollout(&dir, agents)?;

    println!(
        "### Orchestration, {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| measure | stx-patch | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| plan a strategy for {plan_hosts} hosts (parallel, max 100, instances, aggregates; median of 5) | {plan_ms:.1} ms ({stages} stages) | | | ≤ 100 ms |"
    );
    println!(
        "| apply a reboot-required patch to {agents} agents ({} stages, parallel workers, max 100) | {:.1} s | {:.1} s ideal schedule (Σ stage waits + {:.2} s one host's lock/install/unlock) | {:.3}× | ≤ 1.05× |",
        run.stages,
        run.actual,
        run.ideal,
        run.host_work,
        run.actual / run.ideal
    );
    println!(
        "| the same apply: wall time vs the sum of its stages' own durations (time between stages) | {:.1} s | {:.1} s | {:.3}× | ≤ 1.05× |",
        run.actual,
        run.stage_sum,
        run.actual / run.stage_sum
    );
    println!(
        "| controller peak RSS during that rollout | {:.1} MiB | | | ≤ 200 MiB |",
        run.peak_rss_mib
    );
    Ok(())
}

fn host(name: &str, personality: &str) -> InventoryHost {
    InventoryHost {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        personality: personality.into(),
        subfunctions: vec![personality.into()],
        admin: AdminState::Unlocked,
        oper: OperState::Enabled,
        availability: Availability::Available,
        openstack_compute: true,
        openstack_control: false,
        replication_group: None,
        aggregates: vec![],
    }
}

/// Plans 10,000 hosts: 2 controllers, 200 storage hosts in 2 replication groups, the rest
/// workers in 50 aggregates, half of them running 2 instances in 500 anti-affinity groups.
fn plan_time(hosts: usize) -> Result<(f64, usize)> {
    let mut inventory = vec![
        host("controller-0", "controller"),
        host("controller-1", "controller"),
    ];
    for i in 0..200.min(hosts / 10) {
        let mut s = host(&format!("storage-{i}"), "storage");
        s.replication_group = Some(format!("group-{}", i % 2));
        inventory.push(s);
    }
    let mut instances = Vec::new();
    let workers = hosts.saturating_sub(inventory.len());
    for i in 0..workers {
        let name = format!("compute-{i}");
        let mut w = host(&name, "worker");
        w.aggregates = vec![format!("aggregate-{}", i % 50)];
        if i % 2 == 0 {
            for k in 0..2 {
                instances.push(Instance {
                    name: format!("vm-{i}-{k}"),
                    uuid: format!("uuid-vm-{i}-{k}"),
                    host: name.clone(),
                    locked: false,
                    groups: vec![ServerGroup {
                        name: format!("sg-{}", (i * 2 + k) % 500),
                        policies: vec!["anti-affinity".into()],
                    }],
                });
            }
        }
        inventory.push(w);
    }
    let patch_hosts = inventory
        .iter()
        .map(|h| PatchHost {
            hostname: h.name.clone(),
            subfunctions: h.subfunctions.clone(),
            requires_reboot: true,
            patch_current: false,
            patch_failed: false,
            interim_state: false,
            last_error: None,
            state: "idle".into(),
        })
        .collect();
    let collected = Collected {
        inventory,
        patch_hosts,
        patch_count: 1,
        instances,
        local_controller: Some("controller-0".into()),
    };
    let options = StrategyOptions {
        storage_apply_type: ApplyType::Parallel,
        worker_apply_type: ApplyType::Parallel,
        max_parallel_worker_hosts: 100,
        ..StrategyOptions::default()
    };
    let timing = Timing::default();
    let ctx = PlanContext {
        options: &options,
        timing: &timing,
        single_controller: false,
        ignore_alarms: &[],
        alarm_baseline: &[],
        alarms: &[],
        now_secs: 0,
    };
    let mut times = Vec::new();
    let mut stages = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let planned = orchestrator::plan(&collected, &ctx)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        stages = planned.len();
    }
    Ok((support::median(&mut times), stages))
}

struct Rollout {
    stages: usize,
    actual: f64,
    /// Sum of the stages' own durations (the rest of the wall time is between stages).
    stage_sum: f64,
    ideal: f64,
    host_work: f64,
    peak_rss_mib: f64,
}

const TIMING: &str = "strategy_audit_ms = 100
host_offline_after_secs = 600
[strategy_timing]
swact_settle = 0
lock_no_disable_wait = 0
stabilize_after_install = 1
stabilize_in_service = 1
stabilize_final = 1
reboot_settle = 0
alarms_first_query = 0
data_sync_first_query = 0
";

fn peak_rss_mib(pid: u32) -> f64 {
    support::status_kib(&pid.to_string(), "VmHWM:") / 1024.0
}

fn rollout(dir: &Path, agents: usize) -> Result<Rollout> {
    for sub in ["feed", "keyring", "roots"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::write(dir.join("token"), "bench-token\n")?;
    let key = PrivateKey::generate(2048)?;
    std::fs::write(dir.join("keyring/dev.pem"), key.public_key().to_spki_pem()?)?;
    std::fs::write(
        dir.join("controller.toml"),
        format!(
            "state_dir = {:?}\nrelease = \"19.01\"\n{TIMING}",
            dir.join("state")
        ),
    )?;
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
    let api = format!("http://{}", addrs["api"].as_str().unwrap_or_default());
    let agent_url = format!("http://{}", addrs["agent_api"].as_str().unwrap_or_default());
    let vim = format!(
        "http://{}/api/orchestration/sw-patch/strategy",
        addrs["vim_api"].as_str().unwrap_or_default()
    );
    let http = reqwest::blocking::Client::new();
    http.post(format!(
        "{api}/v1/init_release/19.01?feed={}",
        dir.join("feed").display()
    ))
    .send()?;

    let runtime = tokio::runtime::Runtime::new()?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..agents {
        let (name, personality) = if i < 2 {
            (format!("controller-{i}"), Personality::Controller)
        } else {
            (format!("compute-{:04}", i - 2), Personality::Worker)
        };
        let root = dir.join("roots").join(&name);
        std::fs::create_dir_all(&root)?;
        let agent = Arc::new(Agent::open(AgentConfig {
            ip: format!("10.0.{}.{}", i / 250, i % 250 + 1),
            heartbeat: Duration::from_secs(1),
            ..AgentConfig::new(&agent_url, "bench-token", name, personality, "19.01", root)
        })?);
        tasks.push(runtime.spawn(agent.run(rx.clone())));
    }
    let hosts = || -> Result<Vec<Value>> {
        let v: Value = http.get(format!("{api}/v1/query_hosts")).send()?.json()?;
        Ok(v["data"].as_array().cloned().unwrap_or_default())
    };
    let wait = |what: &str, cond: &dyn Fn() -> Result<bool>| -> Result<()> {
        let start = Instant::now();
        while !cond()? {
            if start.elapsed() > Duration::from_secs(600) {
                return Err(format!("timed out waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    };
    wait("every agent registered", &|| Ok(hosts()?.len() == agents))?;

    // A reboot-required patch adding one small package to every host.
    let rpm = TestRpm::new("bench-fix", "1.0", "1")
        .file("/opt/bench-fix/data", "fixed\n")
        .build(dir);
    let mut m = PatchMetadata::new("BENCH_RR", "19.01");
    m.status = Status::Released;
    m.reboot_required = true;
    let mut builder = PatchBuilder::new(m);
    builder.add_rpm(&rpm, &Personality::ALL)?;
    let (patch, _) = builder.write_to_dir(dir, &key)?;
    let form = reqwest::blocking::multipart::Form::new().file("file", &patch)?;
    http.post(format!("{api}/v1/upload"))
        .multipart(form)
        .send()?;
    http.post(format!("{api}/v1/apply/BENCH_RR")).send()?;
    wait("every host settled on the patch", &|| {
        Ok(hosts()?
            .iter()
            .all(|h| h["interim_state"] == false && h["patch_current"] == false))
    })?;

    let body = json!({
        "controller-apply-type": "serial",
        "storage-apply-type": "serial",
        "worker-apply-type": "parallel",
        "max-parallel-worker-hosts": 100,
        "default-instance-action": "stop-start",
    });
    http.post(&vim).json(&body).send()?.error_for_status()?;
    let strategy = || -> Result<Value> {
        let v: Value = http.get(&vim).send()?.json()?;
        Ok(v["strategy"].clone())
    };
    wait("the build", &|| Ok(strategy()?["state"] != "building"))?;
    let built = strategy()?;
    if built["state"] != "ready-to-apply" {
        return Err(format!("build failed: {}", built["build-phase"]["reason"]).into());
    }
    let total = built["apply-phase"]["total-stages"].as_u64().unwrap_or(0) as usize;

    // Apply, timing each stage from outside.
    let start = Instant::now();
    http.post(format!("{vim}/actions"))
        .json(&json!({"action": "apply-all"}))
        .send()?
        .error_for_status()?;
    let mut stage_started = vec![None; total];
    let mut stage_ended = vec![None; total];
    // Per stage, per step: when it was first seen finished (for --verbose).
    let mut step_done: Vec<Vec<Option<f64>>> = vec![Vec::new(); total];
    let mut peak = 0.0f64;
    let finished = loop {
        let s = strategy()?;
        let now = start.elapsed().as_secs_f64();
        for (i, stage) in s["apply-phase"]["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if stage["result"] != "initial" && stage_started[i].is_none() {
                stage_started[i] = Some(now);
            }
            if !matches!(stage["result"].as_str(), Some("initial" | "inprogress"))
                && stage_ended[i].is_none()
            {
                stage_ended[i] = Some(now);
            }
            let steps = stage["steps"].as_array().map_or(0, Vec::len);
            step_done[i].resize(steps, None);
            for (k, step) in stage["steps"].as_array().into_iter().flatten().enumerate() {
                if !matches!(step["result"].as_str(), Some("initial" | "inprogress"))
                    && step_done[i][k].is_none()
                {
                    step_done[i][k] = Some(now);
                }
            }
        }
        peak = peak.max(peak_rss_mib(controller.id()));
        if !matches!(s["state"].as_str(), Some("applying")) {
            break s;
        }
        if start.elapsed() > Duration::from_secs(1800) {
            return Err("the apply did not finish in 30 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let actual = start.elapsed().as_secs_f64();
    peak = peak.max(peak_rss_mib(controller.id()));
    if finished["state"] != "applied" {
        return Err(format!(
            "the strategy ended {}: {}",
            finished["state"], finished["apply-phase"]["reason"]
        )
        .into());
    }
    // Each stage's fixed waits (stabilize timeouts), from the plan.
    let waits: Vec<f64> = finished["apply-phase"]["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|stage| {
            stage["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["step-name"] == "system-stabilize")
                .map(|x| x["timeout"].as_f64().unwrap_or(0.0))
                .sum()
        })
        .collect();
    // One host's own work: the single-host controller stages minus their waits.
    let mut single: Vec<f64> = (0..2.min(total))
        .filter_map(|i| Some(stage_ended[i]? - stage_started[i]? - waits[i]))
        .collect();
    let host_work = support::median(&mut single).max(0.0);
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for i in 0..total {
            let start = stage_started[i].unwrap_or(0.0);
            let mut prev = start;
            let steps: Vec<String> = finished["apply-phase"]["stages"][i]["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(&step_done[i])
                .map(|(step, done)| {
                    let d = done.unwrap_or(prev) - prev;
                    prev = done.unwrap_or(prev);
                    format!("{} {d:.2}", step["step-name"].as_str().unwrap_or(""))
                })
                .collect();
            eprintln!(
                "stage {i}: {:.2} s: {}",
                stage_ended[i].unwrap_or(0.0) - start,
                steps.join(", ")
            );
        }
    }
    let ideal = waits.iter().map(|w| w + host_work).sum::<f64>();
    let _ = stop.send(true);
    for t in tasks {
        let _ = runtime.block_on(t);
    }
    let _ = controller.kill();
    let _ = controller.wait();
    let all_current = finished["apply-phase"]["result"] == "success";
    if !all_current {
        return Err("not every stage succeeded".into());
    }
    let stage_sum = (0..total)
        .filter_map(|i| Some(stage_ended[i]? - stage_started[i]?))
        .sum();
    Ok(Rollout {
        stages: total,
        actual,
        stage_sum,
        ideal,
        host_work,
        peak_rss_mib: peak,
    })
}
