//! `cli`: every stx-patch tool in one binary. The first argument names the tool
//! (`cli sw-patch query`, `cargo run -p cli -- sw-manager patch-strategy show`); installed
//! under a tool's name (a link called `sw-patch`), it is that tool.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use stx_patch_cli::tools::{Entry, TOOLS};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let called_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("cli")
        .to_owned();
    if let Some(tool) = find(&called_as) {
        return tool(args);
    }
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    };
    match first {
        "-h" | "--help" | "help" => {
            println!("{}", usage());
            ExitCode::SUCCESS
        }
        "-V" | "--version" => {
            println!("cli {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "generate-docs" => generate_docs(args.get(2)),
        "list-tools" => {
            for tool in TOOLS {
                println!("{}", tool.name);
            }
            ExitCode::SUCCESS
        }
        name => match find(name) {
            // The tool sees its own name as the program name.
            Some(tool) => tool(args[1..].to_vec()),
            None => {
                eprintln!("error: unknown tool {name:?}\n\n{}", usage());
                ExitCode::from(2)
            }
        },
    }
}

fn find(name: &str) -> Option<Entry> {
    TOOLS.iter().find(|t| t.name == name).map(|t| t.main)
}

fn usage() -> String {
    let names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
    format!(
        "Usage: cli <TOOL> [ARGS]...\n\nTools: {}\n\n`cli <TOOL> --help` shows a tool's options; `cli generate-docs DIR` writes every tool's man\npage and bash, zsh and fish completions under DIR (the layout of /usr/share); `cli list-tools`\nnames the tools, one a line.",
        names.join(", ")
    )
}

/// `cli generate-docs DIR`: man pages and completions of every tool.
fn generate_docs(dir: Option<&OsString>) -> ExitCode {
    let Some(dir) = dir else {
        eprintln!("error: give the directory to write into: cli generate-docs DIR");
        return ExitCode::from(2);
    };
    match stx_patch_cli::docs::write_docs(Path::new(dir)) {
        Ok(files) => {
            println!(
                "wrote {} files under {}",
                files.len(),
                Path::new(dir).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot write under {}: {e}",
                Path::new(dir).display()
            );
            ExitCode::FAILURE
        }
    }
}
