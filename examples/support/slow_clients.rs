//! The slow-client scenario, shared by `bench_slow_clients` (which times it) and the
//! `slow_clients` test (which checks that nothing is refused or hangs): idle connections that
//! never speak, uploads dripping a byte a second, and meanwhile an operator and enrolled hosts
//! who must keep being served.
// The benchmark and the test each use a part of this.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Errors of the scenario: it is driven from a test or a benchmark's `main`.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The patch the operator applies and removes.
pub const PATCH_ID: &str = "SLOW_0001";
const AGENT_TOKEN: &str = "slow-clients-agent";

/// What a controller for the scenario is started with.
pub struct Setup {
    /// The signed patch to upload.
    pub patch: PathBuf,
    /// The development CA the controller's certificate comes from.
    pub ca: tls::dev_ca::DevCa,
    /// Arguments for `sw-patch-controller` (add `--print-addresses`).
    pub args: Vec<OsString>,
}

/// Writes the patch, the CA, the tokens and the configuration into `dir` (which holds a
/// `keyring/` trusting `key`); `connections` holds the lines of the controller's
/// `[connections]` table (its listener limits).
pub fn prepare(dir: &Path, key: &patch_sign::PrivateKey, connections: &str) -> Result<Setup> {
    for sub in ["rpms", "patches", "state"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let rpm = TestRpm::new("slow", "1.0", "1").build(&dir.join("rpms"));
    let mut metadata = PatchMetadata::new(PATCH_ID, "19.01");
    metadata.status = Status::Released;
    let mut builder = PatchBuilder::new(metadata);
    builder.add_rpm(&rpm, &[])?;
    let patch = builder.write_to_dir(&dir.join("patches"), key)?.0;

    let ca = tls::dev_ca::create(&dir.join("tls"), &[])?;
    std::fs::write(dir.join("agent-token"), format!("{AGENT_TOKEN}\n"))?;
    std::fs::write(dir.join("tokens"), "slow-clients-admin\n")?;
    std::fs::write(
        dir.join("controller.toml"),
        format!(
            "state_dir = {:?}\nrelease = \"19.01\"\n[connections]\n{connections}\n",
            dir.join("state")
        ),
    )?;
    let mut args: Vec<OsString> = Vec::new();
    let mut arg = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_owned());
    arg(&"--config");
    arg(&dir.join("controller.toml"));
    arg(&"--keyring");
    arg(&dir.join("keyring"));
    for a in ["--listen", "127.0.0.1:0", "--auth-listen", "127.0.0.1:0"] {
        arg(&a);
    }
    for a in ["--agent-listen", "127.0.0.1:0", "--vim-listen", "off"] {
        arg(&a);
    }
    arg(&"--auth-tokens-file");
    arg(&dir.join("tokens"));
    arg(&"--agent-token-file");
    arg(&dir.join("agent-token"));
    arg(&"--tls-cert");
    arg(&ca.server_cert);
    arg(&"--tls-key");
    arg(&ca.server_key);
    Ok(Setup { patch, ca, args })
}

/// A running controller's listeners and the clients that talk to them.
pub struct Site {
    /// The loopback plain API (`host:port`).
    pub api: String,
    /// The authenticated TLS API.
    pub auth: String,
    /// The agents' TLS endpoint.
    pub agent: String,
    plain: reqwest::Client,
    secure: reqwest::Client,
}

impl Site {
    /// Clients for the controller printed `addrs`; every request gives up after `timeout`
    /// when one is set.
    pub fn new(
        setup: &Setup,
        addrs: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<Site> {
        let addr = |k: &str| -> Result<String> {
            Ok(addrs[k]
                .as_str()
                .ok_or(format!("no {k} address"))?
                .to_owned())
        };
        let trust = tls::Trust::CaBundle(setup.ca.ca_cert.clone());
        let mut plain = reqwest::Client::builder();
        let mut secure =
            reqwest::Client::builder().tls_backend_preconfigured(trust.client_config()?);
        if let Some(t) = timeout {
            plain = plain.timeout(t);
            secure = secure.timeout(t);
        }
        Ok(Site {
            api: addr("api")?,
            auth: addr("auth_api")?,
            agent: addr("agent_api")?,
            plain: plain.build()?,
            secure: secure.build()?,
        })
    }

    /// Creates the release, uploads the patch and enrols `hosts` hosts; returns each host's
    /// name and credential.
    pub async fn populate(
        &self,
        setup: &Setup,
        hosts: usize,
    ) -> Result<Arc<Vec<(String, String)>>> {
        let api = format!("http://{}", self.api);
        self.post(&format!("{api}/v1/init_release/19.01")).await?;
        let bytes = tokio::fs::read(&setup.patch).await?;
        let part = reqwest::multipart::Part::bytes(bytes).file_name(format!("{PATCH_ID}.patch"));
        let r: serde_json::Value = self
            .plain
            .post(format!("{api}/v1/upload"))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await?
            .json()
            .await?;
        if r["error"].as_str().is_some_and(|e| !e.is_empty()) {
            return Err(format!("upload: {}", r["error"]).into());
        }
        let mut enrolled = Vec::new();
        for i in 0..hosts {
            let host = format!("compute-{i}");
            let r: serde_json::Value = self
                .secure
                .post(format!("https://{}/agent/v1/enrol", self.agent))
                .bearer_auth(AGENT_TOKEN)
                .json(&serde_json::json!({ "hostname": host }))
                .send()
                .await?
                .json()
                .await?;
            let credential = r["credential"].as_str().ok_or("no credential")?.to_owned();
            enrolled.push((host, credential));
        }
        Ok(Arc::new(enrolled))
    }

    async fn post(&self, url: &str) -> Result<serde_json::Value> {
        let r: serde_json::Value = self.plain.post(url).send().await?.json().await?;
        if r["error"].as_str().is_some_and(|e| !e.is_empty()) {
            return Err(format!("{url}: {}", r["error"]).into());
        }
        Ok(r)
    }

    /// Opens `n` connections to the TLS API that never send a byte. Each task ends when the
    /// server closes its connection, with the time that took.
    pub async fn open_idle(&self, n: usize) -> Result<Vec<JoinHandle<Duration>>> {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let mut stream = tokio::net::TcpStream::connect(&self.auth).await?;
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 1];
                let _ = stream.read(&mut buf).await;
                started.elapsed()
            }));
        }
        Ok(tasks)
    }

    /// Starts `n` uploads to the plain API of the scenario's (valid) patch that send their
    /// head and then one byte of the patch a second. Each task ends when the server stops
    /// taking bytes, with what it answered.
    pub fn open_drips(&self, setup: &Setup, n: usize) -> Result<Vec<JoinHandle<String>>> {
        let patch = Arc::new(std::fs::read(&setup.patch)?);
        Ok((0..n)
            .map(|_| {
                let api = self.api.clone();
                let patch = Arc::clone(&patch);
                tokio::spawn(async move {
                    let Ok(mut s) = tokio::net::TcpStream::connect(&api).await else {
                        return "connect failed".to_owned();
                    };
                    let head = format!(
                        "POST /v1/upload?filename=drip.patch HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                        patch.len()
                    );
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return String::new();
                    }
                    let (mut rd, mut wr) = s.into_split();
                    let reader = tokio::spawn(async move {
                        let mut answer = Vec::new();
                        let _ = rd.read_to_end(&mut answer).await;
                        String::from_utf8_lossy(&answer).into_owned()
                    });
                    for byte in patch.iter() {
                        if reader.is_finished() || wr.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    reader.await.unwrap_or_default()
                })
            })
            .collect())
    }

    /// Every second for `seconds`: the operator applies or removes the patch, queries patches
    /// and hosts, and every host posts a report over TLS. Any refusal is an error.
    pub async fn operate(
        &self,
        hosts: &Arc<Vec<(String, String)>>,
        seconds: u64,
    ) -> Result<Latencies> {
        let api = format!("http://{}", self.api);
        let mut l = Latencies::default();
        for second in 0..seconds {
            let tick = Instant::now();
            let action = if second % 2 == 0 { "apply" } else { "remove" };
            let t = Instant::now();
            self.post(&format!("{api}/v1/{action}/{PATCH_ID}")).await?;
            l.mutate.push(t.elapsed().as_secs_f64());
            for (what, into) in [("query", &mut l.query), ("query_hosts", &mut l.hosts)] {
                let t = Instant::now();
                let r = self.plain.get(format!("{api}/v1/{what}")).send().await?;
                if !r.status().is_success() {
                    return Err(format!("{what}: HTTP {}", r.status()).into());
                }
                r.bytes().await?;
                into.push(t.elapsed().as_secs_f64());
            }
            let reports = hosts
                .iter()
                .map(|(host, credential)| self.report(host, credential));
            for r in futures_util::future::join_all(reports).await {
                l.reports.push(r?);
            }
            if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(l)
    }

    async fn report(&self, host: &str, credential: &str) -> Result<f64> {
        let body = serde_json::json!({
            "hostname": host, "ip": "127.0.0.1", "personality": "Worker",
            "subfunctions": ["worker"], "sw_version": "19.01", "install_state": "idle",
            "last_error": null, "reboot_pending": false, "boot_id": "b1", "installed": [],
            "op_counter": 0, "install_done": 0, "instance": "i1", "workloads": [],
            "workload_actions": false, "services_disabled": false
        });
        let t = Instant::now();
        let r = self
            .secure
            .post(format!("https://{}/agent/v1/report", self.agent))
            .bearer_auth(credential)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("report of {host}: HTTP {}", r.status()).into());
        }
        Ok(t.elapsed().as_secs_f64())
    }
}

/// Latencies in seconds, per operation kind.
#[derive(Default)]
pub struct Latencies {
    /// `apply`/`remove`.
    pub mutate: Vec<f64>,
    /// `query`.
    pub query: Vec<f64>,
    /// `query_hosts`.
    pub hosts: Vec<f64>,
    /// The hosts' reports.
    pub reports: Vec<f64>,
}

/// This process holds thousands of sockets: the soft limit on open files goes up to the hard.
pub fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}
