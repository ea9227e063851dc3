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

/// Every tool by the name it is installed under, with its entry point.
pub const TOOLS: &[(&str, Entry)] = &[
    ("fm", |args| fm::main(args)),
    ("patch-build", |args| patch_build::main(args)),
    ("patch-modify", |args| patch_modify::main(args)),
    ("patch-query", |args| patch_query::main(args)),
    ("sw-manager", |args| sw_manager::main(args)),
    ("sw-patch-agent", |args| sw_patch_agent::main(args)),
    ("sw-patch-controller", |args| {
        sw_patch_controller::main(args)
    }),
    ("sw-patch", |args| sw_patch::main(args)),
    ("system", |args| system::main(args)),
];
