//! Benchmark: building and reading+verifying a patch, each against a command-line baseline run
//! side by side on the same files in the same run.
//!
//! * build: `PatchBuilder` (one pass, parallel gzip -9, both signatures) vs
//!   `tar cf - … | gzip -9` over the same RPMs;
//! * read: `PatchReader` (gunzip, md5 + sha256 of the inner tars, RSA verify, extraction of
//!   every RPM with its sha256, header checks) vs `gzip -dc X.patch | sha256sum`.
//!
//! Each side runs in its own process so its peak RSS (VmHWM) is its own.
//!
//! Run: `cargo run --release --example bench_patch -- [--size-mib 256] [--runs 3]
//!       [--data random|text] [--dir target/bench]`

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use patch_format::{PatchBuilder, PatchMetadata, PatchReader};
use patch_sign::{Keyring, PrivateKey};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__build") => return child_build(&args[1..]),
        Some("__read") => return child_read(&args[1..]),
        Some("__build_signed") => return child_build_signed(&args[1..]),
        _ => {}
    }
    let opt = |name: &str, default: &str| support::opt(&args, name, default);
    let size_mib: u64 = opt("--size-mib", "256").parse()?;
    let runs: usize = opt("--runs", "3").parse()?;
    let data = opt("--data", "random");
    let dir = PathBuf::from(opt("--dir", "target/bench"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let rpm_dir = dir.join("rpms");
    let out = dir.join("out");
    std::fs::create_dir_all(&rpm_dir)?;
    std::fs::create_dir_all(&out)?;

    eprintln!("generating {size_mib} MiB of {data} RPMs…");
    let rpms = make_rpms(&rpm_dir, size_mib, &data)?;
    let key = PrivateKey::generate(2048)?;
    let key_path = dir.join("key.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem()?)?;
    let keyring = dir.join("keyring");
    std::fs::create_dir_all(&keyring)?;
    std::fs::write(keyring.join("bench.pem"), key.public_key().to_spki_pem()?)?;
    let rpm_key = dir.join("rpm-key.asc");
    std::fs::write(
        &rpm_key,
        patch_format::RpmSigningKey::generate("bench <bench@localhost>")?.secret_asc,
    )?;

    let me = std::env::current_exe()?;
    let names: Vec<String> = rpms
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let baseline_tgz = dir.join("baseline.tar.gz");
    let patch = out.join("BENCH_PATCH_0001.patch");

    let mut build_signed = Vec::new();
    let mut build_ours = Vec::new();
    let mut build_base = Vec::new();
    let mut read_ours = Vec::new();
    let mut read_base = Vec::new();
    let mut hwm_build = 0u64;
    let mut hwm_read = 0u64;
    for run in 0..runs {
        eprintln!("run {}/{runs}", run + 1);
        // Baseline build: tar | gzip -9.
        let t = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && shift && tar cf - \"$@\" | gzip -9 > \"$OUT\"")
            .arg("sh")
            .arg(&rpm_dir)
            .args(&names)
            .env("OUT", std::path::absolute(&baseline_tgz)?)
            .status()?;
        assert!(status.success());
        build_base.push(t.elapsed().as_secs_f64());

        // Ours.
        let t = Instant::now();
        let output = Command::new(&me)
            .arg("__build")
            .arg(&key_path)
            .arg(&out)
            .args(&rpms)
            .output()?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        build_ours.push(t.elapsed().as_secs_f64());
        hwm_build = hwm_build.max(parse_hwm(&output.stdout));

        // Ours, signing every RPM first (patch-build --sign-rpms).
        let signed_dir = dir.join("signed");
        let _ = std::fs::remove_dir_all(&signed_dir);
        std::fs::create_dir_all(&signed_dir)?;
        let t = Instant::now();
        let output = Command::new(&me)
            .arg("__build_signed")
            .arg(&key_path)
            .arg(&rpm_key)
            .arg(&signed_dir)
            .arg(dir.join("out-signed"))
            .args(&rpms)
            .output()?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        build_signed.push(t.elapsed().as_secs_f64());

        // Baseline read: gzip -dc | sha256sum.
        let t = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" | sha256sum > /dev/null")
            .arg("sh")
            .arg(&patch)
            .status()?;
        assert!(status.success());
        read_base.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let output = Command::new(&me)
            .arg("__read")
            .arg(&keyring)
            .arg(&patch)
            .arg(&dir)
            .output()?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        read_ours.push(t.elapsed().as_secs_f64());
        hwm_read = hwm_read.max(parse_hwm(&output.stdout));
    }
    let gzip_t = Command::new("gzip")
        .arg("-t")
        .arg(&patch)
        .status()?
        .success();
    let ours_size = std::fs::metadata(&patch)?.len();
    let base_size = std::fs::metadata(&baseline_tgz)?.len();
    let med = |v: &mut Vec<f64>| support::median(v);
    let bs = med(&mut build_signed);
    let (bo, bb, ro, rb) = (
        med(&mut build_ours),
        med(&mut build_base),
        med(&mut read_ours),
        med(&mut read_base),
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "### {size_mib} MiB of {data} RPMs ({} RPMs), {cpus} CPUs, median of {runs} runs\n",
        rpms.len()
    );
    println!("| measure | stx-patch | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| build time | {bo:.2} s | {bb:.2} s (`tar cf - … \\| gzip -9`) | {:.2}× | ≤ 0.6× |",
        bo / bb
    );
    println!(
        "| build with every RPM signed (`--sign-rpms`, OpenPGP RSA-3072) | {bs:.2} s | {bo:.2} s (the unsigned build) | {:.3}× | < 1.10× |",
        bs / bo
    );
    println!(
        "| build output size | {ours_size} B | {base_size} B | {:.4}× | ≤ 1.01× |",
        ours_size as f64 / base_size as f64
    );
    println!(
        "| `gzip -t` on our output | {} | | | passes |",
        if gzip_t { "passes" } else { "FAILS" }
    );
    println!(
        "| read + verify time | {ro:.2} s | {rb:.2} s (`gzip -dc \\| sha256sum`) | {:.2}× | ≤ 1.3× |",
        ro / rb
    );
    println!(
        "| build peak RSS | {:.1} MiB | | | < 64 MiB |",
        hwm_build as f64 / 1024.0
    );
    println!(
        "| read peak RSS | {:.1} MiB | | | < 64 MiB |",
        hwm_read as f64 / 1024.0
    );
    Ok(())
}

/// RPMs of 8 MiB each (the last one smaller) until `size_mib` MiB, built with the rpm crate,
/// payload stored uncompressed so that its entropy is the data's: `random` stands for
/// real RPMs (whose payloads are already compressed), `text` for a compressible worst case.
fn make_rpms(
    dir: &Path,
    size_mib: u64,
    data: &str,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let per = 8u64 << 20;
    let total = size_mib << 20;
    let mut made = 0u64;
    let mut paths = Vec::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut i = 0;
    while made < total {
        let size = per.min(total - made);
        let content: Vec<u8> = match data {
            "text" => {
                let words = [
                    "patch",
                    "controller",
                    "worker",
                    "storage",
                    "rpm",
                    "install",
                    "apply",
                    "remove",
                ];
                let mut s = Vec::with_capacity(size as usize);
                while (s.len() as u64) < size {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    s.extend_from_slice(words[(seed % 8) as usize].as_bytes());
                    s.push(if seed.is_multiple_of(11) { b'\n' } else { b' ' });
                }
                s.truncate(size as usize);
                s
            }
            _ => {
                let mut s = vec![0u8; size as usize];
                std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut s)?;
                s
            }
        };
        let name = format!("bench-pkg{i:03}");
        let package = rpm::PackageBuilder::new(&name, "1.0", "MIT", "x86_64", "benchmark data")
            .release("1")
            .using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::None))
            .with_file_contents(
                content,
                rpm::FileOptions::new(format!("/opt/bench/{name}.bin")),
            )?
            .build()?;
        let path = dir.join(format!("{name}-1.0-1.x86_64.rpm"));
        package.write_file(&path)?;
        made += size;
        paths.push(path);
        i += 1;
    }
    Ok(paths)
}

fn child_build(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let key = PrivateKey::from_pem_file(args[0].as_ref())?;
    let out = Path::new(&args[1]);
    let mut builder = PatchBuilder::new(PatchMetadata::new("BENCH_PATCH_0001", "19.01"));
    for rpm in &args[2..] {
        builder.add_rpm(rpm.as_ref(), &[])?;
    }
    builder.write_to_dir(out, &key)?;
    report_hwm()
}

fn child_build_signed(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let key = PrivateKey::from_pem_file(args[0].as_ref())?;
    let rpm_key = patch_format::RpmSigningKey::from_asc(&std::fs::read(&args[1])?)?;
    let signed_dir = Path::new(&args[2]);
    let out = Path::new(&args[3]);
    std::fs::create_dir_all(out)?;
    let inputs: Vec<PathBuf> = args[4..].iter().map(PathBuf::from).collect();
    let signed = rpm_key.sign_files(&inputs, signed_dir)?;
    let mut builder = PatchBuilder::new(PatchMetadata::new("BENCH_PATCH_0001", "19.01"));
    for rpm in &signed {
        builder.add_rpm(rpm, &[])?;
    }
    builder.write_to_dir(out, &key)?;
    report_hwm()
}

fn child_read(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let keyring = Keyring::load(args[0].as_ref())?;
    let patch = PatchReader::new(&keyring)
        .temp_root(&args[2])
        .read_file(args[1].as_ref())?;
    assert!(!patch.rpms.is_empty());
    report_hwm()
}

/// Prints this process's peak RSS in KiB (VmHWM).
fn report_hwm() -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", support::status_kib("self", "VmHWM:"));
    std::io::stdout().flush()?;
    Ok(())
}

fn parse_hwm(stdout: &[u8]) -> u64 {
    String::from_utf8_lossy(stdout).trim().parse().unwrap_or(0)
}
