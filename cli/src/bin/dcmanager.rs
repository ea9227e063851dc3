//! `dcmanager`: see [`stx_patch_cli::tools::dcmanager`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::dcmanager::main(std::env::args_os())
}
