//! SIGKILL the controller at random moments during uploads, applies, removes and commits; after
//! every restart the store must be consistent and every acknowledged change must be there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, SystemTime};

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use patch_sign::Keyring;
use patch_store::{RepoState, Store, StoreConfig};
use serde_json::Value;

fn start(dir: &Path) -> (Child, String) {
    let (child, addrs) = common::spawn_with_addresses(
        common::controller()
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--keyring")
            .arg(dir.join("keyring"))
            .args(["--release", "19.01", "--listen", "127.0.0.1:0"])
            .env("STX_PATCH_LOG", "error"),
    );
    (child, format!("http://{}", addrs["api"].as_str().unwrap()))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_store() {
    let (dir, key) = common::work_dir(&["feed", "rpms", "patches"]);
    let d = dir.path();
    TestRpm::new("base", "1.0", "1").build(&d.join("feed"));

    // Patches big enough (1 MiB of RPM each) that an import takes a few milliseconds.
    let mut seed_bytes = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    seed_bytes |= 1;
    eprintln!("crash test seed {seed_bytes}");
    let mut rng = Rng(seed_bytes);
    let patches: Vec<(String, PathBuf)> = (0..16)
        .map(|i| {
            let id = format!("K{i:02}");
            let payload: Vec<u8> = (0..(1 << 20))
                .map(|j| ((j as u64 * 2654435761) >> 13) as u8 ^ i as u8)
                .collect();
            let rpm = TestRpm::new(&format!("pkg{i}"), "1.0", "1")
                .file(&format!("/opt/pkg{i}/blob"), payload)
                .build(&d.join("rpms"));
            let mut m = PatchMetadata::new(&id, "19.01");
            m.status = Status::Released;
            m.reboot_required = false;
            let mut b = PatchBuilder::new(m);
            b.threads(1).add_rpm(&rpm, &[]).unwrap();
            (id, b.write_to_dir(&d.join("patches"), &key).unwrap().0)
        })
        .collect();

    let (mut child, mut url) = start(d);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r: Value = http
        .post(format!(
            "{url}/v1/init_release/19.01?feed={}",
            d.join("feed").display()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["error"], "");

    let mut kills = 0;
    let mut interrupted = 0;
    for round in 0..80 {
        // Choose an operation from what the store holds now.
        let pd: Value = http
            .get(format!("{url}/v1/query"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let state_of = |id: &str| pd["pd"][id]["repostate"].as_str().map(str::to_owned);
        let (id, path) = &patches[rng.below(patches.len() as u64) as usize];
        let (action, expect): (String, Option<&str>) = match state_of(id).as_deref() {
            None => ("upload".into(), Some("Available")),
            Some("Available") if rng.below(4) == 0 => (format!("delete/{id}"), None),
            Some("Available") => (format!("apply/{id}"), Some("Applied")),
            Some("Applied") if round % 7 == 6 => (format!("commit/{id}"), Some("Committed")),
            Some("Applied") => (format!("remove/{id}"), Some("Available")),
            _ => ("query".into(), None),
        };
        let op_url = url.clone();
        let file = path.clone();
        let name = format!("{id}.patch");
        let worker = std::thread::spawn(move || -> Option<Value> {
            let http = reqwest::blocking::Client::new();
            let request = if action == "upload" {
                let part = reqwest::blocking::multipart::Part::bytes(std::fs::read(&file).ok()?)
                    .file_name(name);
                http.post(format!("{op_url}/v1/upload"))
                    .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
            } else {
                http.post(format!("{op_url}/v1/{action}"))
            };
            request.send().ok()?.json().ok()
        });
        // Half the kills land early (mid-request), half anywhere in a longer window.
        let wait = if rng.below(2) == 0 {
            rng.below(3_000)
        } else {
            rng.below(15_000)
        };
        std::thread::sleep(Duration::from_micros(wait));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let answer = worker.join().unwrap();
        if answer.is_none() {
            interrupted += 1;
        }

        // Recovery happens in open(); then everything must hold.
        let store = Store::open(StoreConfig {
            root: d.join("state"),
            running_release: "19.01".into(),
            keyring: Keyring::default(),
            limits: Default::default(),
            rpm_keyring: None,
        })
        .unwrap();
        let problems = store.check_invariants();
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        // An acknowledged change survived the kill.
        if let (Some(answer), Some(expect)) = (&answer, expect)
            && answer["error"] == ""
            && answer.get("info").is_some()
        {
            let state = store.patch(id).map(|p| p.repo_state);
            let want = match expect {
                "Available" => RepoState::Available,
                "Applied" => RepoState::Applied,
                _ => RepoState::Committed,
            };
            assert_eq!(
                state,
                Some(want),
                "round {round}: acknowledged {answer} but {id} is {state:?}"
            );
        }
        drop(store);
        (child, url) = start(d);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("{kills} kills, {interrupted} with the operation unanswered");
    assert!(kills >= 50);
    // The kills must actually land inside operations, not only between them.
    assert!(
        interrupted >= 10,
        "only {interrupted} operations were interrupted"
    );
}
