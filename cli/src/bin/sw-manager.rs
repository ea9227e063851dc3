//! `sw-manager`: see [`stx_patch_cli::tools::sw_manager`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::sw_manager::main(std::env::args_os())
}
