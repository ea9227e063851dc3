//! `patch-build`: build a signed StarlingX patch from RPMs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{OutputFormat, run};
use anyhow::{Context, bail};
use clap::Parser;
use patch_format::{
    PatchBuilder, PatchMetadata, Personality, RpmSigningKey, SemanticAction, Status,
};
use patch_sign::PrivateKey;

/// Build a signed patch (<id>.patch) from RPMs.
///
/// RPMs given with a node-type option are new packages that node type must install; trailing
/// RPMs are upgrades of packages already installed. The patch is signed with an RSA key
/// (signature.v2, RSA-PSS) and carries the md5 signature of the original format.
#[derive(Parser, Debug)]
#[command(name = "patch-build", version, after_help = crate::EXIT_CODES, verbatim_doc_comment)]
struct Args {
    /// Patch ID (required), e.g. STX_19.01_PATCH_0001
    #[arg(long, required_unless_present_any = ["generate_key", "generate_rpm_key"])]
    id: Option<String>,
    /// Release the patch is for
    #[arg(long, env = "PLATFORM_RELEASE")]
    release: Option<String>,
    /// Patch status code: REL, DEV or OBS
    #[arg(long, default_value = "DEV")]
    status: String,
    /// Mark the patch unremovable
    #[arg(long)]
    unremovable: bool,
    /// Whether hosts must be locked and rebooted to install it (Y or N)
    #[arg(long, default_value = "Y", value_parser = ["Y", "N"])]
    reboot_required: String,
    /// Patch summary
    #[arg(long, default_value = "")]
    summary: String,
    /// Patch description
    #[arg(long, default_value = "")]
    desc: String,
    /// Patch warnings
    #[arg(long, default_value = "")]
    warn: String,
    /// Patch install instructions
    #[arg(long, default_value = "")]
    inst: String,
    /// A patch ID this patch requires (repeatable)
    #[arg(long = "req", value_name = "PATCH_ID")]
    requires: Vec<String>,
    /// New package for controllers (repeatable)
    #[arg(long, value_name = "RPM")]
    controller: Vec<PathBuf>,
    /// New package for workers (repeatable)
    #[arg(long, value_name = "RPM")]
    worker: Vec<PathBuf>,
    /// New package for low-latency workers (repeatable)
    #[arg(long, value_name = "RPM")]
    worker_lowlatency: Vec<PathBuf>,
    /// New package for storage nodes (repeatable)
    #[arg(long, value_name = "RPM")]
    storage: Vec<PathBuf>,
    /// New package for all-in-one controllers (repeatable)
    #[arg(long, value_name = "RPM")]
    controller_worker: Vec<PathBuf>,
    /// New package for low-latency all-in-one controllers (repeatable)
    #[arg(long, value_name = "RPM")]
    controller_worker_lowlatency: Vec<PathBuf>,
    /// New package for every node type (repeatable)
    #[arg(long, value_name = "RPM")]
    all_nodes: Vec<PathBuf>,
    /// Semantic check script run before the patch is applied
    #[arg(long, value_name = "SCRIPT")]
    pre_apply: Option<PathBuf>,
    /// Semantic check script run before the patch is removed
    #[arg(long, value_name = "SCRIPT")]
    pre_remove: Option<PathBuf>,
    /// The patch may only be applied to the running release
    #[arg(long)]
    apply_active_release_only: bool,
    /// In-service restart script, run on each host after the install
    #[arg(long, value_name = "SCRIPT")]
    restart_script: Option<PathBuf>,
    /// RSA private key (PEM, PKCS#8 or PKCS#1) that signs the patch
    #[arg(long, env = "PATCH_SIGNING_KEY", value_name = "PEM")]
    signing_key: Option<PathBuf>,
    /// Sign every RPM with this OpenPGP secret key (ASCII-armoured) as `rpmsign --addsign`
    /// does, before it goes into the patch; the input files are not modified
    #[arg(long, env = "PATCH_RPM_SIGNING_KEY", value_name = "ASC")]
    sign_rpms: Option<PathBuf>,
    /// Write a development RPM signing key pair (rpm-signing.asc, rpm-signing.pub.asc) into
    /// DIR, then exit
    #[arg(long, value_name = "DIR", conflicts_with = "id")]
    generate_rpm_key: Option<PathBuf>,
    /// Directory to write <id>.patch into
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
    /// Create a development signing key pair in DIR and exit
    #[arg(long, value_name = "DIR", conflicts_with = "id")]
    generate_key: Option<PathBuf>,
    /// Size of the generated key in bits: 2048, 3072 or 4096
    #[arg(long, default_value_t = 2048)]
    key_bits: usize,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
    /// RPMs that upgrade packages already installed
    #[arg(value_name = "RPM")]
    rpms: Vec<PathBuf>,
}

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    run(|| {
        let args = Args::parse_from(args);
        if let Some(dir) = &args.generate_rpm_key {
            return generate_rpm_key(dir, args.format);
        }
        if let Some(dir) = &args.generate_key {
            return generate_key(dir, args.key_bits, args.format);
        }
        build(args)
    })
}

fn generate_key(dir: &Path, bits: usize, format: OutputFormat) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = PrivateKey::generate(bits)?;
    let private = dir.join("signing-key.pem");
    let public = dir.join("signing-key.pub.pem");
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} already exists; not overwriting a key", path.display());
        }
    }
    durable_fs::write_new(&private, key.to_pkcs8_pem()?.as_bytes(), 0o600)?;
    durable_fs::write_new(&public, key.public_key().to_spki_pem()?.as_bytes(), 0o644)?;
    match format {
        f @ (OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Debug) => println!(
            "{}",
            f.render(&serde_json::json!({
                "private_key": private,
                "public_key": public,
                "bits": bits,
                "fingerprint": key.public_key().fingerprint(),
            }))?
        ),
        OutputFormat::Text => {
            println!("Private key: {} (keep it secret)", private.display());
            println!(
                "Public key:  {} (put it in the controller's keyring)",
                public.display()
            );
            println!("Fingerprint: {}", key.public_key().fingerprint());
        }
    }
    Ok(())
}

/// A development RPM signing key pair: the secret key readable by its owner only.
fn generate_rpm_key(dir: &Path, format: OutputFormat) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = dir.join("rpm-signing.asc");
    let public = dir.join("rpm-signing.pub.asc");
    for path in [&secret, &public] {
        if path.exists() {
            bail!("{} already exists; not overwriting a key", path.display());
        }
    }
    let key =
        RpmSigningKey::generate("stx-patch RPM signing (development) <rpm-signing@localhost>")?;
    durable_fs::write_new(&secret, key.secret_asc.as_bytes(), 0o600)?;
    durable_fs::write_new(&public, key.public_asc.as_bytes(), 0o644)?;
    match format {
        f @ (OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Debug) => println!("{}", f.render(&serde_json::json!({"secret_key": secret, "public_key": public, "key_id": key.key_id}))?),
        OutputFormat::Text => {
            println!("Secret key: {} (keep it secret)", secret.display());
            println!(
                "Public key: {} (rpmkeys --import it; put it in agents' --rpm-keyring)",
                public.display()
            );
            println!("Key ID:     {}", key.key_id);
        }
    }
    Ok(())
}

fn build(args: Args) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_default();
    let release = args.release.clone().unwrap_or_default();
    if release.is_empty() {
        bail!(
            "The release version must be specified in the sw_version field (use --release or PLATFORM_RELEASE)"
        );
    }
    let mut metadata = PatchMetadata::new(id, release);
    metadata.summary = args.summary.clone();
    metadata.description = args.desc.clone();
    metadata.warnings = args.warn.clone();
    metadata.install_instructions = args.inst.clone();
    metadata.status = args.status.parse::<Status>()?;
    metadata.unremovable = args.unremovable;
    metadata.reboot_required = args.reboot_required == "Y";
    metadata.apply_active_release_only = args.apply_active_release_only;
    metadata.requires = args.requires.iter().cloned().collect();

    let mut builder = PatchBuilder::new(metadata);
    let by_type: [(&[PathBuf], &[Personality]); 7] = [
        (&args.controller, &[Personality::Controller]),
        (&args.worker, &[Personality::Worker]),
        (&args.worker_lowlatency, &[Personality::WorkerLowlatency]),
        (&args.storage, &[Personality::Storage]),
        (&args.controller_worker, &[Personality::ControllerWorker]),
        (
            &args.controller_worker_lowlatency,
            &[Personality::ControllerWorkerLowlatency],
        ),
        (&args.all_nodes, &Personality::ALL),
    ];
    // With --sign-rpms the patch holds signed copies, made in a temporary directory.
    let mut inputs: Vec<(PathBuf, &[Personality])> = Vec::new();
    for (rpms, personalities) in by_type {
        inputs.extend(rpms.iter().map(|r| (r.clone(), personalities)));
    }
    inputs.extend(args.rpms.iter().map(|r| (r.clone(), &[] as &[Personality])));
    let signed_dir = tempfile::tempdir().context("creating a temporary directory")?;
    if let Some(key_path) = &args.sign_rpms {
        let text = std::fs::read(key_path)
            .with_context(|| format!("reading the RPM signing key {}", key_path.display()))?;
        let key = RpmSigningKey::from_asc(&text)?;
        let paths: Vec<PathBuf> = inputs.iter().map(|(p, _)| p.clone()).collect();
        let signed = key.sign_files(&paths, signed_dir.path())?;
        for ((path, _), signed) in inputs.iter_mut().zip(signed) {
            *path = signed;
        }
    }
    let mut any = false;
    for (rpm, personalities) in &inputs {
        builder.add_rpm(rpm, personalities)?;
        any = true;
    }
    if !any {
        bail!("Cannot generate empty patch");
    }
    if let Some(script) = &args.pre_apply {
        builder.semantic_script(SemanticAction::PreApply, script)?;
    }
    if let Some(script) = &args.pre_remove {
        builder.semantic_script(SemanticAction::PreRemove, script)?;
    }
    if let Some(script) = &args.restart_script {
        builder.restart_script(script)?;
    }
    let Some(key_path) = &args.signing_key else {
        bail!(
            "no signing key: pass --signing-key PEM or set PATCH_SIGNING_KEY \
             (create a development key with patch-build --generate-key DIR)"
        );
    };
    let key = PrivateKey::from_pem_file(key_path)?;
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("creating {}", args.output_dir.display()))?;
    let (path, summary) = builder.write_to_dir(&args.output_dir, &key)?;
    match args.format {
        f @ (OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Debug) => println!(
            "{}",
            f.render(&serde_json::json!({
                "patch": path,
                "id": summary.metadata.id,
                "rpms": summary.metadata.contents,
                "compressed_size": summary.compressed_size,
                "inner_sha256": summary.inner_sha256,
                "signature": summary.md5_signature,
                "signed_by": summary.signer,
            }))?
        ),
        OutputFormat::Text => println!(
            "{} built: {} RPM(s), {} bytes, signed by {}",
            path.display(),
            summary.metadata.contents.len(),
            summary.compressed_size,
            summary.signer
        ),
    }
    Ok(())
}
