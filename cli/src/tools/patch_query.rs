//! `patch-query`: verify a patch file and print what it holds.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{OutputFormat, PatchReport, default_keyring_dir, describe_patch, run};
use anyhow::Context;
use clap::Parser;
use patch_format::PatchReader;
use patch_sign::Keyring;

/// Verify a patch (both signatures, contents, RPM headers) and print its metadata, its
/// contents and which trusted key signed it. Exits non-zero if the patch is not valid.
#[derive(Parser, Debug)]
#[command(name = "patch-query", version, after_help = crate::EXIT_CODES)]
struct Args {
    /// The .patch file
    file: PathBuf,
    /// Directory of trusted public keys/certificates (default: $STX_PATCH_KEYRING or
    /// /etc/stx-patch/keyring)
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
        let keyring_dir = args.keyring.unwrap_or_else(default_keyring_dir);
        let keyring = Keyring::load(&keyring_dir)
            .with_context(|| format!("loading the keyring {}", keyring_dir.display()))?;
        let patch = PatchReader::new(&keyring)
            .read_file(&args.file)
            .with_context(|| format!("{} is not a valid patch", args.file.display()))?;
        match args.format {
            f @ (OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Debug) => {
                println!("{}", f.render(&PatchReport::new(&patch))?)
            }
            OutputFormat::Text => print!("{}", describe_patch(&patch)),
        }
        Ok(())
    })
}
