//! What the benchmark examples share: option parsing, the median of runs, a big patch.
// Each example uses a part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use patch_format::{PatchBuilder, PatchMetadata, Status};
use patch_sign::PrivateKey;

/// `sw-patch-controller` built beside this example (`cargo build --release --workspace
/// --bins`), set to print its addresses and log errors only.
pub fn controller_command() -> Result<std::process::Command, Box<dyn std::error::Error>> {
    let bin = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sw-patch-controller"))
        .filter(|p| p.exists())
        .ok_or("build the controller first: cargo build --release --workspace --bins")?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--print-addresses")
        .env("STX_PATCH_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    Ok(cmd)
}

/// Starts a [`controller_command`] and reads the addresses it listens on.
pub fn spawn_controller(
    cmd: &mut std::process::Command,
) -> Result<(std::process::Child, serde_json::Value), Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let mut child = cmd.spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    match serde_json::from_str(&line) {
        Ok(addrs) => Ok((child, addrs)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the controller did not start ({e}): {line:?}").into())
        }
    }
}

/// `--name value` from the command line, or `default`.
pub fn opt(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// Empties `dir` and creates `subs` and `keyring/` in it; returns a new signing key whose
/// public half is `keyring/bench.pem`.
pub fn bench_dir(dir: &Path, subs: &[&str]) -> Result<PrivateKey, Box<dyn std::error::Error>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    for sub in subs.iter().chain(&["keyring"]) {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let key = PrivateKey::generate(2048)?;
    std::fs::write(
        dir.join("keyring/bench.pem"),
        key.public_key().to_spki_pem()?,
    )?;
    Ok(key)
}

/// A controller on loopback (any free port) with its state in `dir/state`, trusting the
/// bench key and taking uploads of any size the benchmarks make.
pub fn controller_config(dir: &Path, state: &str) -> controller::ControllerConfig {
    let mut config = controller::ControllerConfig::new(dir.join(state), "19.01");
    config.keyring = Some(dir.join("keyring"));
    config.listen = "127.0.0.1:0".into();
    config.max_upload_bytes = 64 << 30;
    config
}

/// The median of some timings.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `BIG_PATCH`: `size_mib` of incompressible RPMs (8 MiB each) under `dir/rpms`, the patch
/// in `dir/patches`.
pub fn big_patch(
    dir: &Path,
    key: &PrivateKey,
    size_mib: u64,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut metadata = PatchMetadata::new("BIG_PATCH", "19.01");
    metadata.status = Status::Released;
    let mut builder = PatchBuilder::new(metadata);
    let per = 8u64 << 20;
    let mut made = 0;
    let mut i = 0;
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    while made < size_mib << 20 {
        let size = per.min((size_mib << 20) - made);
        let mut content = vec![0u8; size as usize];
        std::io::Read::read_exact(&mut urandom, &mut content)?;
        let name = format!("big{i:03}");
        let pkg = rpm::PackageBuilder::new(&name, "1.0", "MIT", "x86_64", "bench")
            .release("1")
            .using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::None))
            .with_file_contents(content, rpm::FileOptions::new(format!("/opt/{name}")))?
            .build()?;
        let path = dir.join("rpms").join(format!("{name}-1.0-1.x86_64.rpm"));
        pkg.write_file(&path)?;
        builder.add_rpm(&path, &[])?;
        made += size;
        i += 1;
    }
    Ok(builder.write_to_dir(&dir.join("patches"), key)?.0)
}

/// A host: the running example in agent mode (the `agent` library, as `sw-patch-agent`):
/// `URL TOKEN HOST PERSONALITY ROOT boot|run` — `boot` installs what the host should have
/// and exits (as at boot), `run` reports and takes orders until killed.
pub fn run_agent(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [url, token, host, personality, root, mode] = args else {
        return Err("usage: __agent URL TOKEN HOST PERSONALITY ROOT boot|run".into());
    };
    let config = agent::AgentConfig {
        heartbeat: std::time::Duration::from_secs(1),
        // The controller's CA, when it serves TLS (the demo's development CA).
        ca_bundle: std::env::var_os("OS_CACERT").map(Into::into),
        ..agent::AgentConfig::new(url, token, host, personality.parse()?, "19.01", root)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let agent = std::sync::Arc::new(agent::Agent::open(config)?);
        if mode == "boot" {
            agent.install(true, true, 0).await?;
            return Ok(());
        }
        let (_stop, rx) = tokio::sync::watch::channel(false);
        agent.run(rx).await;
        Ok(())
    })
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM:` peak RSS, `VmRSS:`), in KiB; 0 when the
/// process is gone. `pid` may be `self`.
pub fn status_kib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) process `pid` has used so far; 0 when it is gone. `pid`
/// may be `self`.
pub fn cpu_seconds(pid: &str) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised command name.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}
