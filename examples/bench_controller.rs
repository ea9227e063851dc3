//! Benchmark of the controller, each figure beside a baseline from the same run:
//!
//! * upload + verify + import of a 256 MiB patch over HTTP vs `gzip -dc X.patch | sha256sum`,
//!   and the same upload over TLS vs over plain HTTP;
//! * `GET /v1/query` latency (what `sw-patch query` waits for) with 1,000 patches in the store,
//!   and the whole `sw-patch query` command when its binary is built next to this example.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release --example bench_controller --
//!       [--size-mib 256] [--patches 1000]`

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use controller::Controller;
use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use patch_sign::PrivateKey;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let size_mib: u64 = opt("--size-mib", "256").parse()?;
    let count: usize = opt("--patches", "1000").parse()?;
    let dir = PathBuf::from(opt("--dir", "target/bench-controller"));
    let key = support::bench_dir(&dir, &["rpms", "patches", "state", "feed"])?;

    eprintln!("building a {size_mib} MiB patch…");
    let big = support::big_patch(&dir, &key, size_mib)?;
    eprintln!("building {count} small patches…");
    let small: Vec<PathBuf> = (0..count)
        .map(|i| small_patch(&dir, &key, i))
        .collect::<Result<_, _>>()?;

    let runtime = tokio::runtime::Runtime::new()?;
    // The same controller also serves the authenticated API over TLS (a development CA), so
    // the same upload can be timed both ways in one run.
    let ca = tls::dev_ca::create(&dir.join("tls"), &[])?;
    let mut config = support::controller_config(&dir, "state");
    config.auth_listen = Some("127.0.0.1:0".into());
    config.auth_tokens = vec!["bench-token".into()];
    config.vim_listen = None;
    config.tls_cert = Some(ca.server_cert.clone());
    config.tls_key = Some(ca.server_key.clone());
    let controller = runtime.block_on(Controller::start(config))?;
    let url = format!("http://{}", controller.api_addr);
    let tls_url = format!(
        "https://{}",
        controller.auth_api_addr.ok_or("no authenticated API")?
    );
    let http = reqwest::blocking::Client::builder().timeout(None).build()?;
    let https = reqwest::blocking::Client::builder()
        .timeout(None)
        .tls_backend_preconfigured(tls::Trust::CaBundle(ca.ca_cert.clone()).client_config()?)
        .default_headers(
            [(
                reqwest::header::HeaderName::from_static("x-auth-token"),
                reqwest::header::HeaderValue::from_static("bench-token"),
            )]
            .into_iter()
            .collect(),
        )
        .build()?;
    let r: serde_json::Value = http
        .post(format!("{url}/v1/init_release/19.01"))
        .send()?
        .json()?;
    assert_eq!(r["error"], "", "{r}");

    // Upload + verify + import vs gzip -dc | sha256sum, 3 rounds, median; and the same upload
    // over TLS, alternated with the plain one.
    let mut ours = Vec::new();
    let mut base = Vec::new();
    let mut over_tls = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" | sha256sum > /dev/null")
            .arg("sh")
            .arg(&big)
            .status()?;
        assert!(status.success());
        base.push(t.elapsed().as_secs_f64());

        // Upload (timed), then delete so the next round uploads afresh.
        for (client, base, times) in [(&http, &url, &mut ours), (&https, &tls_url, &mut over_tls)] {
            let t = Instant::now();
            let r = upload(client, base, &big)?;
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(r["error"], "", "{r}");
            let r: serde_json::Value = http
                .post(format!("{url}/v1/delete/BIG_PATCH"))
                .send()?
                .json()?;
            assert_eq!(r["error"], "", "{r}");
        }
    }
    let med = |v: &mut Vec<f64>| support::median(v);
    let (up, gz, up_tls) = (med(&mut ours), med(&mut base), med(&mut over_tls));

    eprintln!("uploading {count} patches…");
    for p in &small {
        let r = upload(&http, &url, p)?;
        assert_eq!(r["error"], "", "{r}");
    }
    // Apply half of them so the table has both states.
    let half: Vec<String> = (0..count / 2).map(|i| format!("Q{i:04}")).collect();
    for chunk in half.chunks(100) {
        let r: serde_json::Value = http
            .post(format!("{url}/v1/apply/{}", chunk.join("/")))
            .send()?
            .json()?;
        assert_eq!(r["error"], "", "{r}");
    }
    let mut latencies = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let r: serde_json::Value = http.get(format!("{url}/v1/query")).send()?.json()?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r["pd"].as_object().map(|m| m.len()), Some(count));
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    let cli = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sw-patch"))
        .filter(|p| p.exists());
    let cli_line = match cli {
        Some(cli) => {
            let mut times = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                let out = Command::new(&cli).args(["--url", &url, "query"]).output()?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(out.status.success());
            }
            times.sort_by(f64::total_cmp);
            format!(
                "| `sw-patch query` command, {count} patches | p50 {:.1} ms, p99 {:.1} ms | | | p99 ≤ 50 ms |",
                times[times.len() / 2],
                times[(times.len() * 99 / 100).min(times.len() - 1)]
            )
        }
        None => {
            "| `sw-patch query` command | (binary not built: cargo build --release --bins) | | | |"
                .to_owned()
        }
    };
    runtime.block_on(controller.stop());

    println!(
        "### Controller, {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| measure | stx-patch | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| upload + verify + import, {size_mib} MiB patch (median of 3) | {up:.2} s | {gz:.2} s (`gzip -dc \\| sha256sum`) | {:.2}× | ≤ 1.3× |",
        up / gz
    );
    println!(
        "| the same upload over TLS vs plain HTTP (median of 3, alternated) | {up_tls:.2} s | {up:.2} s | {:.2}× | ≤ 1.15× |",
        up_tls / up
    );
    println!(
        "| `GET /v1/query`, {count} patches (300 calls) | p50 {:.1} ms, p99 {:.1} ms | | | p99 ≤ 50 ms |",
        pct(0.5),
        pct(0.99)
    );
    println!("{cli_line}");
    Ok(())
}

fn upload(
    http: &reqwest::blocking::Client,
    url: &str,
    path: &Path,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let part = reqwest::blocking::multipart::Part::reader_with_length(file, len).file_name(name);
    let form = reqwest::blocking::multipart::Form::new().part("file", part);
    Ok(http
        .post(format!("{url}/v1/upload"))
        .multipart(form)
        .send()?
        .json()?)
}

fn small_patch(
    dir: &Path,
    key: &PrivateKey,
    i: usize,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let id = format!("Q{i:04}");
    let rpm = TestRpm::new(&format!("q{i}"), "1.0", "1").build(&dir.join("rpms"));
    let mut metadata = PatchMetadata::new(&id, "19.01");
    metadata.status = Status::Released;
    metadata.reboot_required = i.is_multiple_of(3);
    metadata.summary = format!("query benchmark patch {i}");
    let mut builder = PatchBuilder::new(metadata);
    builder.threads(1).add_rpm(&rpm, &[])?;
    Ok(builder.write_to_dir(&dir.join("patches"), key)?.0)
}
