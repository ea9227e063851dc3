//! Controller configuration: a TOML file whose every key is also a command-line flag.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is missing or invalid.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Everything the controller needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// State directory (the original's `/opt/patching`).
    pub state_dir: PathBuf,
    /// Directory of trusted public keys and certificates (none: every upload is refused).
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// The running release, e.g. `19.01`.
    pub release: String,
    /// Unauthenticated patching API (loopback, like the original's 5487).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Authenticated patching API (requires `X-Auth-Token`), e.g. `0.0.0.0:5491`.
    #[serde(default)]
    pub auth_listen: Option<String>,
    /// Admin tokens accepted on the authenticated API, the strategy API and the dashboard.
    #[serde(default)]
    pub auth_tokens: Vec<String>,
    /// Reader tokens: they query and watch, and every change they ask for is refused.
    #[serde(default)]
    pub reader_tokens: Vec<String>,
    /// A file of accepted tokens, one per line (`#` comments allowed).
    #[serde(default)]
    pub auth_tokens_file: Option<PathBuf>,
    /// Agent endpoint (hosts report here and fetch packages); default `0.0.0.0:5488` when
    /// `agent_token_file` is set, off otherwise.
    #[serde(default)]
    pub agent_listen: Option<String>,
    /// File holding the token agents must present (`Authorization: Bearer …`).
    #[serde(default)]
    pub agent_token_file: Option<PathBuf>,
    /// A host silent for this many seconds shows offline (aged out after an hour).
    #[serde(default = "default_offline_after")]
    pub host_offline_after_secs: u64,
    /// Largest upload accepted, in bytes.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// Uploads received and verified at once; more are refused at once with "try again"
    /// (each holds a thread while its body arrives).
    #[serde(default = "default_max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// Hosts that may hold a credential at once; enrolment beyond it is refused, so a leaked
    /// agent token cannot fill the controller with made-up hosts.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
    /// Free disk a host must keep after receiving its packages (downloaded, then installed:
    /// twice their size) for the precheck to pass.
    #[serde(default = "default_precheck_disk_reserve")]
    pub precheck_disk_reserve_bytes: u64,
    /// Orchestration (strategy) and alarm API, the original VIM's `0.0.0.0:4545`. Off unless
    /// set; it needs auth tokens unless it listens on loopback.
    #[serde(default)]
    pub vim_listen: Option<String>,
    /// The controller host this daemon runs on: patched last, after a swact (none: the
    /// daemon runs off the managed hosts).
    #[serde(default)]
    pub local_controller: Option<String>,
    /// Single-controller (all-in-one simplex) system.
    #[serde(default)]
    pub single_controller: bool,
    /// Alarm ids the strategy never waits for, besides the built-in list.
    #[serde(default)]
    pub ignore_alarms: Vec<String>,
    /// How often the strategy is advanced, in milliseconds.
    #[serde(default = "default_audit_ms")]
    pub strategy_audit_ms: u64,
    /// Strategy timeouts and waits (seconds; defaults are the original's).
    #[serde(default)]
    pub strategy_timing: orchestrator::Timing,
    /// How long a patch's pre-apply or pre-remove semantic check may run before it is killed
    /// and the operation refused, in seconds (it runs while the store is held).
    #[serde(default = "default_semantic_timeout")]
    pub semantic_check_timeout_secs: u64,
    /// Refuse uploads whose RPMs are not all signed by a key in `rpm_keyring`.
    #[serde(default)]
    pub require_signed_rpms: bool,
    /// Directory of trusted RPM signing keys (`*.asc` OpenPGP public keys).
    #[serde(default)]
    pub rpm_keyring: Option<PathBuf>,
    /// The web dashboard (the original's Horizon pages), e.g. `0.0.0.0:8080`. Off unless set;
    /// operators log in with one of the auth tokens, so it needs at least one.
    #[serde(default)]
    pub web_listen: Option<String>,
    /// On a distributed cloud's system controller: its dcmanager API (`dc-controller`), whose
    /// subclouds, groups and subcloud strategy the dashboard's Distributed Cloud page shows.
    #[serde(default)]
    pub dcmanager_url: Option<String>,
    /// A file holding an operator token of that dcmanager API.
    #[serde(default)]
    pub dcmanager_token_file: Option<PathBuf>,
    /// This controller's host name in a pair (`controller-0`); with `peer`, makes the daemon
    /// one of two controllers.
    #[serde(default)]
    pub host_name: Option<String>,
    /// The other controller's pair endpoint, e.g. `http://controller-1:5490`.
    #[serde(default)]
    pub peer: Option<String>,
    /// This controller's pair endpoint (the peer's `peer`), e.g. `0.0.0.0:5490`.
    #[serde(default)]
    pub peer_listen: Option<String>,
    /// File holding the token the two controllers present to each other.
    #[serde(default)]
    pub peer_token_file: Option<PathBuf>,
    /// Which controller is active when a pair starts for the first time.
    #[serde(default = "default_initial_active")]
    pub initial_active: String,
    /// The host name or address the peer and clients reach this controller at (in redirects
    /// to the active controller); default: the listening address, or 127.0.0.1 for 0.0.0.0.
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// A dashboard session ends after this many minutes without a request.
    #[serde(default = "default_web_idle")]
    pub web_session_idle_minutes: u64,
    /// The certificate chain (PEM, leaf first) every listener but the loopback plain API
    /// serves TLS with; reloaded on SIGHUP. `sw-patch-controller tls-init DIR` makes a
    /// development CA and certificate.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The CA bundle (PEM) the peer controller's certificate must chain to (a pair whose
    /// `peer` is `https://…`); default: `tls_ca` unset means the system's trust store.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Serve the remote listeners over plain HTTP on non-loopback addresses (tokens and
    /// packages then cross the network in clear). Off: such a listener needs TLS.
    #[serde(default)]
    pub insecure_plain_http: bool,
    /// How long a signed repository index stays valid, in seconds (agents refuse it after;
    /// every request gets a freshly signed one).
    #[serde(default = "default_index_validity")]
    pub repo_index_validity_secs: u64,
    /// Limits every listener applies to its connections.
    #[serde(default)]
    pub connections: ListenerLimits,
}

/// Limits on each listener's connections: how many, how long a request head may take (and
/// so how long an idle connection stays), and the pace a request body must keep.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerLimits {
    /// Open connections per listener; more are closed as they arrive.
    pub max_connections: usize,
    /// Seconds a connection may take to finish its TLS handshake or send a request head, and
    /// stay idle between requests.
    pub head_timeout_secs: u64,
    /// Seconds a request body may stall between two chunks.
    pub body_idle_timeout_secs: u64,
    /// The average pace a request body must keep once `body_idle_timeout_secs` have passed,
    /// in bytes per second (a drip slower than this is cut off).
    pub body_min_bytes_per_sec: u64,
    /// Failed authentications a source address may make in a minute; beyond it, its
    /// requests are refused (429) until the minute is over.
    pub max_failed_auth_per_minute: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 4096,
            head_timeout_secs: 20,
            body_idle_timeout_secs: 30,
            body_min_bytes_per_sec: 1024,
            max_failed_auth_per_minute: 20,
        }
    }
}

impl ListenerLimits {
    /// The head (and TLS handshake, and keep-alive idle) timeout.
    pub fn head_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.head_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("connections: {m}")));
        if !(1..=1_000_000).contains(&self.max_connections) {
            return invalid("max_connections must be between 1 and 1000000");
        }
        if !(1..=3600).contains(&self.head_timeout_secs) {
            return invalid("head_timeout_secs must be between 1 and 3600");
        }
        if !(1..=100_000).contains(&self.max_failed_auth_per_minute) {
            return invalid("max_failed_auth_per_minute must be between 1 and 100000");
        }
        if !(1..=3600).contains(&self.body_idle_timeout_secs) {
            return invalid("body_idle_timeout_secs must be between 1 and 3600");
        }
        Ok(())
    }
}

/// Where the agent endpoint listens when only `agent_token_file` is set (the original's port).
pub(crate) const DEFAULT_AGENT_LISTEN: &str = "0.0.0.0:5488";

fn default_initial_active() -> String {
    "controller-0".to_owned()
}

fn default_web_idle() -> u64 {
    30
}

fn default_listen() -> String {
    "127.0.0.1:5487".to_owned()
}

fn default_semantic_timeout() -> u64 {
    300
}

fn default_offline_after() -> u64 {
    30
}

fn default_max_upload() -> u64 {
    8 << 30
}

fn default_index_validity() -> u64 {
    3600
}

fn default_max_concurrent_uploads() -> usize {
    16
}

fn default_max_hosts() -> usize {
    5000
}

fn default_precheck_disk_reserve() -> u64 {
    256 << 20
}

fn default_audit_ms() -> u64 {
    1000
}

impl ControllerConfig {
    /// A configuration with defaults for everything but the state directory and release.
    pub fn new(state_dir: impl Into<PathBuf>, release: impl Into<String>) -> Self {
        ControllerConfig {
            state_dir: state_dir.into(),
            keyring: None,
            release: release.into(),
            listen: default_listen(),
            auth_listen: None,
            auth_tokens: Vec::new(),
            reader_tokens: Vec::new(),
            auth_tokens_file: None,
            agent_listen: None,
            agent_token_file: None,
            host_offline_after_secs: default_offline_after(),
            max_upload_bytes: default_max_upload(),
            max_concurrent_uploads: default_max_concurrent_uploads(),
            max_hosts: default_max_hosts(),
            precheck_disk_reserve_bytes: default_precheck_disk_reserve(),
            vim_listen: None,
            local_controller: None,
            single_controller: false,
            ignore_alarms: Vec::new(),
            strategy_audit_ms: default_audit_ms(),
            strategy_timing: orchestrator::Timing::default(),
            semantic_check_timeout_secs: default_semantic_timeout(),
            require_signed_rpms: false,
            rpm_keyring: None,
            web_listen: None,
            dcmanager_url: None,
            dcmanager_token_file: None,
            web_session_idle_minutes: default_web_idle(),
            host_name: None,
            peer: None,
            peer_listen: None,
            peer_token_file: None,
            initial_active: default_initial_active(),
            advertise_host: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            insecure_plain_http: false,
            connections: ListenerLimits::default(),
            repo_index_validity_secs: default_index_validity(),
        }
    }

    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.release.is_empty() {
            return Err(ConfigError::Invalid(
                "release must be set (--release)".into(),
            ));
        }
        patch_format::validate_patch_id(&self.release)
            .map_err(|e| ConfigError::Invalid(format!("release: {e}")))?;
        if !is_loopback(&self.listen) {
            return Err(ConfigError::Invalid(format!(
                "listen {} is not a loopback address: the plain API has no authentication and serves server-side paths (upload_dir, init_release) and forced swacts; keep it on 127.0.0.1 or ::1 and give other hosts auth_listen (X-Auth-Token)",
                self.listen
            )));
        }
        self.connections.validate()?;
        if !(10..=30 * 24 * 3600).contains(&self.repo_index_validity_secs) {
            return Err(ConfigError::Invalid(
                "repo_index_validity_secs must be between 10 and 2592000 (30 days)".into(),
            ));
        }
        if !(1..=1024).contains(&self.max_concurrent_uploads) {
            return Err(ConfigError::Invalid(
                "max_concurrent_uploads must be between 1 and 1024".into(),
            ));
        }
        if self.max_hosts == 0 {
            return Err(ConfigError::Invalid("max_hosts must be at least 1".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together (the certificate and its private key)".into(),
            ));
        }
        if self.tls_cert.is_none() && !self.insecure_plain_http {
            for (name, addr) in self.remote_listeners() {
                if !is_loopback(&addr) {
                    return Err(ConfigError::Invalid(format!(
                        "{name} {addr} is not a loopback address and has no TLS: tokens and packages would cross the network in clear; set tls_cert and tls_key (sw-patch-controller tls-init DIR makes a development CA), or insecure_plain_http = true on a network you trust"
                    )));
                }
            }
        }
        // Read once: the token file is read from disk.
        let no_operators = self.operators()?.is_empty();
        if self.auth_listen.is_some() && no_operators {
            return Err(ConfigError::Invalid(
                "auth_listen needs at least one token (auth_tokens or auth_tokens_file)".into(),
            ));
        }
        if let Some(addr) = &self.vim_listen {
            let loopback = addr
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !loopback && no_operators {
                return Err(ConfigError::Invalid(format!(
                    "vim_listen {addr} is not loopback: it needs auth tokens (auth_tokens or auth_tokens_file)"
                )));
            }
        }
        if let Some(addr) = &self.web_listen
            && no_operators
        {
            return Err(ConfigError::Invalid(format!(
                "web_listen {addr}: operators log in with a token, so it needs auth tokens (auth_tokens or auth_tokens_file)"
            )));
        }
        if self.dcmanager_url.is_some() != self.dcmanager_token_file.is_some() {
            return Err(ConfigError::Invalid(
                "dcmanager_url and dcmanager_token_file go together (the dcmanager API needs a token)"
                    .into(),
            ));
        }
        if !(1..=24 * 60).contains(&self.web_session_idle_minutes) {
            return Err(ConfigError::Invalid(
                "web_session_idle_minutes must be between 1 and 1440".into(),
            ));
        }
        if self.peer.is_some() || self.peer_listen.is_some() {
            if self.host_name.is_none() || self.peer.is_none() || self.peer_listen.is_none() {
                return Err(ConfigError::Invalid(
                    "a controller pair needs host_name, peer, peer_listen and peer_token_file"
                        .into(),
                ));
            }
            if self.peer_token_file.is_none() {
                return Err(ConfigError::Invalid(
                    "a controller pair needs peer_token_file (the token the controllers present to each other)".into(),
                ));
            }
            if self.single_controller {
                return Err(ConfigError::Invalid(
                    "single_controller (simplex) cannot have a peer controller".into(),
                ));
            }
        }
        if self.require_signed_rpms && self.rpm_keyring.is_none() {
            return Err(ConfigError::Invalid(
                "require_signed_rpms needs rpm_keyring (a directory of trusted *.asc keys)".into(),
            ));
        }
        if !(1..=3600).contains(&self.semantic_check_timeout_secs) {
            return Err(ConfigError::Invalid(
                "semantic_check_timeout_secs must be between 1 and 3600".into(),
            ));
        }
        if !(10..=60_000).contains(&self.strategy_audit_ms) {
            return Err(ConfigError::Invalid(
                "strategy_audit_ms must be between 10 and 60000".into(),
            ));
        }
        for id in &self.ignore_alarms {
            if id.is_empty() || id.len() > 16 {
                return Err(ConfigError::Invalid(format!(
                    "ignore_alarms: bad alarm id '{id}'"
                )));
            }
        }
        Ok(())
    }

    /// The listeners that may be reached from other hosts, by configuration key.
    fn remote_listeners(&self) -> Vec<(&'static str, String)> {
        let agent = self.agent_listen.clone().or_else(|| {
            self.agent_token_file
                .is_some()
                .then(|| DEFAULT_AGENT_LISTEN.to_owned())
        });
        [
            ("auth_listen", self.auth_listen.clone()),
            ("agent_listen", agent),
            ("vim_listen", self.vim_listen.clone()),
            ("web_listen", self.web_listen.clone()),
            ("peer_listen", self.peer_listen.clone()),
        ]
        .into_iter()
        .filter_map(|(name, addr)| addr.map(|a| (name, a)))
        .collect()
    }

    /// The agents' token (first non-comment line of `agent_token_file`).
    pub(crate) fn agent_token(&self) -> Result<String, ConfigError> {
        let path = self.agent_token_file.as_ref().ok_or_else(|| {
            ConfigError::Invalid("agent_listen needs agent_token_file (the agents' token)".into())
        })?;
        first_token(path)
    }

    pub(crate) fn limits(&self) -> patch_format::Limits {
        patch_format::Limits {
            max_total_size: self.max_upload_bytes.saturating_mul(4).max(1 << 30),
            ..patch_format::Limits::default()
        }
    }

    /// The dcmanager API's operator token (first non-comment line of
    /// `dcmanager_token_file`).
    pub(crate) fn dcmanager_token(&self) -> Result<String, ConfigError> {
        let path = self.dcmanager_token_file.as_ref().ok_or_else(|| {
            ConfigError::Invalid("dcmanager_url needs dcmanager_token_file".into())
        })?;
        first_token(path)
    }

    /// The controllers' shared token (first non-comment line of `peer_token_file`).
    pub(crate) fn peer_token(&self) -> Result<String, ConfigError> {
        let path = self.peer_token_file.as_ref().ok_or_else(|| {
            ConfigError::Invalid("a controller pair needs peer_token_file".into())
        })?;
        first_token(path)
    }

    /// Every operator token: `auth_tokens` and `reader_tokens`, and the lines of
    /// `auth_tokens_file` (`TOKEN`, `ROLE TOKEN` or `ROLE NAME TOKEN`).
    pub(crate) fn operators(&self) -> Result<crate::auth::Operators, ConfigError> {
        let text = match &self.auth_tokens_file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?,
            None => String::new(),
        };
        crate::auth::Operators::parse(text.lines(), &self.auth_tokens, &self.reader_tokens).map_err(
            |e| {
                ConfigError::Invalid(format!(
                    "{}: {e}",
                    self.auth_tokens_file
                        .as_deref()
                        .map_or("auth_tokens_file".into(), |p| p.display().to_string())
                ))
            },
        )
    }
}

/// The first line of a token file that is neither empty nor a `#` comment.
fn first_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::Invalid(format!("{} holds no token", path.display())))
}

/// Whether a listen address stays on this host: a loopback IP, or `localhost`.
fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(sock) => sock.ip().is_loopback(),
        Err(_) => addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| host == "localhost" && port.parse::<u16>().is_ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unauthenticated API stays on this host.
    #[test]
    fn the_plain_api_listens_only_on_loopback() {
        let mut config = ControllerConfig::new("/tmp/state", "19.01");
        for ok in [
            "127.0.0.1:5487",
            "127.0.0.1:0",
            "[::1]:5487",
            "localhost:5487",
        ] {
            config.listen = ok.into();
            assert!(config.validate().is_ok(), "{ok}");
        }
        for refused in [
            "0.0.0.0:5487",
            "192.168.204.2:5487",
            "[::]:5487",
            "evil.com:5487",
        ] {
            config.listen = refused.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("not a loopback address"), "{refused}: {err}");
        }
    }
}
