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
    /// The subcloud patch strategy: every subcloud synced with the system controller's
    /// patches and patched by its own strategy
    #[command(name = "patch-strategy", subcommand)]
    PatchStrategy(StrategyCommand),
    /// Each subcloud's step of the patch strategy
    #[command(name = "strategy-step", subcommand)]
    StrategyStep(StepCommand),
    /// The options each subcloud's own patch strategy is created with
    #[command(name = "sw-update-options", subcommand)]
    SwUpdateOptions(OptionsCommand),
}

#[derive(Subcommand, Debug)]
enum StrategyCommand {
    /// Create the patch strategy
    Create {
        /// Subcloud apply type [default: each group's]
        #[arg(long, value_parser = ["serial", "parallel"])]
        subcloud_apply_type: Option<String>,
        /// Maximum number of parallel subclouds [default: each group's]
        #[arg(long)]
        max_parallel_subclouds: Option<i64>,
        /// Do not update any additional subclouds after a failure
        #[arg(long, conflicts_with = "max_failed_subclouds")]
        stop_on_failure: bool,
        /// Start no more subclouds once more than N have failed (the error budget)
        #[arg(long, value_name = "N")]
        max_failed_subclouds: Option<i64>,
        /// Update N subclouds first, alone, then pause until applied again
        #[arg(long, value_name = "N")]
        canary: Option<i64>,
        /// Only upload the patches each subcloud lacks (nothing applied or installed)
        #[arg(long)]
        upload_only: bool,
        /// Say what it would do (stages, patches per subcloud, bytes to transfer, predicted
        /// duration) and create nothing
        #[arg(long)]
        dry_run: bool,
        /// Name or ID of subcloud group to update
        #[arg(long, conflicts_with_all = ["cloud_name", "subcloud_apply_type", "max_parallel_subclouds"])]
        group: Option<String>,
        /// Name of a single cloud to update
        cloud_name: Option<String>,
    },
    /// Apply the strategy (again after the canary to go on with the rest)
    Apply {
        /// Wait until it is complete, failed, aborted or paused (exit status 1 unless
        /// complete or paused)
        #[arg(long)]
        wait: bool,
    },
    /// Abort the strategy: no more subclouds start; those under way finish
    Abort {
        /// Wait until it is aborted
        #[arg(long)]
        wait: bool,
    },
    /// Show the strategy
    Show {
        /// Also list each subcloud's step
        #[arg(long)]
        details: bool,
    },
    /// Delete the strategy
    Delete,
}

#[derive(Subcommand, Debug)]
enum StepCommand {
    /// List the strategy's steps
    List,
    /// Show one subcloud's step
    Show {
        /// Subcloud name
        cloud_name: String,
    },
}

#[derive(Subcommand, Debug)]
enum OptionsCommand {
    /// List the default options and each subcloud's own
    List,
    /// Show a subcloud's options (none: the default)
    Show {
        /// Subcloud name or id
        subcloud: Option<String>,
    },
    /// Update a subcloud's options (none: the default)
    Update {
        /// Storage hosts one at a time or in parallel
        #[arg(long, value_parser = ["parallel", "serial"])]
        storage_apply_type: Option<String>,
        /// Workers one at a time or in parallel
        #[arg(long, value_parser = ["parallel", "serial"])]
        worker_apply_type: Option<String>,
        /// At most this many workers at once (2 to 100)
        #[arg(long)]
        max_parallel_workers: Option<i64>,
        /// Alarms tolerated
        #[arg(long, value_parser = ["strict", "relaxed"])]
        alarm_restriction_type: Option<String>,
        /// Instances on a locked worker
        #[arg(long, value_parser = ["stop-start", "migrate"])]
        default_instance_action: Option<String>,
        /// Subcloud name or id
        subcloud: Option<String>,
    },
    /// Delete a subcloud's own options (it then has the default's)
    Delete {
        /// Subcloud name or id
        subcloud: String,
    },
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
    json_fields(
        g,
        &[
            ("id", Cell::Text("id")),
            ("name", Cell::Text("name")),
            ("description", Cell::Text("description")),
            ("update apply type", Cell::Text("update_apply_type")),
            (
                "max parallel subclouds",
                Cell::Text("max_parallel_subclouds"),
            ),
        ],
    )
}

/// The original's strategy fields, plus the error budget, canary and progress.
fn strategy_fields(s: &Value) -> String {
    let p = &s["progress"];
    let mut rows = vec![
        ("strategy type", text(&s["type"])),
        ("subcloud apply type", text(&s["subcloud-apply-type"])),
        ("max parallel subclouds", text(&s["max-parallel-subclouds"])),
        ("stop on failure", text(&s["stop-on-failure"])),
        ("max failed subclouds", text(&s["max-failed-subclouds"])),
        ("canary", text(&s["canary"])),
        ("upload only", text(&s["extra-args"]["upload-only"])),
        ("state", text(&s["state"])),
        (
            "progress",
            format!(
                "{} of {} complete, {} failed, {} in progress, {} aborted ({} stages)",
                text(&p["complete"]),
                text(&p["total"]),
                text(&p["failed"]),
                text(&p["in-progress"]),
                text(&p["aborted"]),
                text(&p["stages"])
            ),
        ),
        ("created_at", time(&s["created-at"])),
        ("updated_at", time(&s["updated-at"])),
    ];
    for f in s["failed-subclouds"].as_array().into_iter().flatten() {
        rows.push((
            "failed",
            format!("{}: {}", text(&f["cloud"]), text(&f["reason"])),
        ));
    }
    for f in s["skipped-subclouds"].as_array().into_iter().flatten() {
        rows.push((
            "skipped",
            format!("{}: {}", text(&f["cloud"]), text(&f["reason"])),
        ));
    }
    field_table(rows)
}

/// A cell of a table made from JSON: a value as text, or seconds since the epoch as a time.
#[derive(Clone, Copy)]
enum Cell {
    Text(&'static str),
    Time(&'static str),
}

impl Cell {
    fn of(self, v: &Value) -> String {
        match self {
            Cell::Text(key) => text(&v[key]),
            Cell::Time(key) => time(&v[key]),
        }
    }
}

/// A grid of `list`'s objects, one row each, `columns` (header, cell) across.
fn json_rows(list: &Value, columns: &[(&str, Cell)]) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| columns.iter().map(|(_, cell)| cell.of(item)).collect())
        .collect();
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    grid(&headers, &rows)
}

/// A Field/Value table of one object's `fields`.
fn json_fields(v: &Value, fields: &[(&str, Cell)]) -> String {
    field_table(
        fields
            .iter()
            .map(|(name, cell)| (*name, cell.of(v)))
            .collect(),
    )
}

/// The original's `strategy-step list` columns.
const STEP_COLUMNS: &[(&str, Cell)] = &[
    ("cloud", Cell::Text("cloud")),
    ("stage", Cell::Text("stage")),
    ("state", Cell::Text("state")),
    ("details", Cell::Text("details")),
    ("started_at", Cell::Time("started-at")),
    ("finished_at", Cell::Time("finished-at")),
];

fn step_rows(list: &Value) -> String {
    json_rows(list, STEP_COLUMNS)
}

fn step_fields(s: &Value) -> String {
    let mut fields = STEP_COLUMNS.to_vec();
    fields.extend([
        ("created_at", Cell::Time("created-at")),
        ("updated_at", Cell::Time("updated-at")),
    ]);
    json_fields(s, &fields)
}

/// The original's `sw-update-options` columns.
const OPTIONS_COLUMNS: &[(&str, Cell)] = &[
    ("cloud", Cell::Text("name")),
    ("storage apply type", Cell::Text("storage-apply-type")),
    ("worker apply type", Cell::Text("worker-apply-type")),
    ("max parallel workers", Cell::Text("max-parallel-workers")),
    (
        "alarm restriction type",
        Cell::Text("alarm-restriction-type"),
    ),
    (
        "default instance action",
        Cell::Text("default-instance-action"),
    ),
];

fn options_rows(list: &Value) -> String {
    json_rows(list, OPTIONS_COLUMNS)
}

fn options_fields(o: &Value) -> String {
    let mut fields = OPTIONS_COLUMNS.to_vec();
    fields.extend([
        ("created_at", Cell::Time("created-at")),
        ("updated_at", Cell::Time("updated-at")),
    ]);
    json_fields(o, &fields)
}

fn dry_run_text(d: &Value) -> String {
    let d = &d["dry-run"];
    let mut out = format!(
        "Would update {} subclouds in {} stages, transferring {} bytes\nPredicted duration: {} ({})\n",
        text(&d["total-subclouds"]),
        text(&d["total-stages"]),
        text(&d["bytes-to-transfer"]),
        d["predicted-duration-seconds"]
            .as_i64()
            .map_or_else(|| "unknown".to_owned(), |s| format!("{s} s")),
        text(&d["predicted-duration-basis"]),
    );
    let list = |v: &Value| -> String {
        let items: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
        if items.is_empty() {
            "-".into()
        } else {
            items.join(" ")
        }
    };
    let rows: Vec<Vec<String>> = d["subclouds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["cloud"]),
                text(&s["stage"]),
                list(&s["upload"]),
                list(&s["apply"]),
                list(&s["remove"]),
                if s["error"].is_null() {
                    text(&s["bytes"])
                } else {
                    text(&s["error"])
                },
            ]
        })
        .collect();
    out += &grid(
        &["cloud", "stage", "upload", "apply", "remove", "bytes"],
        &rows,
    );
    for f in d["skipped-subclouds"].as_array().into_iter().flatten() {
        out += &format!("Skipped {}: {}\n", text(&f["cloud"]), text(&f["reason"]));
    }
    out
}

/// Polls the strategy until it is in one of `until`; its last document.
fn wait_for_strategy(client: &Client, until: &[&str]) -> anyhow::Result<Value> {
    loop {
        let s = client.call(reqwest::Method::GET, "sw-update-strategy?type=patch", None)?;
        if until.contains(&s["state"].as_str().unwrap_or_default()) {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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
                        json_rows(
                            &l["subcloud_groups"],
                            &[
                                ("id", Cell::Text("id")),
                                ("name", Cell::Text("name")),
                                ("description", Cell::Text("description")),
                            ],
                        )
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
            Top::PatchStrategy(command) => match command {
                StrategyCommand::Create {
                    subcloud_apply_type,
                    max_parallel_subclouds,
                    stop_on_failure,
                    max_failed_subclouds,
                    canary,
                    upload_only,
                    dry_run,
                    group,
                    cloud_name,
                } => {
                    let mut body = json!({"type": "patch"});
                    for (k, v) in [
                        ("subcloud-apply-type", subcloud_apply_type.map(Value::from)),
                        (
                            "max-parallel-subclouds",
                            max_parallel_subclouds.map(Value::from),
                        ),
                        (
                            "stop-on-failure",
                            stop_on_failure.then(|| Value::from("true")),
                        ),
                        (
                            "max-failed-subclouds",
                            max_failed_subclouds.map(Value::from),
                        ),
                        ("canary", canary.map(Value::from)),
                        ("upload-only", upload_only.then_some(Value::Bool(true))),
                        ("dry-run", dry_run.then_some(Value::Bool(true))),
                        ("subcloud_group", group.map(Value::from)),
                        ("cloud_name", cloud_name.map(Value::from)),
                    ] {
                        if let Some(v) = v {
                            body[k] = v;
                        }
                    }
                    let made = client.call(Method::POST, "sw-update-strategy/", Some(&body))?;
                    if dry_run {
                        print(&made, &dry_run_text)?;
                    } else {
                        print(&made, &strategy_fields)?;
                    }
                }
                StrategyCommand::Apply { wait } => {
                    let mut s = client.call(
                        Method::POST,
                        "sw-update-strategy/actions?type=patch",
                        Some(&json!({"action": "apply"})),
                    )?;
                    if wait {
                        s = wait_for_strategy(
                            &client,
                            &["complete", "failed", "aborted", "paused"],
                        )?;
                    }
                    print(&s, &strategy_fields)?;
                    if wait && !matches!(s["state"].as_str(), Some("complete" | "paused")) {
                        bail!("the patch strategy is {}", text(&s["state"]));
                    }
                }
                StrategyCommand::Abort { wait } => {
                    let mut s = client.call(
                        Method::POST,
                        "sw-update-strategy/actions?type=patch",
                        Some(&json!({"action": "abort"})),
                    )?;
                    if wait {
                        s = wait_for_strategy(&client, &["complete", "failed", "aborted"])?;
                    }
                    print(&s, &strategy_fields)?;
                }
                StrategyCommand::Show { details } => {
                    let s = client.call(Method::GET, "sw-update-strategy?type=patch", None)?;
                    if details && !out.structured() {
                        let steps = client.call(Method::GET, "sw-update-strategy/steps", None)?;
                        print!("{}", strategy_fields(&s));
                        print!("{}", step_rows(&steps["strategy-steps"]));
                    } else {
                        print(&s, &strategy_fields)?;
                    }
                }
                StrategyCommand::Delete => {
                    let s = client.call(Method::DELETE, "sw-update-strategy?type=patch", None)?;
                    print(&s, &strategy_fields)?;
                }
            },
            Top::StrategyStep(command) => match command {
                StepCommand::List => {
                    let list = client.call(Method::GET, "sw-update-strategy/steps", None)?;
                    print(&list, &|l| step_rows(&l["strategy-steps"]))?;
                }
                StepCommand::Show { cloud_name } => {
                    let s = client.call(
                        Method::GET,
                        &format!("sw-update-strategy/steps/{}", enc(&cloud_name)),
                        None,
                    )?;
                    print(&s, &step_fields)?;
                }
            },
            Top::SwUpdateOptions(command) => {
                let reference =
                    |s: &Option<String>| enc(s.as_deref().unwrap_or("SystemController"));
                match command {
                    OptionsCommand::List => {
                        let list = client.call(Method::GET, "sw-update-options", None)?;
                        print(&list, &|l| options_rows(&l["sw-update-options"]))?;
                    }
                    OptionsCommand::Show { subcloud } => {
                        let o = client.call(
                            Method::GET,
                            &format!("sw-update-options/{}", reference(&subcloud)),
                            None,
                        )?;
                        print(&o, &options_fields)?;
                    }
                    OptionsCommand::Update {
                        storage_apply_type,
                        worker_apply_type,
                        max_parallel_workers,
                        alarm_restriction_type,
                        default_instance_action,
                        subcloud,
                    } => {
                        let mut body = serde_json::Map::new();
                        for (k, v) in [
                            ("storage-apply-type", storage_apply_type.map(Value::from)),
                            ("worker-apply-type", worker_apply_type.map(Value::from)),
                            (
                                "max-parallel-workers",
                                max_parallel_workers.map(Value::from),
                            ),
                            (
                                "alarm-restriction-type",
                                alarm_restriction_type.map(Value::from),
                            ),
                            (
                                "default-instance-action",
                                default_instance_action.map(Value::from),
                            ),
                        ] {
                            if let Some(v) = v {
                                body.insert(k.into(), v);
                            }
                        }
                        let o = client.call(
                            Method::POST,
                            &format!("sw-update-options/{}", reference(&subcloud)),
                            Some(&Value::Object(body)),
                        )?;
                        print(&o, &options_fields)?;
                    }
                    OptionsCommand::Delete { subcloud } => {
                        client.call(
                            Method::DELETE,
                            &format!("sw-update-options/{}", enc(&subcloud)),
                            None,
                        )?;
                    }
                }
            }
        }
        Ok(())
    })
}
