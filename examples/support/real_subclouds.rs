//! Real subclouds for the distributed cloud benchmark: the `sw-patch-controller` library,
//! many per process, each a simplex cloud of one host — the `agent` library installing
//! into a root of its own — with the patching, VIM and agent APIs over TLS (one
//! development CA for all) and a token on the patching API, as a subcloud is reached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Agent, AgentConfig};
use controller::{Controller, ControllerConfig};
use patch_format::Personality;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The token each real subcloud's patching API takes.
pub const TOKEN: &str = "bench-subcloud-admin";

/// One real subcloud.
pub struct RealSubcloud {
    /// Its authenticated patching API (`https://…`).
    pub url: String,
    /// Its VIM API (`https://…`).
    pub vim_url: String,
    /// Its plain loopback patching API, for the benchmark's own checks.
    pub plain_url: String,
    /// Its one host's root.
    pub root: PathBuf,
    controller: Controller,
}

/// Real subclouds served by this process's runtime.
pub struct Farm {
    pub clouds: Vec<RealSubcloud>,
    /// The CA every subcloud's certificate chains to (PEM).
    pub ca_pem: String,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Farm {
    /// Starts `n` subclouds under `dir`, trusting the patches signed for `keyring` and
    /// running release 19.01 from `feed`; returns once every host reports patch-current.
    pub async fn start(dir: &Path, n: usize, keyring: &Path, feed: &Path) -> Result<Farm> {
        std::fs::create_dir_all(dir)?;
        let ca = tls::dev_ca::create(&dir.join("tls"), &[])?;
        let agent_token = dir.join("agent-token");
        std::fs::write(&agent_token, "bench-subcloud-agent\n")?;
        let (stop, rx) = tokio::sync::watch::channel(false);
        let http = reqwest::Client::new();
        let mut clouds = Vec::with_capacity(n);
        for i in 0..n {
            let site = dir.join(format!("{i:05}"));
            let mut config = ControllerConfig::new(site.join("state"), "19.01");
            config.keyring = Some(keyring.to_owned());
            config.listen = "127.0.0.1:0".into();
            config.auth_listen = Some("127.0.0.1:0".into());
            config.auth_tokens = vec![TOKEN.into()];
            config.agent_listen = Some("127.0.0.1:0".into());
            config.agent_token_file = Some(agent_token.clone());
            config.vim_listen = Some("127.0.0.1:0".into());
            config.single_controller = true;
            config.strategy_audit_ms = 100;
            config.strategy_timing = orchestrator::Timing::shortened();
            config.tls_cert = Some(ca.server_cert.clone());
            config.tls_key = Some(ca.server_key.clone());
            let controller = Controller::start(config).await?;
            let plain_url = format!("http://{}", controller.api_addr);
            http.post(format!(
                "{plain_url}/v1/init_release/19.01?feed={}",
                feed.display()
            ))
            .send()
            .await?
            .error_for_status()?;
            let root = site.join("root");
            std::fs::create_dir_all(&root)?;
            let agent_addr = controller.agent_addr.ok_or("no agent listener")?;
            let agent = Arc::new(Agent::open(AgentConfig {
                heartbeat: Duration::from_secs(1),
                ca_bundle: Some(ca.ca_cert.clone()),
                ..AgentConfig::new(
                    format!("https://{agent_addr}"),
                    "bench-subcloud-agent",
                    "controller-0",
                    Personality::Controller,
                    "19.01",
                    &root,
                )
            })?);
            // The boot-time install of the base load, as a host does before it joins.
            agent.install(true, true, 0).await?;
            tokio::spawn(agent.run(rx.clone()));
            clouds.push(RealSubcloud {
                url: format!("https://{}", controller.auth_api_addr.ok_or("no auth API")?),
                vim_url: format!("https://{}", controller.vim_addr.ok_or("no VIM API")?),
                plain_url,
                root,
                controller,
            });
        }
        let farm = Farm {
            clouds,
            ca_pem: std::fs::read_to_string(&ca.ca_cert)?,
            stop,
        };
        let start = Instant::now();
        for cloud in &farm.clouds {
            while !cloud.current(&http).await? {
                if start.elapsed() > Duration::from_secs(600) {
                    let hosts = http
                        .get(format!("{}/v1/query_hosts", cloud.plain_url))
                        .send()
                        .await?
                        .text()
                        .await?;
                    return Err(
                        format!("{} never reported current: {hosts}", cloud.plain_url).into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(farm)
    }

    /// Stops every agent and controller.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for cloud in self.clouds {
            cloud.controller.stop().await;
        }
    }
}

impl RealSubcloud {
    /// Whether its one host reports and runs what its controller has applied.
    pub async fn current(&self, http: &reqwest::Client) -> Result<bool> {
        let hosts: serde_json::Value = http
            .get(format!("{}/v1/query_hosts", self.plain_url))
            .send()
            .await?
            .json()
            .await?;
        Ok(hosts["data"]
            .as_array()
            .is_some_and(|h| h.len() == 1 && h[0]["patch_current"] == true))
    }

    /// How many patch strategies its controller created (its own counter, counted when
    /// stored).
    pub async fn strategy_creates(&self, http: &reqwest::Client) -> Result<u64> {
        let text = http
            .get(format!("{}/metrics", self.plain_url))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| l.strip_prefix("stx_patch_strategies_created_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| {
                format!(
                    "no strategies-created counter in {}/metrics",
                    self.plain_url
                )
                .into()
            })
    }
}
