//! `system`: the inventory commands stx-patch provides (`system show`).

use std::process::ExitCode;

use crate::client::ApiClient;
use crate::tables::{grid, property_table};
use crate::{ConnectionArgs, run};
use clap::{Parser, Subcommand};
use serde_json::Value;

/// System inventory commands.
#[derive(Parser, Debug)]
#[command(name = "system", version, after_help = crate::EXIT_CODES)]
struct Args {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the system's properties that stx-patch knows (software version, …)
    Show,
    /// List hosts with their administrative, operational and availability states
    HostList,
    /// Show one host
    HostShow {
        /// Host name or IP address
        host: String,
    },
    /// Lock a host (take it out of service so reboot-required patches can be installed)
    HostLock {
        /// Host name or IP address
        host: String,
        /// Lock even while it is installing
        #[arg(long)]
        force: bool,
    },
    /// Unlock a host (reboots it if installed patches require it)
    HostUnlock {
        /// Host name or IP address
        host: String,
    },
    /// Swact: make the other controller active (name the active one). With --force, sent to
    /// the standby, the standby takes over from an active controller that is gone.
    HostSwact {
        /// The active controller, e.g. controller-0
        host: String,
        /// Take over on the standby although the active one does not answer (its changes
        /// since the last replication are lost)
        #[arg(long)]
        force: bool,
    },
}

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    run(|| {
        let args = Args::parse_from(args);
        let url = args.connection.region.base_url(
            crate::RegionApi::Patching,
            &args.connection.url,
            args.connection.token.as_deref(),
        )?;
        let client = ApiClient::new(
            &url,
            args.connection.token,
            args.connection.tls.trust().as_ref(),
        )?;
        let out = args.connection.format;
        let outcome = |value: Value| -> anyhow::Result<()> {
            if out.structured() {
                println!("{}", out.render(&value)?);
            }
            if crate::client::print_outcome_unless(&value, out) {
                anyhow::bail!("the operation failed");
            }
            Ok(())
        };
        match args.command {
            Command::HostList => {
                let value = client.get("host_list", &[], &[])?;
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    let hosts = value["ihosts"].as_array().cloned().unwrap_or_default();
                    let rows: Vec<Vec<String>> = hosts
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            let t = |k: &str| h[k].as_str().unwrap_or("").to_owned();
                            vec![
                                (i + 1).to_string(),
                                t("hostname"),
                                t("personality"),
                                t("administrative"),
                                t("operational"),
                                t("availability"),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        grid(
                            &[
                                "id",
                                "hostname",
                                "personality",
                                "administrative",
                                "operational",
                                "availability"
                            ],
                            &rows
                        )
                    );
                }
            }
            Command::HostShow { host } => {
                let value = client.get("host_show", &[host], &[])?;
                if value.get("hostname").is_none() {
                    return outcome(value);
                }
                if out.structured() {
                    println!("{}", out.render(&value)?);
                } else {
                    print!("{}", object_table(&value));
                }
            }
            Command::HostLock { host, force } => {
                let query = if force {
                    vec![("force", "yes".to_owned())]
                } else {
                    vec![]
                };
                outcome(client.post("host_lock", &[host], &query)?)?;
            }
            Command::HostUnlock { host } => outcome(client.post("host_unlock", &[host], &[])?)?,
            Command::HostSwact { host, force } => {
                let query = if force {
                    vec![("force", "yes".to_owned())]
                } else {
                    vec![]
                };
                outcome(client.post("host_swact", &[host], &query)?)?;
            }
            Command::Show => {
                let value = client.get("isystems", &[], &[])?;
                let mut system = value.pointer("/isystems/0").cloned().unwrap_or(Value::Null);
                if out.structured() {
                    println!("{}", out.render(&system)?);
                } else {
                    // A pair's controllers, one line each.
                    let controllers = system
                        .as_object_mut()
                        .and_then(|o| o.remove("controllers"))
                        .and_then(|c| c.as_array().cloned())
                        .unwrap_or_default();
                    if let Some(o) = system.as_object_mut() {
                        for (i, c) in controllers.iter().enumerate() {
                            let line = match c["hostname"].as_str() {
                                Some(name) => format!(
                                    "{name}: {} (term {}){}",
                                    c["role"].as_str().unwrap_or("?"),
                                    c["term"],
                                    match c["in_sync"].as_bool() {
                                        Some(true) => ", in sync",
                                        Some(false) => ", not in sync",
                                        None => "",
                                    }
                                ),
                                None => "peer: not reachable".to_owned(),
                            };
                            o.insert(format!("controller_{i}"), Value::String(line));
                        }
                    }
                    print!("{}", object_table(&system));
                }
            }
        }
        Ok(())
    })
}

/// A JSON object as the Property/Value table.
fn object_table(value: &Value) -> String {
    let rows: Vec<(String, String)> = value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    property_table(&rows)
}
