//! The tools, one module each: every binary (and the multi-call `cli`) calls `main` of one.

pub mod dc_controller;
pub mod dcmanager;
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

/// A [`Tool`] entry for the module `$module`, installed as `$name`.
macro_rules! tool {
    ($name:literal, $module:ident) => {
        Tool {
            name: $name,
            main: |args| $module::main(args),
            command: $module::command,
        }
    };
}

/// Every tool.
pub const TOOLS: &[Tool] = &[
    tool!("dc-controller", dc_controller),
    tool!("dcmanager", dcmanager),
    tool!("fm", fm),
    tool!("patch-build", patch_build),
    tool!("patch-modify", patch_modify),
    tool!("patch-query", patch_query),
    tool!("sw-manager", sw_manager),
    tool!("sw-patch-agent", sw_patch_agent),
    tool!("sw-patch-controller", sw_patch_controller),
    tool!("sw-patch", sw_patch),
    tool!("system", system),
];
