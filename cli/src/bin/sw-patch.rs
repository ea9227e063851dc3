//! `sw-patch`: see [`stx_patch_cli::tools::sw_patch`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::sw_patch::main(std::env::args_os())
}
