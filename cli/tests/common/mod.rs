//! Shared by the daemon tests: starting a controller and learning its addresses.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// `sw-patch-controller` with the given arguments, on port 0, printing its addresses.
pub fn controller() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"));
    cmd.arg("--print-addresses")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Spawns a daemon started with `--print-addresses` and reads the JSON line of its addresses.
pub fn spawn_with_addresses(cmd: &mut Command) -> (Child, Value) {
    let mut child = cmd.spawn().expect("the daemon starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the daemon prints its addresses");
    let addrs: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (child, addrs)
}
