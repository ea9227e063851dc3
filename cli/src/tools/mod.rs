//! The tools, one module each: every binary (and the multi-call `cli`) calls `main` of one.

pub mod fm;
pub mod patch_build;
pub mod patch_modify;
pub mod patch_query;
pub mod sw_manager;
pub mod sw_patch;
pub mod sw_patch_agent;
pub mod sw_patch_controller;
pub mod system;

/// A tool's entry point: its arguments, program name first.
pub type Entry = fn(Vec<std::ffi::OsString>) -> std::process::ExitCode;

/// One tool: the name it is installed under, its entry point and its command line.
pub struct Tool {
    /// The program name (`sw-patch`).
    pub name: &'static str,
    /// Runs it.
    pub main: Entry,
    /// Its command line, for man pages and shell completions.
    pub command: fn() -> clap::Command,
}

/// Every tool.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "fm",
        main: |args| fm::main(args),
        command: fm::command,
    },
    Tool {
        name: "patch-build",
        main: |args| patch_build::main(args),
        command: patch_build::command,
    },
    Tool {
        name: "patch-modify",
        main: |args| patch_modify::main(args),
        command: patch_modify::command,
    },
    Tool {
        name: "patch-query",
        main: |args| patch_query::main(args),
        command: patch_query::command,
    },
    Tool {
        name: "sw-manager",
        main: |args| sw_manager::main(args),
        command: sw_manager::command,
    },
    Tool {
        name: "sw-patch-agent",
        main: |args| sw_patch_agent::main(args),
        command: sw_patch_agent::command,
    },
    Tool {
        name: "sw-patch-controller",
        main: |args| sw_patch_controller::main(args),
        command: sw_patch_controller::command,
    },
    Tool {
        name: "sw-patch",
        main: |args| sw_patch::main(args),
        command: sw_patch::command,
    },
    Tool {
        name: "system",
        main: |args| system::main(args),
        command: system::command,
    },
];
