//! What controller redundancy costs, each figure beside the same operation on a single
//! controller in the same run:
//!
//! * upload + verify + import of a 256 MiB patch (the pair also copies it to the standby
//!   before answering);
//! * a small change (`report_app_dependencies`) — the latency of a mutation whose replication
//!   sends one small file;
//! * a swact with that 256 MiB patch in the store (nothing left to copy).
//!
//! Run: `cargo run --release --example bench_pair -- [--size-mib 256] [--calls 200]`

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use controller::Controller;

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let size_mib: u64 = opt("--size-mib", "256").parse()?;
    let calls: usize = opt("--calls", "200").parse()?;
    let dir = PathBuf::from(opt("--dir", "target/bench-pair"));
    let key = support::bench_dir(&dir, &["rpms", "patches", "single", "c0", "c1"])?;
    std::fs::write(dir.join("peer-token"), "bench-peer-token\n")?;
    eprintln!("building a {size_mib} MiB patch…");
    let big = support::big_patch(&dir, &key, size_mib)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let single = runtime.block_on(Controller::start(support::controller_config(
        &dir, "single",
    )))?;
    let ports = [free_port()?, free_port()?];
    let mut pair = Vec::new();
    for i in 0..2 {
        let mut c = support::controller_config(&dir, &format!("c{i}"));
        c.host_name = Some(format!("controller-{i}"));
        c.peer = Some(format!("http://127.0.0.1:{}", ports[1 - i]));
        c.peer_listen = Some(format!("127.0.0.1:{}", ports[i]));
        c.peer_token_file = Some(dir.join("peer-token"));
        pair.push(runtime.block_on(Controller::start(c))?);
    }
    let single_url = format!("http://{}", single.api_addr);
    let pair_urls = [
        format!("http://{}", pair[0].api_addr),
        format!("http://{}", pair[1].api_addr),
    ];
    let http = reqwest::blocking::Client::builder()
        .timeout(None)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let post = |url: &str| -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let r: serde_json::Value = http.post(url).send()?.json()?;
        if r["error"].as_str().is_some_and(|e| !e.is_empty()) {
            return Err(format!("{url}: {}", r["error"]).into());
        }
        Ok(r)
    };
    // Wait until the pair sees each other.
    let started = Instant::now();
    loop {
        let v: serde_json::Value = http
            .get(format!("{}/v1/isystems", pair_urls[0]))
            .send()?
            .json()?;
        if v["isystems"][0]["controllers"][1]["in_sync"] == true {
            break;
        }
        if started.elapsed().as_secs() > 30 {
            return Err("the pair did not see each other".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    post(&format!("{single_url}/v1/init_release/19.01"))?;
    post(&format!("{}/v1/init_release/19.01", pair_urls[0]))?;

    // Upload + verify + import: single vs pair (median of 3; the patch is deleted between).
    let mut single_up = Vec::new();
    let mut pair_up = Vec::new();
    for _ in 0..3 {
        for (times, url) in [(&mut single_up, &single_url), (&mut pair_up, &pair_urls[0])] {
            let t = Instant::now();
            upload(&http, url, &big)?;
            times.push(t.elapsed().as_secs_f64());
            post(&format!("{url}/v1/delete/BIG_PATCH"))?;
        }
    }
    let (single_up, pair_up) = (
        support::median(&mut single_up),
        support::median(&mut pair_up),
    );

    // A small change, many times: single vs pair.
    let lat = |url: &str| -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        for i in 0..calls {
            let t = Instant::now();
            post(&format!(
                "{url}/v1/report_app_dependencies/P{i}?app=bench{}",
                i % 10
            ))?;
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        out.sort_by(f64::total_cmp);
        Ok(out)
    };
    let single_lat = lat(&single_url)?;
    let pair_lat = lat(&pair_urls[0])?;
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p) as usize];

    // Swacts with the big patch in the store (already replicated).
    upload(&http, &pair_urls[0], &big)?;
    let mut swacts = Vec::new();
    for i in 0..6 {
        let active = i % 2;
        let t = Instant::now();
        post(&format!(
            "{}/v1/host_swact/controller-{active}",
            pair_urls[active]
        ))?;
        swacts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let swact_ms = support::median(&mut swacts);

    println!("| measure | pair | single controller | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| upload + verify + import, {size_mib} MiB patch (median of 3) | {pair_up:.2} s | {single_up:.2} s | {:.2}× |",
        pair_up / single_up
    );
    println!(
        "| small change (`report_app_dependencies`), {calls} calls | p50 {:.2} ms, p99 {:.2} ms | p50 {:.2} ms, p99 {:.2} ms | {:.2}× (p50) |",
        pct(&pair_lat, 0.5),
        pct(&pair_lat, 0.99),
        pct(&single_lat, 0.5),
        pct(&single_lat, 0.99),
        pct(&pair_lat, 0.5) / pct(&single_lat, 0.5)
    );
    println!(
        "| swact with a {size_mib} MiB patch in the store (median of 6) | {swact_ms:.1} ms | | |"
    );
    runtime.block_on(async {
        single.stop().await;
        for c in pair {
            c.stop().await;
        }
    });
    if std::env::var_os("BENCH_KEEP").is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

fn upload(
    http: &reqwest::blocking::Client,
    url: &str,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let part = reqwest::blocking::multipart::Part::reader_with_length(file, len)
        .file_name("BIG_PATCH.patch");
    let form = reqwest::blocking::multipart::Form::new().part("file", part);
    let r: serde_json::Value = http
        .post(format!("{url}/v1/upload"))
        .multipart(form)
        .send()?
        .json()?;
    if r["error"].as_str().is_some_and(|e| !e.is_empty()) {
        return Err(format!("upload: {}", r["error"]).into());
    }
    Ok(())
}
