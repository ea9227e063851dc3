//! `sw-manager patch-strategy create|apply|abort|show|delete`: patch orchestration over the
//! strategy REST API, printing what the original client prints.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use crate::strategy_text::{ShowOptions, plan_text, strategy_text};
use crate::vim_client::{VimClient, VimError};
use anyhow::bail;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// Software update orchestration.
#[derive(Parser, Debug)]
#[command(name = "sw-manager", version, after_help = crate::EXIT_CODES)]
struct Args {
    #[command(flatten)]
    connection: crate::VimConnectionArgs,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Patch orchestration
    #[command(name = "patch-strategy", subcommand)]
    PatchStrategy(Command),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ControllerApply {
    Serial,
    Ignore,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ApplyType {
    Serial,
    Parallel,
    Ignore,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum InstanceAction {
    StopStart,
    Migrate,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AlarmRestrictions {
    Strict,
    Relaxed,
    /// Strict, except alarms already active at create (unless they get worse)
    Baseline,
}

fn name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a strategy (it builds at once; `show` tells when it is ready)
    Create {
        /// How controllers are patched
        #[arg(long, value_enum, default_value = "serial")]
        controller_apply_type: ControllerApply,
        /// How storage hosts are patched
        #[arg(long, value_enum, default_value = "serial")]
        storage_apply_type: ApplyType,
        /// How worker hosts are patched
        #[arg(long, value_enum, default_value = "serial")]
        worker_apply_type: ApplyType,
        /// Most workers patched at once when parallel (2..100)
        #[arg(long, value_parser = clap::value_parser!(u32).range(2..=100))]
        max_parallel_worker_hosts: Option<u32>,
        /// What happens to instances on hosts that must be locked
        #[arg(long, value_enum, default_value = "stop-start")]
        instance_action: InstanceAction,
        /// Which alarms block the strategy
        #[arg(long, value_enum, default_value = "strict")]
        alarm_restrictions: AlarmRestrictions,
        /// Keep going while at most N hosts have failed to install (0: stop at the first)
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_failed_hosts: u32,
        /// Show the plan and its predicted duration; store nothing
        #[arg(long)]
        dry_run: bool,
        /// Patch N hosts (workers first) in stages of their own first; the apply pauses
        /// after them until `apply` is called again (or --canary-soak passes)
        #[arg(long, value_name = "N", default_value_t = 0)]
        canary_hosts: u32,
        /// Go on by itself once the canaries stayed healthy this many seconds
        #[arg(long, value_name = "SECONDS", requires = "canary_hosts")]
        canary_soak: Option<u64>,
        /// After each host's install its health checks must keep passing this long
        #[arg(long, value_name = "SECONDS")]
        soak_seconds: Option<u64>,
        /// An alarm unchanged for this many seconds no longer blocks (named as ignored)
        #[arg(long, value_name = "SECONDS")]
        alarm_stale_after: Option<u64>,
        /// Create even though the precheck warns (a failing precheck always refuses)
        #[arg(long)]
        force: bool,
        /// Wait until the build finishes
        #[arg(long)]
        wait: bool,
    },
    /// Apply the strategy (all stages, or one)
    Apply {
        /// Apply only this stage
        #[arg(long)]
        stage_id: Option<u32>,
        /// Wait until it finishes, showing progress on a terminal
        #[arg(long)]
        wait: bool,
    },
    /// Abort the strategy (the running step finishes; the stage's changes are undone)
    Abort {
        /// The stage being applied
        #[arg(long)]
        stage_id: Option<u32>,
        /// Wait until the abort finishes
        #[arg(long)]
        wait: bool,
    },
    /// Show the strategy
    Show {
        /// Phases, stages and steps
        #[arg(long)]
        details: bool,
        /// Only what is in progress
        #[arg(long)]
        active: bool,
        /// Error responses
        #[arg(long)]
        error_details: bool,
    },
    /// Delete the strategy
    Delete {
        #[arg(long, hide = true)]
        force: bool,
    },
}

const STRATEGY: &str = "/api/orchestration/sw-patch/strategy";

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    crate::run(|| {
        let args = Args::parse_from(args);
        let url = args.connection.region.base_url(
            crate::RegionApi::Vim,
            &args.connection.url,
            args.connection.token.as_deref(),
        )?;
        let client = VimClient::new(
            &url,
            args.connection.token.clone(),
            args.connection.tls.trust().as_ref(),
        )?;
        let Top::PatchStrategy(command) = args.command;
        let out = args.connection.format;
        let print = |strategy: &Value, opts: ShowOptions| {
            if out.structured() {
                println!("{}", out.render(strategy).unwrap_or_default());
            } else {
                print!("{}", strategy_text(strategy, opts));
            }
        };
        match command {
            Command::Create {
                controller_apply_type,
                storage_apply_type,
                worker_apply_type,
                max_parallel_worker_hosts,
                instance_action,
                alarm_restrictions,
                max_failed_hosts,
                dry_run,
                alarm_stale_after,
                canary_hosts,
                canary_soak,
                soak_seconds,
                force,
                wait,
            } => {
                let mut body = json!({
                    "controller-apply-type": name(controller_apply_type),
                    "storage-apply-type": name(storage_apply_type),
                    "swift-apply-type": "ignore",
                    "worker-apply-type": name(worker_apply_type),
                    "default-instance-action": name(instance_action),
                    "alarm-restrictions": name(alarm_restrictions),
                    "max-failed-hosts": max_failed_hosts,
                    "dry-run": dry_run,
                });
                if force {
                    body["force"] = json!(true);
                }
                if let Some(secs) = alarm_stale_after {
                    body["alarm-stale-after"] = json!(secs);
                }
                if canary_hosts > 0 {
                    body["canary-hosts"] = json!(canary_hosts);
                }
                if let Some(secs) = canary_soak {
                    body["canary-soak"] = json!(secs);
                }
                if let Some(secs) = soak_seconds {
                    body["soak-seconds"] = json!(secs);
                }
                if let Some(n) = max_parallel_worker_hosts {
                    body["max-parallel-worker-hosts"] = json!(n);
                }
                let reply = client.post(STRATEGY, &body).map_err(explain)?;
                if dry_run {
                    if out.structured() {
                        println!("{}", out.render(&reply)?);
                    } else if reply["dry-run"].is_null() {
                        bail!(
                            "the strategy cannot be built: {}",
                            reply["reason"].as_str().unwrap_or("")
                        );
                    } else {
                        print!("{}", plan_text(&reply["dry-run"]));
                    }
                    return Ok(());
                }
                let strategy = if wait {
                    wait_for(&client, |s| s["state"] != "building")?
                } else {
                    reply["strategy"].clone()
                };
                print(&strategy, ShowOptions::default());
                if wait && strategy["state"] != "ready-to-apply" {
                    bail!(
                        "the strategy was not built: {}",
                        strategy["build-phase"]["reason"].as_str().unwrap_or("")
                    );
                }
            }
            Command::Apply { stage_id, wait } => {
                let body = match stage_id {
                    Some(id) => json!({"action": "apply-stage", "stage-id": id}),
                    None => json!({"action": "apply-all"}),
                };
                let reply =
                    client
                        .post(&format!("{STRATEGY}/actions"), &body)
                        .map_err(|e| match (e, stage_id) {
                            (VimError::NotFound(_), Some(id)) => {
                                anyhow::anyhow!("Strategy stage {id} apply failed")
                            }
                            (VimError::NotFound(_), None) => {
                                anyhow::anyhow!("Strategy apply failed")
                            }
                            (e, _) => explain(e),
                        })?;
                if !wait {
                    print(&reply["strategy"], ShowOptions::default());
                    return Ok(());
                }
                let done = wait_for(&client, |s| !running(s))?;
                print(&done, ShowOptions::default());
                let paused = done["state"] == "applying";
                if done["state"] != "applied" && !paused {
                    bail!(
                        "the strategy ended {}: {}",
                        done["state"].as_str().unwrap_or(""),
                        done["apply-phase"]["reason"].as_str().unwrap_or("")
                    );
                }
            }
            Command::Abort { stage_id, wait } => {
                let body = json!({"action": "abort-stage", "stage-id": stage_id});
                let reply =
                    client
                        .post(&format!("{STRATEGY}/actions"), &body)
                        .map_err(|e| match (e, stage_id) {
                            (VimError::NotFound(_), Some(id)) => {
                                anyhow::anyhow!("Strategy stage {id} abort failed")
                            }
                            (VimError::NotFound(_), None) => {
                                anyhow::anyhow!("Strategy abort failed")
                            }
                            (e, _) => explain(e),
                        })?;
                let strategy = if wait {
                    wait_for(&client, |s| !running(s))?
                } else {
                    reply["strategy"].clone()
                };
                print(&strategy, ShowOptions::default());
            }
            Command::Show {
                details,
                active,
                error_details,
            } => {
                let reply = client.get(STRATEGY).map_err(explain)?;
                if reply["strategy"].is_null() {
                    if out.structured() {
                        println!("null");
                    } else {
                        println!("No strategy available");
                    }
                    return Ok(());
                }
                print(
                    &reply["strategy"],
                    ShowOptions {
                        details,
                        active,
                        error_details,
                    },
                );
            }
            Command::Delete { force } => {
                client
                    .delete(STRATEGY, Some(&json!({"force": force})))
                    .map_err(|e| match e {
                        VimError::NotFound(_) => anyhow::anyhow!("Strategy delete failed"),
                        e => explain(e),
                    })?;
                println!("Strategy deleted");
            }
        }
        Ok(())
    })
}

fn explain(e: VimError) -> anyhow::Error {
    match e {
        VimError::NotFound(m) => anyhow::anyhow!("No strategy available ({m})"),
        other => anyhow::Error::new(other),
    }
}

/// Whether the strategy is still moving on its own (not paused after an apply-stage).
fn running(s: &Value) -> bool {
    match s["state"].as_str().unwrap_or("") {
        "building" | "aborting" | "apply-failed" | "apply-timeout" => true,
        "applying" => {
            let p = &s["apply-phase"];
            let stage_running = p["stages"]
                .as_array()
                .and_then(|st| st.get(p["current-stage"].as_u64().unwrap_or(0) as usize))
                .is_some_and(|st| st["inprogress"] == true);
            stage_running || p["current-stage"] != p["stop-at-stage"]
        }
        _ => false,
    }
}

/// Polls the strategy until `done`, with a progress bar on a terminal.
fn wait_for(client: &VimClient, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(100);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    loop {
        let reply = client.get(STRATEGY).map_err(explain)?;
        let s = reply["strategy"].clone();
        if s.is_null() {
            bail!("the strategy was deleted");
        }
        if let Some(bar) = &bar {
            bar.set_position(
                s["current-phase-completion-percentage"]
                    .as_u64()
                    .unwrap_or(0),
            );
            let phase = &s[format!("{}-phase", s["current-phase"].as_str().unwrap_or("build"))];
            let stage = phase["stages"]
                .as_array()
                .and_then(|st| st.get(phase["current-stage"].as_u64().unwrap_or(0) as usize));
            let step = stage.and_then(|st| {
                st["steps"]
                    .as_array()
                    .and_then(|x| x.get(st["current-step"].as_u64().unwrap_or(0) as usize))
            });
            bar.set_message(format!(
                "{} · stage {}/{} {} · {} {}",
                s["state"].as_str().unwrap_or(""),
                phase["current-stage"].as_u64().unwrap_or(0) + 1,
                phase["total-stages"],
                stage.and_then(|x| x["stage-name"].as_str()).unwrap_or(""),
                step.and_then(|x| x["step-name"].as_str()).unwrap_or(""),
                step.and_then(|x| x["entity-names"].as_array())
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default(),
            ));
            bar.tick();
        }
        if done(&s) {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
