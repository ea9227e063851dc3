//! `patch-build`: see [`stx_patch_cli::tools::patch_build`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::patch_build::main(std::env::args_os())
}
