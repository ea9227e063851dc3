//! `dcmanager subcloud … | subcloud-group …`: the distributed cloud's subclouds and groups,
//! with the original client's command and option names and table columns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::tables::grid;

/// Distributed cloud management: the subclouds a system controller patches.
#[derive(Parser, Debug)]
#[command(name = "dcmanager", version, after_help = crate::EXIT_CODES)]
struct Args {
    /// dcmanager API URL (the original client's option)
    #[arg(
        long = "dcmanager-url",
        global = true,
        env = "DCMANAGER_URL",
        default_value = "http://127.0.0.1:8119"
    )]
    dcmanager_url: String,
    /// Operator token (sent as X-Auth-Token)
    #[arg(long, global = true, env = "DCMANAGER_TOKEN")]
    token: Option<String>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t)]
    format: crate::OutputFormat,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Subclouds
    #[command(subcommand)]
    Subcloud(SubcloudCommand),
    /// Subcloud groups
    #[command(name = "subcloud-group", subcommand)]
    SubcloudGroup(GroupCommand),
}

#[derive(Subcommand, Debug)]
enum SubcloudCommand {
    /// Add a subcloud (it starts unmanaged)
    Add {
        /// Its name (also its region name)
        #[arg(long)]
        name: String,
        /// Its controller's patching API URL (https:// with --ca-file)
        #[arg(long)]
        url: String,
        /// File holding an operator token of the subcloud's controller
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// CA (PEM) the subcloud controller's certificate chains to
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Its controller's orchestration and alarm API URL (for sw-manager and fm
        /// through the system controller, and subcloud strategies)
        #[arg(long, value_name = "URL")]
        vim_url: Option<String>,
        /// Group name or id [default: Default]
        #[arg(long)]
        group: Option<String>,
        /// Free text
        #[arg(long, default_value = "")]
        description: String,
        /// Free text
        #[arg(long, default_value = "")]
        location: String,
    },
    /// List the subclouds
    List,
    /// Show a subcloud
    Show {
        /// Name or id
        subcloud: String,
        /// Also say how it differs from the system controller
        #[arg(long)]
        detail: bool,
    },
    /// Manage a subcloud: audit it, keep it in sync, patch it
    Manage {
        /// Name or id
        subcloud: String,
    },
    /// Stop managing a subcloud
    Unmanage {
        /// Name or id
        subcloud: String,
    },
    /// Move a subcloud to another group
    Update {
        /// Name or id
        subcloud: String,
        /// Group name or id
        #[arg(long)]
        group: String,
    },
    /// Upload the patches it lacks (the system controller's applied and committed ones)
    /// ahead of the maintenance window; nothing is applied
    Prestage {
        /// Name or id
        subcloud: String,
    },
    /// Delete an unmanaged subcloud
    Delete {
        /// Name or id
        subcloud: String,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Add a subcloud group
    Add {
        /// Name
        #[arg(long)]
        name: String,
        /// Free text
        #[arg(long, default_value = "")]
        description: String,
        /// How its subclouds are updated
        #[arg(long, value_parser = ["serial", "parallel"], default_value = "parallel")]
        update_apply_type: String,
        /// At most this many of its subclouds at once
        #[arg(long, default_value_t = 2)]
        max_parallel_subclouds: i64,
    },
    /// List the subcloud groups
    List,
    /// Show a subcloud group
    Show {
        /// Name or id
        group: String,
    },
    /// Change a subcloud group
    Update {
        /// Name or id
        group: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// Free text
        #[arg(long)]
        description: Option<String>,
        /// How its subclouds are updated
        #[arg(long, value_parser = ["serial", "parallel"])]
        update_apply_type: Option<String>,
        /// At most this many of its subclouds at once
        #[arg(long)]
        max_parallel_subclouds: Option<i64>,
    },
    /// Delete a subcloud group (its subclouds move to Default)
    Delete {
        /// Name or id
        group: String,
    },
    /// List a group's subclouds
    #[command(name = "list-subclouds")]
    ListSubclouds {
        /// Name or id
        group: String,
    },
}

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// The dcmanager API over HTTP.
struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/v1.0/{path}", self.base.trim_end_matches('/'));
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.header("X-Auth-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .with_context(|| format!("cannot reach the dcmanager API at {}", self.base))?;
        let status = response.status();
        let text = crate::read_answer(response)?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the dcmanager API answered {status}: {text:.200}"))?
        };
        if !status.is_success() {
            let message = value["error"].as_str().unwrap_or(text.as_str());
            bail!("{message}");
        }
        Ok(value)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || "None".into(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

/// The original's `subcloud list` columns.
fn subcloud_rows(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["id"]),
                text(&s["name"]),
                text(&s["management-state"]),
                text(&s["availability-status"]),
                text(&s["deploy-status"]),
                text(&s["sync_status"]),
                "None".into(),
                "None".into(),
            ]
        })
        .collect();
    grid(
        &[
            "id",
            "name",
            "management",
            "availability",
            "deploy status",
            "sync",
            "backup status",
            "prestage status",
        ],
        &rows,
    )
}

fn field_table(rows: Vec<(&str, String)>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, v)| vec![k.to_owned(), v])
        .collect();
    grid(&["Field", "Value"], &rows)
}

fn subcloud_fields(s: &Value, detail: bool) -> String {
    let mut rows = vec![
        ("id", text(&s["id"])),
        ("name", text(&s["name"])),
        ("description", text(&s["description"])),
        ("location", text(&s["location"])),
        ("management", text(&s["management-state"])),
        ("availability", text(&s["availability-status"])),
        ("deploy_status", text(&s["deploy-status"])),
        ("group_id", text(&s["group_id"])),
        ("created_at", time(&s["created-at"])),
        ("updated_at", time(&s["updated-at"])),
        ("patching_sync_status", text(&s["sync_status"])),
    ];
    if detail {
        rows.push(("url", text(&s["url"])));
        rows.push(("vim_url", text(&s["vim-url"])));
        rows.push(("patching_sync_detail", text(&s["sync-detail"])));
        rows.push(("audited_at", time(&s["audited-at"])));
    }
    field_table(rows)
}

fn group_fields(g: &Value) -> String {
    field_table(vec![
        ("id", text(&g["id"])),
        ("name", text(&g["name"])),
        ("description", text(&g["description"])),
        ("update apply type", text(&g["update_apply_type"])),
        ("max parallel subclouds", text(&g["max_parallel_subclouds"])),
    ])
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    crate::run(|| {
        let args = Args::parse_from(args);
        let client = Client {
            base: args.dcmanager_url.clone(),
            token: args.token.clone(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        };
        let out = args.format;
        let print = |value: &Value, text: &dyn Fn(&Value) -> String| -> anyhow::Result<()> {
            if out.structured() {
                println!("{}", out.render(value)?);
            } else {
                print!("{}", text(value));
            }
            Ok(())
        };
        let enc = crate::client::percent_encode;
        use reqwest::Method;
        let patch_subcloud = |subcloud: &str, body: Value| {
            client.call(
                Method::PATCH,
                &format!("subclouds/{}", enc(subcloud)),
                Some(&body),
            )
        };
        match args.command {
            Top::Subcloud(command) => match command {
                SubcloudCommand::Add {
                    name,
                    url,
                    token_file,
                    ca_file,
                    vim_url,
                    group,
                    description,
                    location,
                } => {
                    let token = crate::read_secret(&token_file)?;
                    let ca = match &ca_file {
                        Some(path) => Some(
                            std::fs::read_to_string(path)
                                .with_context(|| format!("reading {}", path.display()))?,
                        ),
                        None => None,
                    };
                    let body = json!({
                        "name": name, "url": url, "token": token, "ca-pem": ca, "vim-url": vim_url,
                        "group_id": group, "description": description, "location": location,
                    });
                    let added = client.call(Method::POST, "subclouds", Some(&body))?;
                    print(&added, &|s| subcloud_fields(s, false))?;
                }
                SubcloudCommand::List => {
                    let list = client.call(Method::GET, "subclouds", None)?;
                    print(&list, &|l| subcloud_rows(&l["subclouds"]))?;
                }
                SubcloudCommand::Show { subcloud, detail } => {
                    let s =
                        client.call(Method::GET, &format!("subclouds/{}", enc(&subcloud)), None)?;
                    print(&s, &|s| subcloud_fields(s, detail))?;
                }
                SubcloudCommand::Manage { subcloud } => {
                    let s = patch_subcloud(&subcloud, json!({"management-state": "managed"}))?;
                    print(&s, &|s| subcloud_fields(s, false))?;
                }
                SubcloudCommand::Unmanage { subcloud } => {
                    let s = patch_subcloud(&subcloud, json!({"management-state": "unmanaged"}))?;
                    print(&s, &|s| subcloud_fields(s, false))?;
                }
                SubcloudCommand::Update { subcloud, group } => {
                    let s = patch_subcloud(&subcloud, json!({"group_id": group}))?;
                    print(&s, &|s| subcloud_fields(s, false))?;
                }
                SubcloudCommand::Prestage { subcloud } => {
                    let done = client.call(
                        Method::POST,
                        &format!("subclouds/{}/prestage", enc(&subcloud)),
                        None,
                    )?;
                    let names = |v: &Value| -> Vec<String> {
                        v.as_array().into_iter().flatten().map(text).collect()
                    };
                    print(&done, &|d| {
                        let uploaded = names(&d["uploaded"]);
                        let mut out = if uploaded.is_empty() {
                            format!("{subcloud} lacks no patch of the system controller\n")
                        } else {
                            format!("Uploaded to {subcloud}: {}\n", uploaded.join(", "))
                        };
                        for f in d["failed"].as_array().into_iter().flatten() {
                            out +=
                                &format!("Failed: {}: {}\n", text(&f["patch"]), text(&f["reason"]));
                        }
                        out
                    })?;
                    if done["failed"].as_array().is_some_and(|f| !f.is_empty()) {
                        bail!("some patches could not be uploaded to {subcloud}");
                    }
                }
                SubcloudCommand::Delete { subcloud } => {
                    client.call(
                        Method::DELETE,
                        &format!("subclouds/{}", enc(&subcloud)),
                        None,
                    )?;
                }
            },
            Top::SubcloudGroup(command) => match command {
                GroupCommand::Add {
                    name,
                    description,
                    update_apply_type,
                    max_parallel_subclouds,
                } => {
                    let body = json!({
                        "name": name, "description": description,
                        "update_apply_type": update_apply_type,
                        "max_parallel_subclouds": max_parallel_subclouds,
                    });
                    let g = client.call(Method::POST, "subcloud-groups", Some(&body))?;
                    print(&g, &group_fields)?;
                }
                GroupCommand::List => {
                    let list = client.call(Method::GET, "subcloud-groups", None)?;
                    print(&list, &|l| {
                        let rows: Vec<Vec<String>> = l["subcloud_groups"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|g| {
                                vec![text(&g["id"]), text(&g["name"]), text(&g["description"])]
                            })
                            .collect();
                        grid(&["id", "name", "description"], &rows)
                    })?;
                }
                GroupCommand::Show { group } => {
                    let g = client.call(
                        Method::GET,
                        &format!("subcloud-groups/{}", enc(&group)),
                        None,
                    )?;
                    print(&g, &group_fields)?;
                }
                GroupCommand::Update {
                    group,
                    name,
                    description,
                    update_apply_type,
                    max_parallel_subclouds,
                } => {
                    let mut body = serde_json::Map::new();
                    for (k, v) in [
                        ("name", name.map(Value::from)),
                        ("description", description.map(Value::from)),
                        ("update_apply_type", update_apply_type.map(Value::from)),
                        (
                            "max_parallel_subclouds",
                            max_parallel_subclouds.map(Value::from),
                        ),
                    ] {
                        if let Some(v) = v {
                            body.insert(k.into(), v);
                        }
                    }
                    if body.is_empty() {
                        bail!(
                            "nothing to update: give --name, --description, --update-apply-type or --max-parallel-subclouds"
                        );
                    }
                    let g = client.call(
                        Method::PATCH,
                        &format!("subcloud-groups/{}", enc(&group)),
                        Some(&Value::Object(body)),
                    )?;
                    print(&g, &group_fields)?;
                }
                GroupCommand::Delete { group } => {
                    client.call(
                        Method::DELETE,
                        &format!("subcloud-groups/{}", enc(&group)),
                        None,
                    )?;
                }
                GroupCommand::ListSubclouds { group } => {
                    let list = client.call(
                        Method::GET,
                        &format!("subcloud-groups/{}/subclouds", enc(&group)),
                        None,
                    )?;
                    print(&list, &|l| subcloud_rows(&l["subclouds"]))?;
                }
            },
        }
        Ok(())
    })
}
