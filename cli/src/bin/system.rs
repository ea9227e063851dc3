//! `system`: the inventory commands stx-patch provides (`system show`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;
use stx_patch_cli::client::ApiClient;
use stx_patch_cli::{ConnectionArgs, OutputFormat, run};

/// System inventory commands.
#[derive(Parser, Debug)]
#[command(name = "system", version)]
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
}

fn main() -> ExitCode {
    run(|| {
        let args = Args::parse();
        let client = ApiClient::new(&args.connection.url, args.connection.token)?;
        match args.command {
            Command::Show => {
                let value = client.get("isystems", &[], &[])?;
                let system = value.pointer("/isystems/0").cloned().unwrap_or(Value::Null);
                if args.connection.format == OutputFormat::Json {
                    println!("{}", serde_json::to_string_pretty(&system)?);
                } else {
                    let rows: Vec<(String, String)> = system
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
                    print!("{}", property_table(&rows));
                }
            }
        }
        Ok(())
    })
}

/// The `+----------+-------+` Property/Value table of the StarlingX clients.
fn property_table(rows: &[(String, String)]) -> String {
    let w1 = rows
        .iter()
        .map(|r| r.0.len())
        .chain(["Property".len()])
        .max()
        .unwrap_or(0);
    let w2 = rows
        .iter()
        .map(|r| r.1.len())
        .chain(["Value".len()])
        .max()
        .unwrap_or(0);
    let rule = format!("+{}+{}+\n", "-".repeat(w1 + 2), "-".repeat(w2 + 2));
    let mut out = rule.clone();
    out += &format!("| {:<w1$} | {:<w2$} |\n", "Property", "Value");
    out += &rule;
    for (k, v) in rows {
        out += &format!("| {k:<w1$} | {v:<w2$} |\n");
    }
    out += &rule;
    out
}
