//! The slow-client acceptance as a test, at its full size: 2,000 connections that never
//! speak and 600 uploads dripping a byte a second, all at once, while an operator applies,
//! removes and queries and 50 enrolled hosts report over TLS. Every operation must be
//! answered (each request has a hang guard, not a timing goal: the latencies are measured in
//! release builds by `bench_slow_clients`), the idle connections must be closed by the
//! server's head timeout, and every dripping upload must be cut off or refused.

mod common;
#[path = "../../examples/support/slow_clients.rs"]
mod slow_clients;

use std::process::{Command, Stdio};
use std::time::Duration;

const IDLE: usize = 2000;
const DRIPS: usize = 600;
const HOSTS: usize = 50;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn operators_and_hosts_are_served_among_idle_connections_and_dripping_uploads() {
    slow_clients::raise_open_files();
    let (dir, key) = common::work_dir(&[]);
    // Long enough that every slow client is still there while the operations run.
    let setup = slow_clients::prepare(
        dir.path(),
        &key,
        "head_timeout_secs = 10\nbody_idle_timeout_secs = 10\nbody_min_bytes_per_sec = 1024",
    )
    .unwrap();
    let (child, addrs) = common::spawn_with_addresses(
        Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"))
            .arg("--print-addresses")
            .args(&setup.args)
            .env("STX_PATCH_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let _controller = Killed(child);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let hang_guard = Duration::from_secs(10);
        let site = slow_clients::Site::new(&setup, &addrs, Some(hang_guard)).unwrap();
        let hosts = site.populate(&setup, HOSTS).await.unwrap();

        let idle = site.open_idle(IDLE).await.unwrap();
        let drips = site.open_drips(&setup, DRIPS).unwrap();
        let served = site.operate(&hosts, 4).await.unwrap();
        assert_eq!(served.mutate.len(), 4);
        assert_eq!(served.query.len(), 4);
        assert_eq!(served.hosts.len(), 4);
        assert_eq!(served.reports.len(), 4 * HOSTS);
        let still_open = idle.iter().filter(|t| !t.is_finished()).count();
        assert_eq!(
            still_open, IDLE,
            "the operations ran while every idle connection was open"
        );
        eprintln!(
            "worst under load: apply/remove {:.0} ms, query {:.0} ms, query_hosts {:.0} ms, report {:.0} ms",
            worst(&served.mutate),
            worst(&served.query),
            worst(&served.hosts),
            worst(&served.reports)
        );

        // The server closes every idle connection (head timeout 10 s), none is left open.
        for t in idle {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("an idle connection was never closed")
                .unwrap();
        }
        // Every drip is refused (too many uploads at once) or cut off for its pace.
        let (mut refused, mut cut) = (0, 0);
        for t in drips {
            let answer = tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("a dripping upload was kept")
                .unwrap();
            if answer.contains("max_concurrent_uploads") {
                refused += 1;
            } else {
                assert!(
                    answer.is_empty()
                        || answer.contains("slower than")
                        || answer.contains("stalled"),
                    "{answer}"
                );
                cut += 1;
            }
        }
        assert_eq!(refused + cut, DRIPS);
        eprintln!("dripping uploads: {refused} refused (too many at once), {cut} cut off for their pace");
        assert!(refused > 0 && cut > 0, "refused {refused}, cut {cut}");
    });
}

fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max) * 1000.0
}
