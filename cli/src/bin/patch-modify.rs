//! `patch-modify`: see [`stx_patch_cli::tools::patch_modify`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::patch_modify::main(std::env::args_os())
}
