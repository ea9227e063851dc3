//! `sw-patch`: the patching command-line client.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{ApiClient, print_outcome};
use crate::tables::{app_table, hosts_table, query_table, show_text};
use crate::{ConnectionArgs, OutputFormat, run};
use anyhow::bail;
use clap::{FromArgMatches, Parser, Subcommand};
use serde_json::Value;

/// Manage software patches on a StarlingX system through the controller's patching API.
#[derive(Parser, Debug)]
#[command(name = "sw-patch", version, after_help = crate::EXIT_CODES)]
struct Args {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Print the controller's answers as they come (JSON), as the original's --debug
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

/// The original's rule for the system controller's region: the commands that act on the
/// system controller's own hosts are refused in it.
fn check_system_controller_region(region: Option<&str>, action: &str) -> anyhow::Result<()> {
    if region == Some(crate::SYSTEM_CONTROLLER_REGION)
        && matches!(
            action,
            "query-hosts" | "host-install" | "host-install-async" | "install-local" | "drop-host"
        )
    {
        bail!(
            "{action} command is not allowed in {} region",
            crate::SYSTEM_CONTROLLER_REGION
        );
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload patch files to the patch store
    Upload {
        /// .patch files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Upload every *.patch in directories (paths on the controller)
    UploadDir {
        /// Directories
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Apply patches (put them in the software repository)
    Apply {
        /// Patch IDs
        ids: Vec<String>,
        /// Apply every available patch
        #[arg(long)]
        all: bool,
        /// Skip the pre-apply semantic checks
        #[arg(long)]
        skip_semantic: bool,
    },
    /// Remove patches from the software repository
    Remove {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
        /// Skip the application dependency check
        #[arg(long)]
        skipappcheck: bool,
        /// Skip the pre-remove semantic checks
        #[arg(long)]
        skip_semantic: bool,
        /// Remove unremovable patches too
        #[arg(long, hide = true)]
        removeunremovable: bool,
    },
    /// Delete available patches from the patch store
    Delete {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List patches
    Query {
        /// all, available, applied or committed
        #[arg(default_value = "all", value_parser = ["all", "available", "applied", "committed"])]
        which: String,
        /// Only patches for this release
        #[arg(long)]
        release: Option<String>,
    },
    /// Show patch details
    Show {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the patches that require the given ones
    WhatRequires {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the patches the given ones require
    QueryDependencies {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
        /// Follow requirements transitively
        #[arg(long)]
        recursive: bool,
    },
    /// Whether all the given patches are applied
    IsApplied {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Whether all the given patches are available
    IsAvailable {
        /// Patch IDs
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Commit patches (irreversible): they can no longer be removed
    Commit {
        /// Patch IDs (their requirements are committed too)
        ids: Vec<String>,
        /// Commit every patch of the release
        #[arg(long)]
        all: bool,
        /// Release for --all (default: the running release)
        #[arg(long)]
        release: Option<String>,
        /// Only report what would be committed and freed
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Record that an application depends on patches (no IDs: forget the application)
    ReportAppDependencies {
        /// Patch IDs
        ids: Vec<String>,
        /// Application name
        #[arg(long, required = true)]
        app: String,
    },
    /// List application dependencies on patches
    QueryAppDependencies,
    /// List hosts and whether they are patch current
    QueryHosts,
    /// Check whether the cluster is fit to take patches now (exits non-zero on a failure)
    Precheck {
        /// Patches about to be applied (default: the applied ones still rolling out)
        ids: Vec<String>,
        /// Which alarms count: strict (all) or relaxed (management-affecting only)
        #[arg(long, default_value = "strict", value_parser = ["strict", "relaxed"])]
        alarm_restrictions: String,
    },
    /// Install the applied patches on a host and wait for the result
    HostInstall {
        /// Host name or IP address
        host: String,
        /// Install reboot-required patches even on an unlocked host
        #[arg(long)]
        force: bool,
    },
    /// Ask a host to install the applied patches, without waiting
    HostInstallAsync {
        /// Host name or IP address
        host: String,
        /// Install reboot-required patches even on an unlocked host
        #[arg(long)]
        force: bool,
    },
    /// Boot-time install on this host: runs `sw-patch-agent --install-local` with the agent's
    /// configuration
    InstallLocal {
        /// The agent's configuration file
        #[arg(long, default_value = "/etc/stx-patch/agent.toml")]
        config: PathBuf,
    },
    /// Return one host to the versions it had before applied patches, while the other hosts
    /// keep them: the host is held back from the patches, then installs and the result is
    /// waited for (a reboot-required patch needs the host locked, as any install)
    HostRollback {
        /// Host name or IP address
        host: String,
        /// The patches to roll back from
        patches: Vec<String>,
        /// Every applied patch that is not committed
        #[arg(long, conflicts_with = "patches")]
        all: bool,
        /// Install reboot-required changes even on an unlocked host
        #[arg(long)]
        force: bool,
    },
    /// Let a rolled-back host take every applied patch again (then host-install it)
    HostRelease {
        /// Host name or IP address
        host: String,
    },
    /// Forget a host (it reappears when its agent reports again)
    DropHost {
        /// Host name or IP address
        host: String,
    },
    /// Import a release's base load
    InitRelease {
        /// Release, e.g. 19.01
        release: String,
        /// Directory of the base load's RPMs (on the controller)
        #[arg(long)]
        feed: Option<PathBuf>,
        /// Packages of the base load only one node type installs: TYPE=pkg1,pkg2 (repeatable;
        /// other packages are for every node type)
        #[arg(long = "personality", value_name = "TYPE=PKGS")]
        personalities: Vec<String>,
    },
    /// Delete a release (not the running one)
    DelRelease {
        /// Release
        release: String,
    },
}

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    run(|| {
        let matches = command().get_matches_from(args);
        let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        check_system_controller_region(
            args.connection.region.region.as_deref(),
            matches.subcommand_name().unwrap_or_default(),
        )?;
        let url = args.connection.region.base_url(
            crate::RegionApi::Patching,
            &args.connection.url,
            args.connection.token.as_deref(),
        )?;
        let client = ApiClient::new(
            &url,
            args.connection.token.clone(),
            args.connection.tls.trust().as_ref(),
        )?;
        let out = if args.debug {
            OutputFormat::Debug
        } else {
            args.connection.format
        };
        let failed = match args.command {
            Command::Upload { files } => {
                let mut failed = false;
                for file in dedup(files) {
                    let value = client.upload(&file)?;
                    failed |= emit(&value, out);
                }
                failed
            }
            Command::UploadDir { dirs } => {
                let query: Vec<(&str, String)> = dirs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let abs = std::path::absolute(d).unwrap_or_else(|_| d.clone());
                        (
                            DIR_KEYS.get(i).copied().unwrap_or("dir"),
                            abs.to_string_lossy().into_owned(),
                        )
                    })
                    .collect();
                emit(&client.post("upload_dir", &[], &query)?, out)
            }
            Command::Apply {
                mut ids,
                all,
                skip_semantic,
            } => {
                if all {
                    ids.push("--all".into());
                } else if ids.is_empty() {
                    bail!("give patch IDs or --all");
                }
                emit(
                    &client.post(
                        "apply",
                        &ids,
                        &yes_flags(&[("skip-semantic", skip_semantic)]),
                    )?,
                    out,
                )
            }
            Command::Remove {
                ids,
                skipappcheck,
                skip_semantic,
                removeunremovable,
            } => emit(
                &client.post(
                    "remove",
                    &ids,
                    &yes_flags(&[
                        ("skipappcheck", skipappcheck),
                        ("skip-semantic", skip_semantic),
                        ("removeunremovable", removeunremovable),
                    ]),
                )?,
                out,
            ),
            Command::Delete { ids } => emit(&client.post("delete", &ids, &[])?, out),
            Command::Query { which, release } => {
                let mut query = vec![("show", which)];
                if let Some(r) = release {
                    query.push(("release", r));
                }
                let value = client.get("query", &[], &query)?;
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    print!("{}", query_table(&value));
                }
                false
            }
            Command::Show { ids } => {
                let value = client.post("show", &ids, &[])?;
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    print!("{}", show_text(&value, &ids));
                }
                let error = value.get("error").and_then(Value::as_str).unwrap_or("");
                if !error.is_empty() {
                    eprint!("{error}");
                }
                !error.is_empty()
            }
            Command::WhatRequires { ids } => emit(&client.get("what_requires", &ids, &[])?, out),
            Command::QueryDependencies { ids, recursive } => {
                let value = client.get(
                    "query_dependencies",
                    &ids,
                    &yes_flags(&[("recursive", recursive)]),
                )?;
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    for id in value
                        .get("patches")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        println!("{}", id.as_str().unwrap_or(""));
                    }
                }
                let error = value.get("error").and_then(Value::as_str).unwrap_or("");
                if !error.is_empty() {
                    eprint!("{error}");
                }
                !error.is_empty()
            }
            Command::IsApplied { ids } => print_bool(&client.post("is_applied", &ids, &[])?, out),
            Command::IsAvailable { ids } => {
                print_bool(&client.post("is_available", &ids, &[])?, out)
            }
            Command::Commit {
                ids,
                all,
                release,
                dry_run,
                yes,
            } => commit(&client, ids, all, release, dry_run, yes, out)?,
            Command::ReportAppDependencies { ids, app } => {
                let value = client.post("report_app_dependencies", &ids, &[("app", app)])?;
                if out.structured() {
                    println!("{value}");
                }
                if value.as_bool() == Some(true) {
                    false
                } else {
                    emit(&value, out)
                }
            }
            Command::QueryAppDependencies => {
                let value = client.post("query_app_dependencies", &[], &[])?;
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    print!("{}", app_table(&value));
                }
                false
            }
            Command::InitRelease {
                release,
                feed,
                personalities,
            } => {
                let mut query = Vec::new();
                for spec in &personalities {
                    let Some((kind, packages)) = spec.split_once('=') else {
                        bail!("--personality takes TYPE=pkg1,pkg2, got {spec:?}");
                    };
                    query.push((personality_key(kind)?, packages.to_owned()));
                }
                if let Some(feed) = feed {
                    let abs = std::path::absolute(&feed).unwrap_or(feed);
                    query.push(("feed", abs.to_string_lossy().into_owned()));
                }
                emit(&client.post("init_release", &[release], &query)?, out)
            }
            Command::QueryHosts => {
                let value = client.get("query_hosts", &[], &[])?;
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    print!("{}", hosts_table(&value));
                }
                false
            }
            Command::Precheck {
                ids,
                alarm_restrictions,
            } => {
                let value = client.get(
                    "precheck",
                    &ids,
                    &[("alarm_restrictions", alarm_restrictions)],
                )?;
                if let Some(error) = value["error"].as_str().filter(|e| !e.is_empty()) {
                    bail!("{}", error.trim_end());
                }
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    print!("{}", crate::tables::precheck_table(&value));
                }
                value["result"] != "pass" && value["result"] != "warn"
            }
            Command::HostInstallAsync { host, force } => {
                let mut ids = vec![host];
                if force {
                    ids.push("force".into());
                }
                emit(&client.post("host_install_async", &ids, &[])?, out)
            }
            Command::HostInstall { host, force } => host_install(&client, host, force, out)?,
            Command::InstallLocal { config } => {
                let agent = std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.join("sw-patch-agent")))
                    .filter(|p| p.exists())
                    .unwrap_or_else(|| PathBuf::from("sw-patch-agent"));
                let status = std::process::Command::new(&agent)
                    .arg("--config")
                    .arg(&config)
                    .arg("--install-local")
                    .status()
                    .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", agent.display()))?;
                if status.success() && !out.structured() {
                    println!("Patch installation is complete.");
                }
                !status.success()
            }
            Command::DropHost { host } => emit(&client.post("drop_host", &[host], &[])?, out),
            Command::HostRollback {
                host,
                patches,
                all,
                force,
            } => {
                let mut ids = vec![host.clone()];
                ids.extend(patches);
                let query: &[(&str, String)] = if all { &[("all", "yes".into())] } else { &[] };
                let held = client.post("host_rollback", &ids, query)?;
                if emit(&held, out) {
                    true
                } else {
                    host_install(&client, host, force, out)?
                }
            }
            Command::HostRelease { host } => emit(&client.post("host_release", &[host], &[])?, out),
            Command::DelRelease { release } => {
                emit(&client.post("del_release", &[release], &[])?, out)
            }
        };
        if failed {
            bail!("the operation failed");
        }
        Ok(())
    })
}

const DIR_KEYS: [&str; 16] = [
    "dir0", "dir1", "dir2", "dir3", "dir4", "dir5", "dir6", "dir7", "dir8", "dir9", "dir10",
    "dir11", "dir12", "dir13", "dir14", "dir15",
];

/// The query key for a node type's base-load list.
fn personality_key(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "controller" => "personality-controller",
        "worker" => "personality-worker",
        "worker-lowlatency" => "personality-worker-lowlatency",
        "storage" => "personality-storage",
        "controller-worker" => "personality-controller-worker",
        "controller-worker-lowlatency" => "personality-controller-worker-lowlatency",
        other => bail!("unknown node type {other:?}"),
    })
}

fn dedup(files: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeSet::new();
    files
        .into_iter()
        .filter(|f| seen.insert(f.clone()))
        .collect()
}

fn yes_flags(flags: &[(&'static str, bool)]) -> Vec<(&'static str, String)> {
    flags
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| (*k, "yes".to_owned()))
        .collect()
}

/// Prints a `{info, warning, error}` result; returns whether it failed.
fn emit(value: &Value, out: OutputFormat) -> bool {
    if out.structured() {
        println!("{}", out.render(value).unwrap_or_default());
        return value
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty());
    }
    print_outcome(value)
}

fn print_bool(value: &Value, out: OutputFormat) -> bool {
    let b = value.as_bool().unwrap_or(false);
    if out.structured() {
        println!("{b}");
    } else {
        // The original client prints Python's bool.
        println!("{}", if b { "True" } else { "False" });
    }
    false
}

/// `host-install`: order the install, then poll `query_hosts` until the host is done.
fn host_install(
    client: &ApiClient,
    host: String,
    force: bool,
    out: OutputFormat,
) -> anyhow::Result<bool> {
    let mut ids = vec![host.clone()];
    if force {
        ids.push("force".into());
    }
    let ordered = client.post("host_install_async", &ids, &[])?;
    // As the original: the order's own "request sent" is not printed, only its failure.
    let refused = ordered
        .get("error")
        .and_then(Value::as_str)
        .is_some_and(|e| !e.is_empty());
    if (out.structured() || refused) && emit(&ordered, out) {
        return Ok(true);
    }
    let started = std::time::Instant::now();
    let mut misses = 0;
    let spinner = (!out.structured() && std::io::stderr().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("installing on {host}"));
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    });
    let _clear = ClearOnDrop(spinner);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let hosts = match client.get("query_hosts", &[], &[]) {
            Ok(v) => v,
            Err(e) if misses < 4 => {
                misses += 1;
                eprintln!("warning: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let found = hosts.get("data").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|h| h["hostname"] == host.as_str() || h["ip"] == host.as_str())
                .cloned()
        });
        let Some(h) = found else {
            misses += 1;
            if misses > 4 {
                bail!("{host} is no longer reported by the controller");
            }
            continue;
        };
        let state = h["state"].as_str().unwrap_or("");
        if state == "installing" || h["interim_state"].as_bool() == Some(true) {
            if started.elapsed() > std::time::Duration::from_secs(3600) {
                bail!("{host} is still installing after an hour");
            }
            continue;
        }
        let reason = h["last_error"].as_str().unwrap_or("").to_owned();
        return Ok(match state {
            "install-rejected" => {
                eprintln!(
                    "Installation rejected. {}",
                    if reason.is_empty() {
                        "Node must be locked."
                    } else {
                        &reason
                    }
                );
                true
            }
            "install-failed" => {
                eprintln!(
                    "Installation failed: {}",
                    if reason.is_empty() {
                        "please check the agent's log"
                    } else {
                        &reason
                    }
                );
                true
            }
            _ => {
                if !out.structured() {
                    // The original ends its line of progress dots with the newline first.
                    println!("\nInstallation was successful.");
                }
                false
            }
        });
    }
}

/// Clears a progress spinner when the wait ends, however it ends.
struct ClearOnDrop(Option<indicatif::ProgressBar>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.finish_and_clear();
        }
    }
}

fn commit(
    client: &ApiClient,
    ids: Vec<String>,
    all: bool,
    release: Option<String>,
    dry_run: bool,
    yes: bool,
    out: OutputFormat,
) -> anyhow::Result<bool> {
    let patches: Vec<String> = if all {
        let release = match release {
            Some(r) => r,
            None => client
                .get("isystems", &[], &[])?
                .pointer("/isystems/0/software_version")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        };
        let value = client.get(
            "query",
            &[],
            &[("show", "all".into()), ("release", release)],
        )?;
        value
            .get("pd")
            .and_then(Value::as_object)
            .map(|pd| pd.keys().cloned().collect())
            .unwrap_or_default()
    } else {
        if ids.is_empty() {
            bail!("give patch IDs or --all");
        }
        let value = client.get("query_dependencies", &ids, &[("recursive", "yes".into())])?;
        let error = value.get("error").and_then(Value::as_str).unwrap_or("");
        if !error.is_empty() {
            bail!("{}", error.trim_end());
        }
        value
            .get("patches")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    if patches.is_empty() {
        bail!("There are no patches to commit.");
    }
    let dry = client.post("commit_dry_run", &patches, &[])?;
    if !out.structured() {
        println!("The following patches will be committed:");
        for id in &patches {
            println!("    {id}");
        }
        println!();
    }
    if emit(&dry, out) || dry_run {
        return Ok(dry
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty()));
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("refusing to commit without confirmation: pass --yes");
        }
        print!(
            "WARNING: Committing a patch is an irreversible operation. Committed patches cannot be removed.\nWould you like to continue? [y/N]: "
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("The commit operation has been aborted.");
            return Ok(false);
        }
    }
    Ok(emit(&client.post("commit", &patches, &[])?, out))
}
