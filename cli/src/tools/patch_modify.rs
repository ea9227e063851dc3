//! `patch-modify`: change a patch's status and re-sign it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{OutputFormat, default_keyring_dir, run};
use anyhow::{Context, bail};
use clap::Parser;
use patch_format::{PatchBuilder, PatchReader, SemanticAction, Status};
use patch_sign::{Keyring, PrivateKey};

/// Change the status of a patch (REL, DEV, OBS) and re-sign it in place.
///
/// The patch must verify first, against the keyring or against the signing key itself, so
/// that re-signing never launders an untrusted patch. Its RPMs, scripts and other metadata
/// are carried over unchanged.
#[derive(Parser, Debug)]
#[command(name = "patch-modify", version, after_help = crate::EXIT_CODES)]
struct Args {
    /// The .patch file (rewritten in place, crash-safely)
    file: PathBuf,
    /// New status: REL, DEV or OBS
    #[arg(long)]
    status: String,
    /// RSA private key (PEM) to re-sign with
    #[arg(long, env = "PATCH_SIGNING_KEY", value_name = "PEM")]
    signing_key: PathBuf,
    /// Keyring the patch must currently verify against (default: only the signing key's own
    /// public key, i.e. re-signing with the key that signed it)
    #[arg(long, value_name = "DIR")]
    keyring: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    run(|| {
        let args = Args::parse_from(args);
        let status = args.status.parse::<Status>()?;
        let key = PrivateKey::from_pem_file(&args.signing_key)?;
        let keyring = match &args.keyring {
            Some(dir) => Keyring::load(dir)
                .with_context(|| format!("loading the keyring {}", dir.display()))?,
            None => {
                // The default keyring (if any) plus the signing key itself.
                let mut ring = Keyring::load(&default_keyring_dir()).unwrap_or_default();
                ring.trust("signing key".to_owned(), key.public_key());
                ring
            }
        };
        let temp_root = args
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let patch = PatchReader::new(&keyring)
            .temp_root(&temp_root)
            .read_file(&args.file)
            .with_context(|| {
                format!("{} does not verify; not re-signing it", args.file.display())
            })?;
        if patch.metadata.status == status {
            bail!("{} already has status {status}", patch.metadata.id);
        }
        let old = patch.metadata.status.clone();
        let mut metadata = patch.metadata.clone();
        metadata.status = status.clone();
        let mut builder = PatchBuilder::new(metadata);
        for rpm in &patch.rpms {
            builder.add_rpm(&rpm.path, &[])?;
        }
        for action in SemanticAction::ALL {
            if let Some(script) = patch.semantics.get(&action) {
                builder.semantic_script(action, script)?;
            }
        }
        if let (Some(path), Some(script)) = (&patch.restart_script, &patch.metadata.restart_script)
        {
            builder.restart_script_named(&script.name, path)?;
        }
        let summary = builder.write_to_path(&args.file, &key)?;
        match args.format {
            f @ (OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Debug) => println!(
                "{}",
                f.render(&serde_json::json!({
                    "patch": args.file,
                    "id": summary.metadata.id,
                    "old_status": old.as_str(),
                    "status": status.as_str(),
                    "signed_by": summary.signer,
                }))?
            ),
            OutputFormat::Text => println!(
                "{}: status {old} -> {status}, re-signed by {}",
                summary.metadata.id, summary.signer
            ),
        }
        Ok(())
    })
}
