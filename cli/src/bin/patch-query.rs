//! `patch-query`: see [`stx_patch_cli::tools::patch_query`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::patch_query::main(std::env::args_os())
}
