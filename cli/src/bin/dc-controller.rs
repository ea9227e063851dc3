//! `dc-controller`: see [`stx_patch_cli::tools::dc_controller`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::dc_controller::main(std::env::args_os())
}
