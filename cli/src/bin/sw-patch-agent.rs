//! `sw-patch-agent`: see [`stx_patch_cli::tools::sw_patch_agent`].

fn main() -> std::process::ExitCode {
    stx_patch_cli::tools::sw_patch_agent::main(std::env::args_os())
}
