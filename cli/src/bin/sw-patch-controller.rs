//! `sw-patch-controller`: see [`stx_patch_cli::tools::sw_patch_controller`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::sw_patch_controller::main(std::env::args_os())
}
