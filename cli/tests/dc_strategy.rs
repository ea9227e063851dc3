//! The subcloud patch strategy end to end, with real parts only: a system controller
//! (`sw-patch-controller` + `dc-controller`) and real subclouds, each its own
//! `sw-patch-controller` with real agents installing into their roots — a 2+2 duplex whose
//! controllers are a pair, and simplex ones. Patches are uploaded once on the system
//! controller; `dcmanager patch-strategy` syncs, applies and installs them everywhere.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Site;
use common::cluster::fast_timing;
use common::dc::{Dc, SUBCLOUD_TOKEN, add, add_at, subcloud_with};
use common::pair::Pair;
use patch_format::testing::TestRpm;
use serde_json::Value;

fn sysinv(release: &str) -> TestRpm {
    TestRpm::new("sysinv", "1.0", release)
        .file("/usr/lib/sysinv/api.py", format!("VERSION = {release}\n"))
}

/// Makes `site` trust patches signed with the key whose public half is at `pem` (a
/// restart reads the keyring).
fn trust_key(site: &mut Site, pem: &Path) {
    std::fs::copy(pem, site.path("keyring/system-controller.pem")).unwrap();
    site.restart_controller();
}

/// A simplex subcloud (one controller host with its agent) trusting `pem`.
fn simplex(pem: &Path, obstacle: bool) -> Site {
    simplex_settling(pem, obstacle, 1)
}

/// [`simplex`] whose strategies wait `settle` seconds after an install.
fn simplex_settling(pem: &Path, obstacle: bool, settle: u64) -> Site {
    let mut site = subcloud_with(&format!(
        "single_controller = true\n{}",
        fast_timing(settle)
    ));
    trust_key(&mut site, pem);
    if obstacle {
        // A file where a patch's new package needs a directory: its install fails.
        let root = site.root("controller-0");
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::fs::write(root.join("opt/fixdata"), "in the way\n").unwrap();
    }
    site.start_agent("controller-0", "controller");
    site.wait_for("controller-0 reporting and current", |s| {
        let hosts = s.hosts();
        hosts.len() == 1 && hosts[0]["patch_current"] == true
    });
    site
}

/// The 2+2 duplex: a controller pair, two controller hosts and two workers.
fn duplex() -> Pair {
    let mut pair = Pair::new(&fast_timing(1));
    for (host, personality) in [
        ("controller-0", "controller"),
        ("controller-1", "controller"),
        ("compute-0", "worker"),
        ("compute-1", "worker"),
    ] {
        pair.start_agent(host, personality);
    }
    pair.wait_for("the duplex's hosts reporting and current", |p| {
        let hosts = p.hosts();
        hosts.len() == 4 && hosts.iter().all(|h| h["patch_current"] == true)
    });
    pair
}

fn strategy(dc: &Dc) -> Value {
    serde_json::from_str(&dc.ok(&["patch-strategy", "show", "--format", "json"])).unwrap()
}

fn steps(dc: &Dc) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&dc.ok(&["strategy-step", "list", "--format", "json"])).unwrap();
    v["strategy-steps"].as_array().cloned().unwrap_or_default()
}

fn step<'a>(steps: &'a [Value], cloud: &str) -> &'a Value {
    steps.iter().find(|s| s["cloud"] == cloud).unwrap()
}

/// `apply --wait`; the strategy's last document (whatever the exit status). A strategy that
/// does not end within 5 minutes fails the test instead of hanging it.
fn apply_and_wait(dc: &Dc) -> Value {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dcmanager"))
        .args(["--dcmanager-url", &dc.url, "--token", common::dc::TOKEN])
        .args(["patch-strategy", "apply", "--wait", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!(
                "the strategy did not end within 5 minutes:\n{}",
                dc.ok(&["strategy-step", "list"])
            );
        }
    };
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "apply --wait: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn version(root: &Path) -> String {
    std::fs::read_to_string(root.join("usr/lib/sysinv/api.py")).unwrap_or_default()
}

fn upload_on_system_controller(
    sc: &Site,
    pair: &Pair,
    id: &str,
    rr: bool,
    rpms: &[TestRpm],
    new: &[&str],
) {
    // Signed with the duplex's key, which every site trusts.
    let patch = pair.patch(id, rr, rpms, new);
    sc.ok(&["upload", patch.to_str().unwrap()]);
    sc.ok(&["apply", id]);
}

#[test]
fn a_subcloud_strategy_patches_every_subcloud_and_keeps_to_its_rules() {
    let pair = duplex();
    let pem = pair.path("keyring/dev.pem");
    let mut sc = Site::new();
    trust_key(&mut sc, &pem);
    let failing = simplex(&pem, true);
    let simplex1 = simplex(&pem, false);
    let simplex2 = simplex(&pem, false);
    let gone = subcloud_with("");
    let dc = Dc::start_with(
        &sc,
        None,
        &["--strategy-poll-ms", "200", "--offline-grace", "10"],
    );
    add(&dc, "failing", &failing, None);
    add_at(
        &dc,
        "duplex",
        &pair.api_urls(),
        &pair.vim_urls(),
        &pair.ca.ca_cert,
        None,
    );
    add(&dc, "simplex1", &simplex1, None);
    add(&dc, "simplex2", &simplex2, None);
    add(&dc, "gone", &gone, None);
    for name in ["failing", "duplex", "simplex1", "simplex2", "gone"] {
        dc.ok(&["subcloud", "manage", name]);
    }
    drop(gone);
    dc.ok(&[
        "sw-update-options",
        "update",
        "--worker-apply-type",
        "serial",
        "duplex",
    ]);
    let options = dc.ok(&["sw-update-options", "list"]);
    assert!(
        options.contains("| all clouds default | parallel "),
        "{options}"
    );
    assert!(
        options.contains("| duplex             | parallel           | serial "),
        "{options}"
    );

    // 1. A reboot-required patch, uploaded once on the system controller, rolled out in
    //    parallel two at a time: every subcloud in sync, every host patched.
    upload_on_system_controller(&sc, &pair, "DC_RR_0001", true, &[sysinv("231")], &[]);
    dc.wait_for("gone", "offline", "unknown");
    for name in ["failing", "duplex", "simplex1", "simplex2"] {
        dc.wait_for(name, "online", "out-of-sync");
    }
    let dry: Value = serde_json::from_str(&dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "parallel",
        "--max-parallel-subclouds",
        "2",
        "--dry-run",
        "--format",
        "json",
    ]))
    .unwrap();
    let dry = &dry["dry-run"];
    assert_eq!(dry["total-stages"], 2, "{dry:#}");
    assert_eq!(dry["subclouds"][0]["upload"][0], "DC_RR_0001", "{dry:#}");
    assert!(dry["bytes-to-transfer"].as_u64().unwrap() > 1000, "{dry:#}");
    assert!(dry["predicted-duration-seconds"].is_null(), "{dry:#}");
    assert_eq!(dry["skipped-subclouds"][0]["cloud"], "gone", "{dry:#}");
    assert!(dc.run(&["patch-strategy", "show"]).status.code() == Some(1));

    let created = dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "parallel",
        "--max-parallel-subclouds",
        "2",
    ]);
    assert!(created.contains("| skipped "), "{created}");
    assert!(created.contains("gone: offline"), "{created}");
    let list = dc.ok(&["strategy-step", "list"]);
    assert!(
        list.lines()
            .nth(1)
            .unwrap()
            .starts_with("| cloud    | stage | state   | details | started_at | finished_at |"),
        "{list}"
    );
    let s = apply_and_wait(&dc);
    assert_eq!(
        s["state"],
        "complete",
        "{s:#}\n{}",
        dc.ok(&["strategy-step", "list"])
    );
    for st in steps(&dc) {
        assert_eq!(st["state"], "complete", "{st}");
        assert!(st["finished-at"].as_i64().is_some(), "{st}");
    }
    for name in ["failing", "duplex", "simplex1", "simplex2"] {
        assert_eq!(dc.subcloud(name)["sync_status"], "in-sync", "{name}");
    }
    for site in [&failing, &simplex1, &simplex2] {
        assert_eq!(version(&site.root("controller-0")), "VERSION = 231\n");
        assert!(site.hosts().iter().all(|h| h["patch_current"] == true));
    }
    for host in ["controller-0", "controller-1", "compute-0", "compute-1"] {
        assert_eq!(version(&pair.root(host)), "VERSION = 231\n", "{host}");
    }
    assert!(pair.hosts().iter().all(|h| h["patch_current"] == true));
    // The system controller's dashboard shows the subclouds and the strategy's steps.
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token_file = dc.dir.path().join("dashboard.token");
    std::fs::write(&token_file, format!("{}\n", common::dc::TOKEN)).unwrap();
    let mut toml = std::fs::read_to_string(sc.path("controller.toml")).unwrap();
    toml += &format!(
        "auth_tokens = [\"sc-operator\"]\nweb_listen = \"127.0.0.1:{web_port}\"\n\
         dcmanager_url = \"{}\"\ndcmanager_token_file = {:?}\n",
        dc.url, token_file
    );
    std::fs::write(sc.path("controller.toml"), toml).unwrap();
    sc.restart_controller();
    let web = format!("https://127.0.0.1:{web_port}");
    let http = sc.http();
    let login = common::http_login(&http, &web, "sc-operator");
    let (session, _) = common::cookie(&login, "stx_session").expect("a session");
    let page = http
        .get(format!("{web}/dc"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    for name in ["failing", "duplex", "simplex1", "simplex2", "gone"] {
        assert!(
            page.contains(&format!("data-subcloud=\"{name}\"")),
            "{page}"
        );
        if name != "gone" {
            assert!(page.contains(&format!("data-step=\"{name}\"")), "{page}");
        }
    }
    assert!(page.contains("5 subclouds, 4 in sync"), "{page}");
    assert!(
        page.contains("id=\"dc-strategy-state\">complete<"),
        "{page}"
    );
    // The subclouds' own strategies are gone; a completed strategy can be deleted.
    let own = simplex1.run(
        "sw-manager",
        &["--token", SUBCLOUD_TOKEN, "patch-strategy", "show"],
    );
    assert_eq!(
        String::from_utf8_lossy(&own.stdout),
        "No strategy available\n",
        "{own:?}"
    );
    dc.ok(&["patch-strategy", "delete"]);
    // The next dry run predicts from the steps just timed.
    upload_on_system_controller(
        &sc,
        &pair,
        "DC_0002",
        false,
        &[
            sysinv("232"),
            TestRpm::new("fixdata", "1.0", "1").file("/opt/fixdata/table", "rows\n"),
        ],
        &["fixdata"],
    );
    let dry: Value = serde_json::from_str(&dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "serial",
        "--dry-run",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(dry["dry-run"]["total-stages"], 4);
    assert!(
        dry["dry-run"]["predicted-duration-seconds"]
            .as_i64()
            .is_some(),
        "{dry:#}"
    );

    // 2. One subcloud's install fails. With --stop-on-failure, serial: no further subcloud
    //    starts, and the failed one is named with its own strategy's reason.
    dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "serial",
        "--stop-on-failure",
    ]);
    let s = apply_and_wait(&dc);
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["failed-subclouds"][0]["cloud"], "failing", "{s:#}");
    let reason = s["failed-subclouds"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("its patch strategy is "), "{reason}");
    let all = steps(&dc);
    for name in ["duplex", "simplex1", "simplex2"] {
        let st = step(&all, name);
        assert_eq!(st["state"], "aborted", "{st}");
        assert!(
            st["details"]
                .as_str()
                .unwrap()
                .contains("stopped after 1 failed"),
            "{st}"
        );
    }
    assert_eq!(version(&simplex1.root("controller-0")), "VERSION = 231\n");
    assert!(!simplex1.ok(&["query"]).contains("DC_0002"));
    let shown = dc.ok(&["strategy-step", "show", "failing"]);
    assert!(shown.contains("| state       | failed "), "{shown}");
    dc.ok(&["patch-strategy", "delete"]);

    // 3. With an error budget of one, the rest finish.
    dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "parallel",
        "--max-parallel-subclouds",
        "2",
        "--max-failed-subclouds",
        "1",
    ]);
    let s = apply_and_wait(&dc);
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["progress"]["complete"], 3, "{s:#}");
    assert_eq!(s["failed-subclouds"][0]["cloud"], "failing", "{s:#}");
    for site in [&simplex1, &simplex2] {
        assert_eq!(version(&site.root("controller-0")), "VERSION = 232\n");
    }
    for host in ["controller-0", "controller-1", "compute-0", "compute-1"] {
        assert_eq!(version(&pair.root(host)), "VERSION = 232\n", "{host}");
    }
    dc.ok(&["patch-strategy", "delete"]);

    // 4. Abort mid-way: the subcloud under way finishes, the others are not touched.
    dc.ok(&["subcloud", "unmanage", "failing"]);
    upload_on_system_controller(&sc, &pair, "DC_0003", false, &[sysinv("233")], &[]);
    dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "serial",
    ]);
    dc.ok(&["patch-strategy", "apply"]);
    let start = Instant::now();
    while step(&steps(&dc), "duplex")["state"] == "initial" {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
    }
    dc.ok(&["patch-strategy", "abort"]);
    let out = dc.run(&["patch-strategy", "abort", "--wait", "--format", "json"]);
    assert!(!out.status.success(), "a second abort is refused");
    let s: Value = loop {
        let s = strategy(&dc);
        if s["state"] == "aborted" {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{s:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let all = steps(&dc);
    assert_eq!(step(&all, "duplex")["state"], "complete", "{s:#}");
    for name in ["simplex1", "simplex2"] {
        assert_eq!(step(&all, name)["state"], "aborted", "{s:#}");
    }
    for host in ["controller-0", "controller-1", "compute-0", "compute-1"] {
        assert_eq!(version(&pair.root(host)), "VERSION = 233\n", "{host}");
    }
    assert_eq!(version(&simplex2.root("controller-0")), "VERSION = 232\n");
    assert!(!simplex2.ok(&["query"]).contains("DC_0003"));
    dc.ok(&["patch-strategy", "delete"]);
}

/// How many patch strategies the subcloud at `url` created since its controller started
/// (its own counter, counted when stored: a create whose caller was killed before the answer
/// counts too).
fn strategies_created(url: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("stx_patch_strategies_created_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no strategies-created counter in {url}/metrics:\n{text}"))
}

/// A pseudo-random number in `range` (xorshift, seeded from the OS through `RandomState`;
/// the seed is printed so a failure can be replayed).
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        let seed = h.finish() | 1;
        eprintln!("kill moments seed: {seed}");
        Moments(seed)
    }

    fn next_ms(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

#[test]
fn a_system_controller_killed_at_random_moments_resumes_on_sqlite() {
    killed_at_random_moments(None);
}

#[test]
fn a_system_controller_killed_at_random_moments_resumes_on_postgresql() {
    let server = dc_controller::test_postgres::Postgres::start();
    killed_at_random_moments(Some(&server.url()));
}

/// SIGKILLs the system controller at random moments of a subcloud strategy: it resumes and
/// finishes, and no subcloud's own strategy is created twice.
fn killed_at_random_moments(database_url: Option<&str>) {
    let sc = Site::new();
    let pem = sc.path("keyring/dev.pem");
    // The system controller signs with its own key; the subclouds trust it. Each one's own
    // strategy takes a few seconds, so the whole spans many kills.
    let subclouds: Vec<Site> = (0..4).map(|_| simplex_settling(&pem, false, 4)).collect();
    let patch = sc.patch("DC_CRASH_0001", true, &[sysinv("231")], &[]);
    sc.ok(&["upload", patch.to_str().unwrap()]);
    sc.ok(&["apply", "DC_CRASH_0001"]);
    let mut dc = Dc::start_with(
        &sc,
        database_url,
        &["--strategy-poll-ms", "100", "--offline-grace", "60"],
    );
    for (i, site) in subclouds.iter().enumerate() {
        let name = format!("subcloud{i}");
        add(&dc, &name, site, None);
        dc.ok(&["subcloud", "manage", &name]);
        dc.wait_for(&name, "online", "out-of-sync");
    }
    dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "serial",
    ]);
    dc.ok(&["patch-strategy", "apply"]);
    let mut moments = Moments::new();
    let mut kills = 0;
    let mut killed_in = std::collections::BTreeSet::new();
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(moments.next_ms(50, 700)));
        let out = dc.run(&["patch-strategy", "show", "--format", "json"]);
        let state = serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| v["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        if state == "complete" {
            break;
        }
        assert!(
            !matches!(state.as_str(), "failed" | "aborted"),
            "the strategy {state} after {kills} kills: {}",
            dc.ok(&["strategy-step", "list"])
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not finished after {kills} kills: {}",
            dc.ok(&["strategy-step", "list"])
        );
        for st in steps(&dc) {
            killed_in.insert(st["state"].as_str().unwrap_or_default().to_owned());
        }
        dc.restart();
        kills += 1;
    }
    assert!(
        killed_in.contains("applying VIM patch strategy"),
        "never killed while a subcloud's strategy applied: {killed_in:?}"
    );
    assert!(
        kills >= 20,
        "only {kills} kills before the strategy finished: make it longer"
    );
    for (i, site) in subclouds.iter().enumerate() {
        let name = format!("subcloud{i}");
        assert_eq!(dc.subcloud(&name)["sync_status"], "in-sync", "{name}");
        assert_eq!(version(&site.root("controller-0")), "VERSION = 231\n");
        assert!(site.hosts().iter().all(|h| h["patch_current"] == true));
        // One create, plus one for each deliberate rebuild (a strategy whose build found
        // hosts not yet re-reported, deleted unapplied and logged); never one more.
        let log = std::fs::read_to_string(dc.dir.path().join("dc.log")).unwrap_or_default();
        let rebuilt = log
            .lines()
            .filter(|l| l.contains(&format!("subcloud {name}: patch strategy rebuilt")))
            .count() as u64;
        assert_eq!(
            strategies_created(&site.url),
            1 + rebuilt,
            "{name}'s patch strategy was created more than once"
        );
    }
    eprintln!("{kills} kills, with steps in {killed_in:?}");
}

#[test]
fn a_subcloud_that_goes_offline_mid_strategy_fails_its_step_and_holds_nothing_up() {
    let sc = Site::new();
    let pem = sc.path("keyring/dev.pem");
    let up = simplex(&pem, false);
    let mut down = simplex(&pem, false);
    let patch = sc.patch("DC_OFF_0001", false, &[sysinv("231")], &[]);
    sc.ok(&["upload", patch.to_str().unwrap()]);
    sc.ok(&["apply", "DC_OFF_0001"]);
    let dc = Dc::start_with(
        &sc,
        None,
        &["--strategy-poll-ms", "100", "--offline-grace", "2"],
    );
    add(&dc, "down", &down, None);
    add(&dc, "up", &up, None);
    for name in ["down", "up"] {
        dc.ok(&["subcloud", "manage", name]);
        dc.wait_for(name, "online", "out-of-sync");
    }
    dc.ok(&[
        "patch-strategy",
        "create",
        "--subcloud-apply-type",
        "serial",
    ]);
    // Its controller dies after the strategy was made with it.
    let _ = down.controller.kill();
    let _ = down.controller.wait();
    let start = Instant::now();
    let s = apply_and_wait(&dc);
    assert!(start.elapsed() < Duration::from_secs(60), "{s:#}");
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["failed-subclouds"][0]["cloud"], "down", "{s:#}");
    let reason = s["failed-subclouds"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("offline: subcloud down does not answer"),
        "{reason}"
    );
    assert_eq!(step(&steps(&dc), "up")["state"], "complete");
    assert_eq!(version(&up.root("controller-0")), "VERSION = 231\n");
}

/// A subcloud's own controller SIGKILLed while its patch strategy applies (its host
/// locked, a reboot-required patch): the step waits for it within the offline grace, its
/// strategy resumes there, and the step completes without a second strategy.
#[test]
fn a_subcloud_controller_killed_while_its_strategy_applies_comes_back_and_completes() {
    let sc = Site::new();
    let pem = sc.path("keyring/dev.pem");
    let mut site = simplex_settling(&pem, false, 3);
    let patch = sc.patch("DC_SCKILL_0001", true, &[sysinv("231")], &[]);
    sc.ok(&["upload", patch.to_str().unwrap()]);
    sc.ok(&["apply", "DC_SCKILL_0001"]);
    let dc = Dc::start_with(
        &sc,
        None,
        &["--strategy-poll-ms", "100", "--offline-grace", "60"],
    );
    add(&dc, "subcloud0", &site, None);
    dc.ok(&["subcloud", "manage", "subcloud0"]);
    dc.wait_for("subcloud0", "online", "out-of-sync");
    dc.ok(&["patch-strategy", "create"]);
    dc.ok(&["patch-strategy", "apply"]);
    let start = Instant::now();
    // Until the step shows the subcloud's own strategy under way ("applying N%").
    while !{
        let steps = steps(&dc);
        let st = step(&steps, "subcloud0");
        st["state"] == "applying VIM patch strategy"
            && st["details"]
                .as_str()
                .unwrap_or_default()
                .starts_with("applying")
    } {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            dc.ok(&["strategy-step", "list"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The metrics are the controller's memory: what this life counted, before it ends.
    let created_before = strategies_created(&site.url);
    let _ = site.controller.kill();
    let _ = site.controller.wait();
    std::thread::sleep(Duration::from_secs(2));
    site.restart_controller();
    let s = loop {
        let s = strategy(&dc);
        if matches!(s["state"].as_str(), Some("complete" | "failed" | "aborted")) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{}",
            dc.ok(&["strategy-step", "list"])
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(s["state"], "complete", "{s:#}");
    assert_eq!(dc.subcloud("subcloud0")["sync_status"], "in-sync");
    assert_eq!(version(&site.root("controller-0")), "VERSION = 231\n");
    assert!(site.hosts().iter().all(|h| h["patch_current"] == true));
    assert_eq!(
        created_before + strategies_created(&site.url),
        1,
        "the subcloud's patch strategy was created more than once"
    );
}

/// A patch applied on the system controller just before a strategy is made reaches the
/// subclouds, even when a strategy read its patches moments before (the read the steps
/// share is never older than the look that started them).
#[test]
fn a_patch_applied_just_before_a_strategy_reaches_the_subclouds() {
    let sc = Site::new();
    let pem = sc.path("keyring/dev.pem");
    let site = simplex(&pem, false);
    // A long poll: a cached read of the system controller's patches would outlive the
    // moment between the two strategies.
    let dc = Dc::start_with(&sc, None, &["--strategy-poll-ms", "3000"]);
    add(&dc, "subcloud0", &site, None);
    dc.ok(&["subcloud", "manage", "subcloud0"]);
    dc.wait_for("subcloud0", "online", "in-sync");
    // Nothing to do: the step reads the system controller's patches and completes.
    dc.ok(&["patch-strategy", "create"]);
    assert_eq!(apply_and_wait(&dc)["state"], "complete");
    dc.ok(&["patch-strategy", "delete"]);
    let patch = sc.patch("DC_FRESH_0001", false, &[sysinv("231")], &[]);
    sc.ok(&["upload", patch.to_str().unwrap()]);
    sc.ok(&["apply", "DC_FRESH_0001"]);
    dc.ok(&["patch-strategy", "create"]);
    let s = apply_and_wait(&dc);
    assert_eq!(s["state"], "complete", "{s:#}");
    assert_eq!(version(&site.root("controller-0")), "VERSION = 231\n");
    assert_eq!(dc.subcloud("subcloud0")["sync_status"], "in-sync");
}
