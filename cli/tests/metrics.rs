//! The Prometheus metrics, scraped from a real controller and agent while a strategy rolls a
//! reboot-required patch out: the host, patch and step gauges move as the rollout goes, the
//! durations and requests are counted, and `docs/METRICS.md` lists exactly what is exported.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Site;
use common::cluster::{apply_patch, fast_timing};

const HOSTS: [(&str, &str); 3] = [
    ("controller-0", "controller"),
    ("controller-1", "controller"),
    ("compute-0", "worker"),
];

/// One sample's value: `name{labels…}` where every label given matches.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        (series_name == name
            && labels.iter().all(|(k, v)| {
                series_labels
                    .split(',')
                    .any(|l| l == format!("{k}=\"{v}\""))
            }))
        .then(|| value.parse().ok())
        .flatten()
    })
}

/// The exported series names: each `# TYPE` family, counters with their `_total`.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut parts = l.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            }
        })
        .collect()
}

/// The metric names `docs/METRICS.md` lists in its tables.
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md"))
        .unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn scrape(url: &str) -> String {
    let answer = reqwest::blocking::get(format!("{url}/metrics")).unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = answer.text().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn metrics_follow_a_strategy_rollout_and_match_their_documentation() {
    let mut site = Site::with_toml(&fast_timing(1), &[]);
    let agent_port = free_loopback_port().to_string();
    let agent_metrics = format!("127.0.0.1:{agent_port}");
    for (host, personality) in HOSTS {
        if host == "compute-0" {
            site.start_agent_with(host, personality, &["--metrics-listen", &agent_metrics]);
        } else {
            site.start_agent(host, personality);
        }
    }
    site.wait_for("all hosts reporting and current", |s| {
        let hosts = s.hosts();
        hosts.len() == HOSTS.len() && hosts.iter().all(|h| h["patch_current"] == true)
    });
    let hosts = |text: &str, state: &str| sample(text, "stx_patch_hosts", &[("state", state)]);
    let before = scrape(&site.url);
    assert_eq!(hosts(&before, "all"), Some(3.0), "{before}");
    assert_eq!(hosts(&before, "patch-current"), Some(3.0));
    assert_eq!(
        sample(&before, "stx_patch_strategy_state", &[("state", "none")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, "stx_patch_strategies_created_total", &[]),
        Some(0.0)
    );

    apply_patch(&site, "METRICS_RR", true, &[]);
    let applied = scrape(&site.url);
    assert_eq!(hosts(&applied, "patch-current"), Some(0.0), "{applied}");
    assert_eq!(hosts(&applied, "reboot-required"), Some(3.0));
    assert_eq!(
        sample(&applied, "stx_patch_patches", &[("state", "Partial-Apply")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &applied,
            "stx_patch_upload_duration_seconds_count",
            &[("outcome", "success")]
        ),
        Some(1.0)
    );

    let created = site.run(
        "sw-manager",
        &[
            "patch-strategy",
            "create",
            "--worker-apply-type",
            "serial",
            "--wait",
        ],
    );
    assert!(created.status.success(), "{created:?}");
    let applying = site.run("sw-manager", &["patch-strategy", "apply"]);
    assert!(applying.status.success(), "{applying:?}");

    // Scrape as it goes: the gauges must move, the step count only forward.
    let mut steps_seen = Vec::new();
    let mut most_locked = 0.0_f64;
    let mut current_seen = BTreeSet::new();
    let start = Instant::now();
    let last = loop {
        let text = scrape(&site.url);
        let done = sample(
            &text,
            "stx_patch_strategy_steps_done",
            &[("phase", "apply")],
        )
        .unwrap();
        if steps_seen.last() != Some(&done) {
            steps_seen.push(done);
        }
        most_locked = most_locked.max(hosts(&text, "locked").unwrap());
        current_seen.insert(hosts(&text, "patch-current").unwrap() as u64);
        let state = |s| sample(&text, "stx_patch_strategy_state", &[("state", s)]) == Some(1.0);
        if !state("applying") {
            assert!(state("applied"), "the strategy did not apply: {text}");
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the rollout did not finish: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        steps_seen.windows(2).all(|w| w[0] < w[1]),
        "steps done went back: {steps_seen:?}"
    );
    assert!(
        steps_seen.len() >= 4,
        "too few steps seen moving: {steps_seen:?}"
    );
    let total = sample(&last, "stx_patch_strategy_steps", &[("phase", "apply")]).unwrap();
    assert_eq!(steps_seen.last(), Some(&total), "{last}");
    assert!(most_locked >= 1.0, "no host was ever seen locked");
    assert!(
        current_seen.len() >= 3,
        "patch-current hosts moved through too few values: {current_seen:?}"
    );
    assert_eq!(hosts(&last, "patch-current"), Some(3.0), "{last}");
    assert_eq!(
        sample(&last, "stx_patch_strategies_created_total", &[]),
        Some(1.0)
    );
    assert_eq!(hosts(&last, "locked"), Some(0.0));
    assert_eq!(
        sample(&last, "stx_patch_patches", &[("state", "Applied")]),
        Some(1.0)
    );
    let installs = sample(
        &last,
        "stx_patch_install_duration_seconds_count",
        &[("outcome", "success")],
    )
    .unwrap();
    assert!(installs >= 3.0, "{last}");
    for (listener, method, route) in [
        ("vim", "POST", "/api/orchestration/{kind}/strategy"),
        ("vim", "POST", "/api/orchestration/{kind}/strategy/actions"),
        ("api", "POST", "/v1/apply"),
        ("api", "GET", "/v1/query_hosts"),
        ("agent", "POST", "/agent/v1/report"),
    ] {
        let labels = [("listener", listener), ("method", method), ("route", route)];
        assert!(
            sample(&last, "stx_patch_http_requests_total", &labels).is_some_and(|n| n >= 1.0),
            "{labels:?} not counted: {last}"
        );
    }

    // The agent's own endpoint.
    let agent = scrape(&format!("http://{agent_metrics}"));
    assert!(
        sample(
            &agent,
            "stx_patch_agent_installs_total",
            &[("outcome", "success")]
        )
        .is_some_and(|n| n >= 1.0),
        "{agent}"
    );
    assert!(
        sample(
            &agent,
            "stx_patch_agent_reports_total",
            &[("outcome", "success")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        sample(&agent, "stx_patch_agent_reboot_pending", &[]),
        Some(0.0)
    );
    assert!(sample(&agent, "stx_patch_agent_installed_packages", &[]).is_some_and(|n| n >= 1.0));

    // Every documented metric is exported, and every exported one documented.
    let mut all = exported(&last);
    all.extend(exported(&agent));
    assert_eq!(
        documented(),
        all,
        "docs/METRICS.md and the exported metrics differ"
    );
}

#[test]
fn the_authenticated_api_serves_metrics_to_operators_only() {
    let site = Site::with_toml(
        "auth_listen = \"127.0.0.1:0\"\nreader_tokens = [\"watch\"]\n",
        &[],
    );
    let url = site.auth_url.clone().unwrap();
    let http = site.http();
    let get = |token: Option<(&str, &str)>| {
        let mut request = http.get(format!("{url}/metrics"));
        if let Some((header, value)) = token {
            request = request.header(header, value);
        }
        request.send().unwrap()
    };
    assert_eq!(get(None).status(), 401);
    assert_eq!(get(Some(("X-Auth-Token", "wrong"))).status(), 401);
    let by_header = get(Some(("X-Auth-Token", "watch")));
    assert_eq!(by_header.status(), 200);
    let bearer = get(Some(("Authorization", "Bearer watch")));
    assert_eq!(bearer.status(), 200);
    assert!(
        bearer
            .text()
            .unwrap()
            .contains("stx_patch_hosts{state=\"all\"} 0")
    );
}

#[test]
fn the_grafana_dashboard_queries_only_documented_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let documented = documented();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let Some(base) = word.strip_prefix("stx_patch_").map(|_| word) else {
                    continue;
                };
                // Histograms are queried by their series.
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| base.strip_suffix(s))
                    .unwrap_or(base);
                assert!(
                    documented.contains(family),
                    "{} queries {word}, which docs/METRICS.md does not list",
                    panel["title"]
                );
                used.insert(family.to_owned());
            }
        }
    }
    assert_eq!(used, documented, "every metric has a panel");
}
