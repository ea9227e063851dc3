//! The real `sw-patch-controller` on loopback (port 0, temp state dir), driven through the
//! `sw-patch` binary and raw HTTP.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Personality, Status};
use patch_sign::PrivateKey;
use serde_json::Value;

fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).unwrap())
}

struct Cluster {
    dir: tempfile::TempDir,
    child: Option<Child>,
    url: String,
    auth_url: Option<String>,
}

impl Cluster {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["keyring", "feed", "rpms", "patches", "state"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(
            dir.path().join("keyring/dev.pem"),
            key().public_key().to_spki_pem().unwrap(),
        )
        .unwrap();
        TestRpm::new("sysinv", "1.0", "230.tis").build(&dir.path().join("feed"));
        std::fs::write(dir.path().join("tokens"), "# operators\nsecret-token\n").unwrap();
        let mut c = Cluster {
            dir,
            child: None,
            url: String::new(),
            auth_url: None,
        };
        c.start(&[]);
        c
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn start(&mut self, extra: &[&str]) {
        let (child, addrs) = common::spawn_with_addresses(
            common::controller()
                .arg("--state-dir")
                .arg(self.path("state"))
                .arg("--keyring")
                .arg(self.path("keyring"))
                .args([
                    "--release",
                    "19.01",
                    "--listen",
                    "127.0.0.1:0",
                    "--auth-listen",
                    "127.0.0.1:0",
                ])
                .arg("--auth-tokens-file")
                .arg(self.path("tokens"))
                .args(extra)
                .env("STX_PATCH_LOG", "warn"),
        );
        self.url = format!("http://{}", addrs["api"].as_str().unwrap());
        self.auth_url = addrs["auth_api"].as_str().map(|a| format!("http://{a}"));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn sw_patch(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sw-patch"))
            .args(["--url", &self.url])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.sw_patch(args);
        assert!(
            out.status.success(),
            "sw-patch {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.sw_patch(args);
        assert!(
            !out.status.success(),
            "sw-patch {args:?} unexpectedly succeeded"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Builds `patches/<id>.patch`.
    fn patch(
        &self,
        id: &str,
        rpms: &[(&str, &str)],
        edit: impl FnOnce(&mut PatchMetadata),
    ) -> PathBuf {
        let mut metadata = PatchMetadata::new(id, "19.01");
        metadata.status = Status::Released;
        metadata.reboot_required = false;
        metadata.summary = format!("{id} summary");
        edit(&mut metadata);
        let mut builder = PatchBuilder::new(metadata);
        builder.threads(1);
        for (name, release) in rpms {
            let rpm = TestRpm::new(name, "1.0", release).build(&self.path("rpms"));
            let p: &[Personality] = if *name == "newpkg" {
                &Personality::ALL
            } else {
                &[]
            };
            builder.add_rpm(&rpm, p).unwrap();
        }
        builder
            .write_to_dir(&self.path("patches"), key())
            .unwrap()
            .0
    }

    fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }

    fn post(&self, path: &str) -> Value {
        self.http()
            .post(format!("{}{path}", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn upload_raw(&self, file: &Path, name: &str) -> Value {
        let part = reqwest::blocking::multipart::Part::bytes(std::fs::read(file).unwrap())
            .file_name(name.to_owned());
        let form = reqwest::blocking::multipart::Form::new().part("file", part);
        self.http()
            .post(format!("{}/patch/upload", self.url))
            .multipart(form)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every file of the state directory but the lock and scratch area, with contents.
fn state_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.ends_with("tmp") || p.ends_with(".lock") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_seed_sequence_through_sw_patch() {
    let c = Cluster::new();
    let feed = c.path("feed");
    let out = c.ok(&["init-release", "19.01", "--feed", feed.to_str().unwrap()]);
    assert_eq!(out, "Release 19.01 has been initialized\n\n");
    let p1 = c.patch("001", &[("sysinv", "231.tis"), ("newpkg", "1")], |_| {});
    let out = c.ok(&["upload", p1.to_str().unwrap()]);
    assert_eq!(out, "001 is now available\n\n");

    let table = c.ok(&["query"]);
    assert_eq!(
        table,
        "Patch ID  RR  Release  Repo State  Patch State\n\
         ========  ==  =======  ==========  ===========\n\
         001       N    19.01   Available       n/a    \n\n"
    );
    let out = c.ok(&["apply", "001"]);
    assert_eq!(out, "001 is now in the repo\n\n");
    assert!(
        c.ok(&["query", "applied"])
            .contains("001       N    19.01    Applied        n/a")
    );
    let shown = c.ok(&["show", "001"]);
    assert!(
        shown.starts_with("001:\n    Release:        19.01\n"),
        "{shown}"
    );
    assert!(shown.contains("    Contents:\n                    newpkg-1.0-1.x86_64.rpm\n                    sysinv-1.0-231.tis.x86_64.rpm\n\n\n"), "{shown}");
    assert_eq!(c.ok(&["is-applied", "001"]), "True\n");
    assert_eq!(c.ok(&["is-available", "001"]), "False\n");
    assert_eq!(
        c.ok(&["what-requires", "001"]),
        "001 is not required by any patches.\n\n"
    );

    // The repo is served from the state dir with its index.
    let index: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/repo/rel-19.01/index.json")).unwrap())
            .unwrap();
    assert_eq!(index["packages"].as_array().unwrap().len(), 2);

    // --format yaml says what --format json says (as the OpenStack clients' -f yaml).
    let json_query: Value = serde_json::from_str(&c.ok(&["query", "--format", "json"])).unwrap();
    let yaml_query: Value = serde_yaml_ng::from_str(&c.ok(&["query", "--format", "yaml"])).unwrap();
    assert_eq!(yaml_query, json_query);
    assert!(json_query["pd"]["001"].is_object(), "{json_query}");
    let json_show: Value =
        serde_json::from_str(&c.ok(&["show", "001", "--format", "json"])).unwrap();
    let yaml_show: Value =
        serde_yaml_ng::from_str(&c.ok(&["show", "001", "--format", "yaml"])).unwrap();
    assert_eq!(yaml_show, json_show);

    let out = c.ok(&["remove", "001"]);
    assert_eq!(out, "001 has been removed from the repo\n\n");
    let out = c.ok(&["delete", "001"]);
    assert_eq!(out, "001 has been deleted\n\n");
    assert_eq!(
        c.ok(&["query"]),
        "Patch ID  RR  Release  Patch State\n========  ==  =======  ===========\n\n"
    );

    let json: Value = serde_json::from_str(&c.ok(&["query", "--format", "json"])).unwrap();
    assert!(json["pd"].as_object().unwrap().is_empty());
    let system = Command::new(env!("CARGO_BIN_EXE_system"))
        .args(["--url", &c.url, "show"])
        .output()
        .unwrap();
    let system = String::from_utf8(system.stdout).unwrap();
    assert!(system.contains("| software_version | 19.01 "), "{system}");
    assert!(system.starts_with("+------------------+"), "{system}");
    let system = Command::new(env!("CARGO_BIN_EXE_system"))
        .args(["--url", &c.url, "show", "--format", "yaml"])
        .output()
        .unwrap();
    let system: Value = serde_yaml_ng::from_slice(&system.stdout).unwrap();
    assert_eq!(system["software_version"], "19.01", "{system}");
}

#[test]
fn refusal_rules_with_their_messages() {
    let c = Cluster::new();
    c.ok(&[
        "init-release",
        "19.01",
        "--feed",
        c.path("feed").to_str().unwrap(),
    ]);
    let a = c.patch("A", &[("sysinv", "231")], |_| {});
    let b = c.patch("B", &[("sysinv", "232")], |m| {
        m.requires.insert("A".into());
    });
    let u = c.patch("U", &[("newpkg", "1")], |m| m.unremovable = true);
    let old = c.patch("OLD", &[("sysinv", "229")], |_| {});
    let dev = c.patch("DEV", &[("sysinv", "240")], |m| {
        m.status = Status::Development
    });
    for p in [&a, &b, &u] {
        c.ok(&["upload", p.to_str().unwrap()]);
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["upload", old.to_str().unwrap()],
            "RPM sysinv-1.0-229.x86_64.rpm in patch OLD must be higher version than original (1.0-230.tis)",
        ),
        (vec!["apply", "NOPE"], "Patch NOPE does not exist"),
        (vec!["apply", "B"], "A is required by: B"),
        (vec!["delete", "NOPE"], "Patch NOPE does not exist"),
        (
            vec!["init-release", "19.01"],
            "Release 19.01 is the running release and is already initialized",
        ),
        (
            vec!["del-release", "19.01"],
            "Cannot delete the running release (19.01)",
        ),
    ];
    for (args, message) in cases {
        let err = c.fails(&args);
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in {err:?}"
        );
    }
    // Upload refusals.
    let dup = c.patch("DUP", &[("sysinv", "231")], |_| {});
    assert!(c.fails(&["upload", dup.to_str().unwrap()]).contains(
        "Patch DUP contains rpm sysinv-1.0-231.x86_64.rpm, which is already provided by patch A"
    ));
    let a2 = c.patch("A", &[("sysinv", "299")], |_| {});
    assert!(
        c.fails(&["upload", a2.to_str().unwrap()])
            .contains("Contents of A do not match re-imported patch")
    );
    let tgz = c.path("A.tgz");
    std::fs::copy(&dup, &tgz).unwrap();
    assert!(
        c.fails(&["upload", tgz.to_str().unwrap()])
            .contains("File must end in .patch extension: A.tgz")
    );
    let mut m = PatchMetadata::new("NEXT", "20.01");
    m.status = Status::Released;
    m.apply_active_release_only = true;
    let rpm = TestRpm::new("sysinv", "2.0", "1").build(&c.path("rpms"));
    let mut builder = PatchBuilder::new(m);
    builder.add_rpm(&rpm, &[]).unwrap();
    let (next, _) = builder.write_to_dir(&c.path("patches"), key()).unwrap();
    assert!(
        c.fails(&["upload", next.to_str().unwrap()])
            .contains("Patch NEXT software release (20.01) is not installed")
    );
    c.ok(&["init-release", "20.01", "--personality", "worker=kernel"]);
    c.ok(&["upload", next.to_str().unwrap()]);
    assert!(
        c.fails(&["apply", "NEXT"])
            .contains("NEXT cannot be applied in an upgrade")
    );
    assert!(
        c.fails(&["commit", "A", "--yes"])
            .contains("The following patches are not applied and cannot be committed:\nA")
    );

    c.ok(&["apply", "A", "B", "U"]);
    for (args, message) in [
        (vec!["remove", "A"], "A is required by: B"),
        (vec!["remove", "U"], "Patch U is not removable"),
        (vec!["delete", "A"], "Patch A not in Available state"),
    ] {
        let err = c.fails(&args);
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in {err:?}"
        );
    }
    c.ok(&["report-app-dependencies", "B", "--app", "app1"]);
    assert!(
        c.ok(&["query-app-dependencies"])
            .contains("app1         B\n")
    );
    assert!(
        c.fails(&["remove", "B"])
            .contains("B is required by application(s): app1")
    );
    c.ok(&["remove", "B", "--skipappcheck"]);
    c.ok(&["upload", dev.to_str().unwrap()]);
    assert!(
        c.fails(&["commit", "A", "--yes"]).contains(
            "A commit cannot be performed with non-REL status patches in the system:\nDEV"
        )
    );
    c.ok(&["delete", "DEV"]);
    let dry = c.ok(&["commit", "A", "--dry-run"]);
    assert!(
        dry.contains("This commit operation would free 0.00 MiB"),
        "{dry}"
    );
    let done = c.ok(&["commit", "A", "--yes"]);
    assert!(done.contains("The patches have been committed."), "{done}");
    assert!(
        c.fails(&["remove", "A"])
            .contains("Patch A is committed and cannot be removed")
    );
    assert_eq!(c.ok(&["query-dependencies", "B", "--recursive"]), "A\nB\n");
}

#[test]
fn bad_uploads_leave_the_store_unchanged() {
    let mut c = Cluster::new();
    c.kill();
    c.start(&["--max-upload-bytes", "200000"]);
    c.ok(&[
        "init-release",
        "19.01",
        "--feed",
        c.path("feed").to_str().unwrap(),
    ]);
    let good = c.patch("GOOD", &[("sysinv", "231")], |_| {});
    c.ok(&["upload", good.to_str().unwrap()]);
    let before = state_tree(&c.path("state"));

    let junk = c.path("junk.patch");
    std::fs::write(&junk, "not gzip").unwrap();
    let bytes = std::fs::read(c.patch("T", &[("sysinv", "232")], |_| {})).unwrap();
    let truncated = c.path("truncated.patch");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let renamed = c.path("OTHER.patch");
    std::fs::write(&renamed, &bytes).unwrap();
    let stranger = PrivateKey::generate(2048).unwrap();
    let rpm = TestRpm::new("sysinv", "1.0", "299").build(&c.path("rpms"));
    let mut b = PatchBuilder::new(PatchMetadata::new("EVIL", "19.01"));
    b.add_rpm(&rpm, &[]).unwrap();
    let (evil, _) = b.write_to_dir(c.dir.path(), &stranger).unwrap();
    // A genuine, validly signed patch that is simply too big.
    let mut x = 0x2545f4914f6cdd1du64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big_rpm = TestRpm::new("huge", "1.0", "1")
        .file("/opt/huge", noise)
        .build(&c.path("rpms"));
    let mut b = PatchBuilder::new(PatchMetadata::new("BIG", "19.01"));
    b.add_rpm(&big_rpm, &[]).unwrap();
    let (big, _) = b.write_to_dir(c.dir.path(), key()).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 200_000);

    for (file, name, message) in [
        (&junk, "junk.patch", "not gzip"),
        (&truncated, "T.patch", "Patch validation failed for T:"),
        (
            &renamed,
            "OTHER.patch",
            "the file name says OTHER but the patch metadata says T",
        ),
        (
            &evil,
            "EVIL.patch",
            "Patch validation failed for EVIL:\nSignature check failed",
        ),
        (&big, "BIG.patch", "larger than the 200000-byte limit"),
    ] {
        let value = c.upload_raw(file, name);
        let error = value["error"].as_str().unwrap();
        assert!(error.contains(message), "{name}: {error}");
        assert_eq!(
            before,
            state_tree(&c.path("state")),
            "{name} changed the store"
        );
    }
    // A body that declares more than the limit is refused before it is sent: the answer
    // comes back while the client still holds the rest.
    let mut stream = std::net::TcpStream::connect(c.url.trim_start_matches("http://")).unwrap();
    stream
        .write_all(
            b"POST /v1/upload?filename=HUGE.patch HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000000000\r\n\r\n\x1f\x8b",
        )
        .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut answer = [0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.contains("larger than the 200000-byte limit"),
        "{answer}"
    );
    assert_eq!(before, state_tree(&c.path("state")));

    // A malformed query string gets a 400 with the line the original client looks for.
    let response = c
        .http()
        .get(format!("{}/v1/query?show=%zz%", c.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .unwrap()
            .starts_with("Error message: malformed query string")
    );
    let response = c
        .http()
        .get(format!("{}/v1/nonsense", c.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(before, state_tree(&c.path("state")));
}

#[test]
fn the_authenticated_api_wants_a_token_and_the_json_shapes_match() {
    let c = Cluster::new();
    let auth = c.auth_url.clone().unwrap();
    let r = c.http().get(format!("{auth}/v1/query")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("Error message:"));
    let r = c
        .http()
        .get(format!("{auth}/v1/query"))
        .header("X-Auth-Token", "wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r: Value = c
        .http()
        .get(format!("{auth}/patch/query"))
        .header("X-Auth-Token", "secret-token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(r["pd"].is_object());
    assert_eq!(
        c.http().get(&c.url).send().unwrap().text().unwrap(),
        "Titanium Cloud Patching API, Available versions: /v1"
    );

    c.post("/patch/init_release/19.01?feed=".to_owned().as_str());
    let p = c.patch("P1", &[("sysinv", "231")], |m| {
        m.requires.insert("P0".into());
    });
    let up = c.upload_raw(&p, "/some/client/dir/P1.patch");
    assert_eq!(
        up,
        serde_json::json!({"info": "P1 is now available\n", "warning": "", "error": ""})
    );
    let show = c.post("/patch/show/P1/NOPE");
    assert_eq!(
        show["contents"]["P1"],
        serde_json::json!(["sysinv-1.0-231.x86_64.rpm"])
    );
    assert_eq!(
        show["metadata"]["P1"]["requires"],
        serde_json::json!(["P0"])
    );
    assert_eq!(show["metadata"]["P1"]["reboot_required"], "N");
    assert_eq!(show["metadata"]["P1"]["repostate"], "Available");
    assert_eq!(show["metadata"]["P1"]["patchstate"], "n/a");
    assert_eq!(show["error"], "NOPE is unrecognized\n");
    let deps = c
        .http()
        .get(format!("{}/v1/query_dependencies/P1", c.url))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(
        deps,
        serde_json::json!({"patches": ["P0", "P1"], "error": ""})
    );
    assert_eq!(c.post("/v1/is_available/P1"), serde_json::json!(true));
    assert_eq!(c.post("/v1/is_applied/P1"), serde_json::json!(false));
    assert_eq!(
        c.post("/v1/report_app_dependencies/P1?app=a"),
        serde_json::json!(true)
    );
    assert_eq!(
        c.post("/v1/query_app_dependencies"),
        serde_json::json!({"a": ["P1"]})
    );
    let system = c
        .http()
        .get(format!("{}/v1/isystems", c.url))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(system["isystems"][0]["software_version"], "19.01");
}

#[test]
fn twenty_concurrent_clients_lose_and_duplicate_nothing() {
    let c = Cluster::new();
    c.ok(&[
        "init-release",
        "19.01",
        "--feed",
        c.path("feed").to_str().unwrap(),
    ]);
    let patches: Vec<PathBuf> = (0..10)
        .map(|i| c.patch(&format!("C{i:02}"), &[(&format!("pkg{i}"), "1")], |_| {}))
        .collect();
    std::thread::scope(|s| {
        for t in 0..20 {
            let c = &c;
            let patches = &patches;
            s.spawn(move || {
                if t % 2 == 0 {
                    // Uploaders: each patch uploaded by two clients at once.
                    let p = &patches[t / 2];
                    let name = p.file_name().unwrap().to_str().unwrap().to_owned();
                    let v = c.upload_raw(p, &name);
                    assert_eq!(v["error"], "", "{v}");
                } else {
                    for _ in 0..10 {
                        let r: Value = c
                            .http()
                            .get(format!("{}/v1/query", c.url))
                            .send()
                            .unwrap()
                            .json()
                            .unwrap();
                        assert!(r["pd"].is_object());
                    }
                }
            });
        }
    });
    let r: Value = c
        .http()
        .get(format!("{}/v1/query", c.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&String> = r["pd"].as_object().unwrap().keys().collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    let packages = std::fs::read_dir(c.path("state/packages/19.01"))
        .unwrap()
        .count();
    assert_eq!(packages, 10);
}
