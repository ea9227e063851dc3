//! `fm alarm-list | alarm-raise | alarm-clear`: the alarms that block (or come from) patch
//! orchestration.

use std::process::ExitCode;

use crate::client::percent_encode;
use crate::tables::grid;
use crate::vim_client::VimClient;
use anyhow::bail;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// Fault management: active alarms.
#[derive(Parser, Debug)]
#[command(name = "fm", version, after_help = crate::EXIT_CODES)]
struct Args {
    #[command(flatten)]
    connection: crate::VimConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List active alarms
    #[command(name = "alarm-list")]
    List {
        /// Include each alarm's UUID
        #[arg(long)]
        uuid: bool,
    },
    /// Raise an alarm (or update the one with the same id and entity)
    #[command(name = "alarm-raise")]
    Raise {
        /// Alarm id, NNN.NNN
        #[arg(long)]
        alarm_id: String,
        /// What it is about, e.g. host=worker-0
        #[arg(long)]
        entity_instance_id: String,
        /// Severity
        #[arg(long, value_enum, default_value = "major")]
        severity: Severity,
        /// Text
        #[arg(long, default_value = "")]
        reason_text: String,
        /// The alarm does not affect management operations (relaxed strategies ignore it)
        #[arg(long)]
        not_mgmt_affecting: bool,
    },
    /// Clear alarms by UUID, or by id (and entity)
    #[command(name = "alarm-clear")]
    Clear {
        /// The alarm's UUID
        #[arg(long, conflicts_with_all = ["alarm_id", "entity_instance_id"])]
        uuid: Option<String>,
        /// Alarm id
        #[arg(long)]
        alarm_id: Option<String>,
        /// Only the alarm of this entity
        #[arg(long, requires = "alarm_id")]
        entity_instance_id: Option<String>,
    },
}

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
        let out = args.connection.format;
        match args.command {
            Command::List { uuid } => {
                let reply = client.get("/v1/alarms")?;
                if out.structured() {
                    println!("{}", out.render(&reply)?);
                    return Ok(());
                }
                let s = |a: &Value, k: &str| a[k].as_str().unwrap_or("").to_owned();
                let mut headers = vec![];
                if uuid {
                    headers.push("UUID");
                }
                headers.extend([
                    "Alarm ID",
                    "Reason Text",
                    "Entity ID",
                    "Severity",
                    "Time Stamp",
                ]);
                let rows: Vec<Vec<String>> = reply["alarms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let mut row = vec![];
                        if uuid {
                            row.push(s(a, "uuid"));
                        }
                        row.extend([
                            s(a, "alarm_id"),
                            s(a, "reason_text"),
                            s(a, "entity_instance_id"),
                            s(a, "severity"),
                            s(a, "timestamp"),
                        ]);
                        row
                    })
                    .collect();
                print!("{}", grid(&headers, &rows));
            }
            Command::Raise {
                alarm_id,
                entity_instance_id,
                severity,
                reason_text,
                not_mgmt_affecting,
            } => {
                let severity = format!("{severity:?}").to_lowercase();
                let reply = client.post(
                    "/v1/alarms",
                    &json!({
                        "alarm_id": alarm_id,
                        "entity_instance_id": entity_instance_id,
                        "severity": severity,
                        "reason_text": reason_text,
                        "mgmt_affecting": !not_mgmt_affecting,
                    }),
                )?;
                if out.structured() {
                    println!("{}", out.render(&reply)?);
                } else {
                    println!("{}", reply["uuid"].as_str().unwrap_or(""));
                }
            }
            Command::Clear {
                uuid,
                alarm_id,
                entity_instance_id,
            } => match (uuid, alarm_id) {
                (Some(uuid), _) => {
                    client.delete(&format!("/v1/alarms/{uuid}"), None)?;
                    println!("Alarm {uuid} cleared");
                }
                (None, Some(id)) => {
                    let mut query = format!("/v1/alarms?alarm_id={}", percent_encode(&id));
                    if let Some(e) = &entity_instance_id {
                        query.push_str("&entity_instance_id=");
                        query.push_str(&percent_encode(e));
                    }
                    let reply = client.delete(&query, None)?;
                    println!("{} alarm(s) cleared", reply["cleared"]);
                }
                (None, None) => bail!("give --uuid, or --alarm-id [--entity-instance-id]"),
            },
        }
        Ok(())
    })
}
