//! Shared by the daemon tests: starting a controller, reading its addresses, host roots.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub mod cluster;
pub mod dc;
pub mod pair;
mod site;
#[allow(unused_imports)]
pub use site::Site;

/// `sw-patch-controller` with the given arguments, on port 0, printing its addresses.
pub fn controller() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"));
    cmd.arg("--print-addresses")
        .args(["--vim-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Spawns a daemon started with `--print-addresses` and reads the JSON line of its addresses.
pub fn spawn_with_addresses(cmd: &mut Command) -> (Child, Value) {
    try_spawn_with_addresses(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// [`spawn_with_addresses`], or why the daemon did not come up (it is reaped).
pub fn try_spawn_with_addresses(cmd: &mut Command) -> Result<(Child, Value), String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("the daemon does not start: {e}"))?;
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
    match read
        .ok()
        .and_then(|_| serde_json::from_str::<Value>(&line).ok())
    {
        Some(addrs) => Ok((child, addrs)),
        None => {
            let _ = child.kill();
            let status = child.wait();
            Err(format!(
                "the daemon exited ({status:?}) without its addresses: {line:?}"
            ))
        }
    }
}

/// Everything under a host root except the agent's own state: relative path → (mode, content;
/// empty for directories). Two equal snapshots mean byte-identical roots.
pub fn root_snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    tree_snapshot(root, |rel, _| rel.starts_with("var/lib/stx-patch"))
}

/// Everything under `root` but what `skip(relative path, file name)` leaves out. An entry
/// removed while the tree is read (a daemon's temporary file) is not part of it; any other
/// read error fails the test.
pub fn tree_snapshot(
    root: &Path,
    skip: impl Fn(&Path, &str) -> bool,
) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if skip(&rel, &entry.file_name().to_string_lossy()) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if gone(&e) => continue,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            if meta.is_dir() {
                out.insert(rel, (meta.permissions().mode(), Vec::new()));
                stack.push(path);
            } else {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        out.insert(rel, (meta.permissions().mode(), bytes));
                    }
                    Err(e) if gone(&e) => {}
                    Err(e) => panic!("{}: {e}", path.display()),
                }
            }
        }
    }
    out
}

/// Where a daemon's log goes: `path` when STX_TEST_LOGS is set (debugging), else nowhere.
pub fn daemon_log(path: &Path) -> std::process::Stdio {
    match std::env::var_os("STX_TEST_LOGS") {
        Some(_) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("the log file opens")
            .into(),
        None => std::process::Stdio::null(),
    }
}

/// A temporary work directory holding `subs` and `keyring/`, and a new signing key whose
/// public half is `keyring/dev.pem` (what every controller test starts from).
pub fn work_dir(subs: &[&str]) -> (tempfile::TempDir, patch_sign::PrivateKey) {
    let dir = tempfile::tempdir().unwrap();
    for sub in subs.iter().chain(&["keyring"]) {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let key = patch_sign::PrivateKey::generate(2048).unwrap();
    std::fs::write(
        dir.path().join("keyring/dev.pem"),
        key.public_key().to_spki_pem().unwrap(),
    )
    .unwrap();
    (dir, key)
}

/// Builds a signed patch of `rpms` (those named in `new` go to every node type) under
/// `work/patches`, the RPMs under `work/rpms`.
pub fn build_patch(
    work: &Path,
    key: &patch_sign::PrivateKey,
    id: &str,
    rr: bool,
    rpms: &[patch_format::testing::TestRpm],
    new: &[&str],
) -> PathBuf {
    use patch_format::{PatchBuilder, PatchMetadata, Personality, Status};
    let mut m = PatchMetadata::new(id, "19.01");
    m.status = Status::Released;
    m.reboot_required = rr;
    let mut b = PatchBuilder::new(m);
    for rpm in rpms {
        let path = rpm.build(&work.join("rpms"));
        let p: &[Personality] = if new.contains(&rpm.name.as_str()) {
            &Personality::ALL
        } else {
            &[]
        };
        b.add_rpm(&path, p).unwrap();
    }
    b.write_to_dir(&work.join("patches"), key).unwrap().0
}

/// `sw-patch-agent` for `host` rooted at `root` (created), reporting to `controllers` every
/// second.
pub fn agent_command(
    controllers: &str,
    token_file: &Path,
    root: &Path,
    host: &str,
    personality: &str,
) -> Command {
    std::fs::create_dir_all(root).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sw-patch-agent"));
    cmd.args(["--controller", controllers, "--hostname", host])
        .args(["--personality", personality])
        .args(["--release", "19.01", "--heartbeat", "1"])
        .arg("--token-file")
        .arg(token_file)
        .arg("--root")
        .arg(root)
        .env("STX_PATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A minimal agent report for `host` (an idle worker with nothing installed), as the tests
/// that speak the agent protocol directly send it.
pub fn report_json(host: &str) -> Value {
    serde_json::json!({
        "hostname": host, "ip": "127.0.0.1", "personality": "Worker",
        "subfunctions": ["worker"], "sw_version": "19.01", "install_state": "idle",
        "last_error": null, "reboot_pending": false, "boot_id": "b1", "installed": [],
        "op_counter": 0, "install_done": 0, "instance": "i1", "workloads": [],
        "workload_actions": false, "services_disabled": false
    })
}

/// Writes an executable `/bin/sh` script running `body` at `path` (directories made).
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The `value` of the first hidden `csrf` field of a dashboard page.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

/// The `name=value` of a `Set-Cookie` header named `name`, and the whole header.
pub fn cookie(response: &reqwest::blocking::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// Logs in to the dashboard at `web` with `token` as a browser would (the login form's
/// cookie and CSRF field first); the answer carries the session cookie (`stx_session=…`).
pub fn http_login(
    http: &reqwest::blocking::Client,
    web: &str,
    token: &str,
) -> reqwest::blocking::Response {
    let form = http.get(format!("{web}/login")).send().unwrap();
    let (login_cookie, _) = cookie(&form, "stx_login").expect("the login form sets its cookie");
    let csrf = csrf_of(&form.text().unwrap());
    http.post(format!("{web}/login"))
        .header("cookie", login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", token)])
        .send()
        .unwrap()
}
