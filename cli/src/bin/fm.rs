//! `fm`: see [`stx_patch_cli::tools::fm`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::fm::main(std::env::args_os())
}
