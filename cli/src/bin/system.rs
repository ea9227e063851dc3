//! `system`: see [`stx_patch_cli::tools::system`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::system::main(std::env::args_os())
}
