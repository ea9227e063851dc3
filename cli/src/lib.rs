//! Shared pieces of the stx-patch command-line tools: output format selection, error
//! reporting and the text rendering of a verified patch. Each tool lives in [`tools`]; the
//! binaries in `src/bin/` and the multi-call `cli` only call its `main`.
#![forbid(unsafe_code)]

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use patch_format::VerifiedPatch;
use serde::Serialize;

pub mod client;
pub mod docs;
pub mod service_manager;
pub mod strategy_text;
pub mod tables;
pub mod tools;
pub mod vim_client;

/// `--format`: human tables or JSON for machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text (the original's layout where there is one).
    #[default]
    Text,
    /// JSON on stdout.
    Json,
    /// YAML on stdout (as the OpenStack clients' `-f yaml`).
    Yaml,
    /// The original `sw-patch --debug`: the answer's `pd` or `data` (else all of it) as
    /// sorted JSON indented by four.
    #[value(skip)]
    Debug,
}

impl OutputFormat {
    /// Whether the output is for machines (JSON or YAML), not the text tables.
    pub fn structured(self) -> bool {
        self != OutputFormat::Text
    }

    /// `value` as this format prints it: YAML when asked for, else pretty JSON.
    pub fn render<T: Serialize + ?Sized>(self, value: &T) -> anyhow::Result<String> {
        Ok(match self {
            OutputFormat::Yaml => serde_yaml_ng::to_string(value)?
                .trim_end_matches('\n')
                .to_owned(),
            OutputFormat::Text | OutputFormat::Json => serde_json::to_string_pretty(value)?,
            OutputFormat::Debug => {
                let value = serde_json::to_value(value)?;
                let shown = ["pd", "data"]
                    .iter()
                    .find_map(|k| value.get(k))
                    .unwrap_or(&value);
                // serde_json's maps are sorted, as the original's `sort_keys=True`.
                let mut text = Vec::new();
                let indent = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut serializer = serde_json::Serializer::with_formatter(&mut text, indent);
                shown.serialize(&mut serializer)?;
                String::from_utf8(text)?
            }
        })
    }
}

/// The region of a distributed cloud's system controller.
pub const SYSTEM_CONTROLLER_REGION: &str = "SystemController";

/// Which of a subcloud's APIs a region request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionApi {
    /// The patching API (`sw-patch`, `system`).
    Patching,
    /// The orchestration and alarm API (`sw-manager`, `fm`).
    Vim,
}

/// `--os-region-name`, as the OpenStack clients take it, and where the distributed cloud's
/// system controller is.
#[derive(Clone, Debug, clap::Args)]
pub struct RegionArgs {
    /// Send the request to a specified region: SystemController (the distributed cloud's
    /// system controller) or a subcloud's name (reached through the system controller at
    /// --dcmanager-url, with --token its operator token)
    #[arg(long = "os-region-name", global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// The distributed cloud system controller's dcmanager API, for subcloud regions
    #[arg(
        long,
        global = true,
        env = "DCMANAGER_URL",
        default_value = "http://127.0.0.1:8119",
        value_name = "URL"
    )]
    pub dcmanager_url: String,
}

impl RegionArgs {
    /// Where requests go: no region and the system controller's region are `local` (the
    /// controller the tool was pointed at); a subcloud's name goes through the system
    /// controller, which passes it on to that subcloud's `api`. A region the system
    /// controller does not know is refused with the original's message.
    pub fn base_url(
        &self,
        api: RegionApi,
        local: &str,
        token: Option<&str>,
    ) -> anyhow::Result<String> {
        let region = match self.region.as_deref() {
            None | Some(SYSTEM_CONTROLLER_REGION) => return Ok(local.to_owned()),
            Some(r) => r,
        };
        if dc_controller::model::validate_name("subcloud", region).is_err() {
            anyhow::bail!("Unsupported region name: {region}");
        }
        let base = format!(
            "{}/v1.0/subclouds/{region}",
            self.dcmanager_url.trim_end_matches('/')
        );
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let mut probe = http.get(&base);
        if let Some(token) = token {
            probe = probe.header("X-Auth-Token", token);
        }
        match probe.send() {
            Err(e) => anyhow::bail!(
                "Unsupported region name: {region} (no distributed cloud system controller answers at {}: {e})",
                self.dcmanager_url
            ),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                anyhow::bail!("Unsupported region name: {region}")
            }
            Ok(r) if !r.status().is_success() => {
                let body = read_answer(r).unwrap_or_default();
                anyhow::bail!("the system controller refused region {region}: {body:.200}")
            }
            Ok(_) => Ok(format!(
                "{base}/{}",
                match api {
                    RegionApi::Patching => "patching",
                    RegionApi::Vim => "vim",
                }
            )),
        }
    }
}

/// How the API clients reach the controller (`sw-patch`, `system`).
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionArgs {
    /// Controller API URL; several separated by commas for a controller pair
    #[arg(
        long,
        global = true,
        env = "SW_PATCH_URL",
        default_value = "http://127.0.0.1:5487"
    )]
    pub url: String,
    /// API token (sent as X-Auth-Token)
    #[arg(long, global = true, env = "SW_PATCH_TOKEN")]
    pub token: Option<String>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub region: RegionArgs,
}

/// Whom the clients trust for `https://` URLs, as the OpenStack clients take it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// CA bundle (PEM) the controller's certificate must chain to
    #[arg(
        long = "os-cacert",
        alias = "cacert",
        global = true,
        env = "OS_CACERT",
        value_name = "FILE"
    )]
    pub cacert: Option<PathBuf>,
    /// Do not verify the controller's certificate (still encrypted; anyone in the middle can
    /// read and change the traffic)
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl TlsArgs {
    /// The trust these options give (`None`: the system's trust store).
    pub fn trust(&self) -> Option<tls::Trust> {
        if self.insecure {
            eprintln!(
                "warning: --insecure: the controller's certificate is not verified; anyone in the middle can read and change this session"
            );
        }
        tls::Trust::from_options(self.cacert.clone(), self.insecure)
    }
}

/// A blocking client builder that trusts what `trust` says (or the system's trust store).
pub fn http_builder(
    trust: Option<&tls::Trust>,
) -> anyhow::Result<reqwest::blocking::ClientBuilder> {
    let builder = reqwest::blocking::Client::builder();
    Ok(match trust {
        Some(trust) => builder.tls_backend_preconfigured(trust.client_config()?),
        None => builder,
    })
}

/// The largest answer a client reads (a query of thousands of patches and hosts is a few
/// MiB): a controller, or whoever answers in its place, cannot make a client exhaust memory.
pub const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// An answer's body as text, refused beyond [`MAX_ANSWER_BYTES`].
pub fn read_answer(response: reqwest::blocking::Response) -> anyhow::Result<String> {
    let body = durable_fs::read_at_most(response, MAX_ANSWER_BYTES)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// How `sw-manager` and `fm` reach the orchestration and alarm API.
#[derive(Clone, Debug, clap::Args)]
pub struct VimConnectionArgs {
    /// Orchestration and alarm API URL; several separated by commas for a controller pair
    #[arg(
        long,
        global = true,
        env = "SW_MANAGER_URL",
        default_value = "http://127.0.0.1:4545"
    )]
    pub url: String,
    /// API token (sent as X-Auth-Token)
    #[arg(long, global = true, env = "SW_PATCH_TOKEN")]
    pub token: Option<String>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub region: RegionArgs,
}

/// The exit statuses every client tool uses (shown under `--help` and in the man pages).
pub const EXIT_CODES: &str = "Exit status: 0 when the operation succeeded; 1 when it failed or was refused (the reason is on stderr, or in \"error\" with --format json|yaml) or a check reports a failure (sw-patch precheck); 2 when the command line is wrong. is-applied and is-available exit 0 whichever they answer.";

/// Runs a command body; prints `error: …` (with causes) and exits 1 on failure.
pub fn run(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The secrets in a file, one per line (blank lines and `#` comments skipped): tokens are
/// passed in files, never on command lines other users can read.
pub fn read_secrets(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// The first secret in a file (see [`read_secrets`]).
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    read_secrets(path)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} holds no token", path.display()))
}

/// The default keyring directory: `$STX_PATCH_KEYRING`, else `/etc/stx-patch/keyring`.
pub fn default_keyring_dir() -> PathBuf {
    std::env::var_os("STX_PATCH_KEYRING")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/stx-patch/keyring"))
}

/// A verified patch as JSON (what `patch-query --format json` prints).
#[derive(Serialize)]
pub struct PatchReport<'a> {
    /// The metadata.
    pub metadata: &'a patch_format::PatchMetadata,
    /// Key file name that verified signature.v2.
    pub signed_by: &'a str,
    /// Its fingerprint.
    pub fingerprint: &'a str,
    /// `PSS` or `PKCS1v15`.
    pub scheme: String,
    /// The RPMs.
    pub rpms: Vec<RpmReport<'a>>,
}

/// One RPM of a [`PatchReport`].
#[derive(Serialize)]
pub struct RpmReport<'a> {
    /// File name.
    pub file_name: &'a str,
    /// Package name.
    pub name: &'a str,
    /// `[epoch:]version-release`.
    pub evr: String,
    /// Architecture.
    pub arch: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: &'a str,
    /// Key ids of the OpenPGP signatures on the RPM itself (empty: unsigned).
    pub signed_by: Vec<String>,
}

/// The key ids signing an extracted RPM, or why they could not be read.
fn rpm_signature_ids(rpm: &patch_format::ExtractedRpm) -> Result<Vec<String>, String> {
    patch_format::rpm_signers(&rpm.path).map_err(|e| e.to_string())
}

impl<'a> PatchReport<'a> {
    /// Builds the report of a verified patch.
    pub fn new(patch: &'a VerifiedPatch) -> Self {
        PatchReport {
            metadata: &patch.metadata,
            signed_by: &patch.signer.name,
            fingerprint: &patch.signer.fingerprint,
            scheme: scheme_name(patch.signer.scheme).to_owned(),
            rpms: patch
                .rpms
                .iter()
                .map(|r| RpmReport {
                    file_name: &r.file_name,
                    name: &r.info.name,
                    evr: r.info.evr.to_string(),
                    arch: &r.info.arch,
                    size: r.size,
                    sha256: &r.sha256,
                    signed_by: rpm_signature_ids(r).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The text form of a verified patch, field by field as `sw-patch show` lays them out.
pub fn describe_patch(patch: &VerifiedPatch) -> String {
    let m = &patch.metadata;
    let mut out = String::new();
    let yn = |b: bool| if b { "Y" } else { "N" };
    let _ = writeln!(out, "{}:", m.id);
    let field = write_field;
    field(&mut out, "Release", &m.sw_version);
    field(&mut out, "Status", m.status.as_str());
    field(&mut out, "Unremovable", yn(m.unremovable));
    field(&mut out, "RR", yn(m.reboot_required));
    field(&mut out, "Active Release", yn(m.apply_active_release_only));
    if !m.summary.is_empty() {
        field(&mut out, "Summary", &m.summary);
    }
    if !m.description.is_empty() {
        field(&mut out, "Description", &m.description);
    }
    if !m.install_instructions.is_empty() {
        field(&mut out, "Install Instr", &m.install_instructions);
    }
    if !m.warnings.is_empty() {
        field(&mut out, "Warnings", &m.warnings);
    }
    if !m.requires.is_empty() {
        let requires: Vec<&str> = m.requires.iter().map(String::as_str).collect();
        field(&mut out, "Requires", &requires.join("\n"));
    }
    if !m.personalities.is_empty() {
        let lines: Vec<String> = m
            .personalities
            .iter()
            .map(|(personality, packages)| {
                let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
                format!("{personality}: {}", packages.join(" "))
            })
            .collect();
        field(&mut out, "New Packages", &lines.join("\n"));
    }
    if !m.semantics.is_empty() {
        let actions: Vec<&str> = m.semantics.iter().map(|a| a.as_str()).collect();
        field(&mut out, "Semantics", &actions.join("\n"));
    }
    if let Some(script) = &m.restart_script {
        field(&mut out, "Restart Script", &script.name);
    }
    let contents: Vec<String> = patch
        .rpms
        .iter()
        .map(|r| format!("{} ({} bytes)", r.file_name, r.size))
        .collect();
    field(&mut out, "Contents", &contents.join("\n"));
    let signatures: Vec<String> = patch
        .rpms
        .iter()
        .map(|r| match rpm_signature_ids(r) {
            Ok(ids) if ids.is_empty() => format!("{}: unsigned", r.file_name),
            Ok(ids) => format!("{}: signed by key {}", r.file_name, ids.join(", ")),
            Err(e) => format!("{}: {e}", r.file_name),
        })
        .collect();
    field(&mut out, "RPM Signatures", &signatures.join("\n"));
    field(
        &mut out,
        "Signed By",
        &format!(
            "{} ({}, {})",
            patch.signer.name,
            patch.signer.fingerprint,
            scheme_name(patch.signer.scheme)
        ),
    );
    out
}

/// `PSS` or `PKCS1v15`.
pub fn scheme_name(scheme: patch_sign::SignatureScheme) -> &'static str {
    match scheme {
        patch_sign::SignatureScheme::Pss => "PSS",
        patch_sign::SignatureScheme::Pkcs1v15 => "PKCS1v15",
    }
}

/// One field in the original `sw-patch show` layout: `    {label:<15} value`, further lines
/// indented to the value column.
pub fn write_field(out: &mut String, name: &str, value: &str) {
    let mut lines = value.lines();
    let first = lines.next().unwrap_or("");
    let _ = writeln!(out, "    {:<15} {first}", format!("{name}:"));
    for line in lines {
        let _ = writeln!(out, "{:20}{line}", "");
    }
}

/// Resolves on Ctrl-C or SIGTERM (how daemons are asked to stop).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Logs to stderr, filtered by `$STX_PATCH_LOG` (default `info`) — for the daemons.
pub fn init_logging(format: LogFormat) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("STX_PATCH_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if format == LogFormat::Json {
        // One JSON object a line: time, level, target and the event's fields at the top
        // level (an audit event's user, from, action and outcome).
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init();
        return;
    }
    // Plain text; under journald (JOURNAL_STREAM set) without the time and colours journald
    // adds itself, and the audit events' fields only in their message, as the original
    // words them ("User: … From: … Action: … Outcome: …").
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let fields =
        tracing_subscriber::fmt::format::debug_fn(|writer, field, value| match field.name() {
            "message" => write!(writer, "{value:?}"),
            name if AUDIT_FIELDS.contains(&name) => Ok(()),
            name => write!(writer, " {name}={value:?}"),
        });
    let builder = tracing_subscriber::fmt()
        .fmt_fields(fields)
        .with_env_filter(filter())
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// How a daemon writes its log (`--log-format`, `STX_PATCH_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text, one event a line (journald-friendly under systemd).
    #[default]
    Text,
    /// One JSON object a line, every field at the top level.
    Json,
}

/// The structured fields of an audit event, which its text message already says.
const AUDIT_FIELDS: &[&str] = &["user", "from", "action", "outcome"];
