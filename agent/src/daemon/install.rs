//! Carrying out an install order: the packages to change, downloaded and verified, one
//! transaction, then the in-service restart scripts; the outcome reported either way.

use std::path::PathBuf;
use std::time::Instant;

use futures_util::StreamExt;
use host_state::protocol::RepoIndex;
use host_state::{
    HostDiff, InstallState, InstalledPackage, PackageChange, desired_packages_holding,
};
use sha2::{Digest, Sha256};

use super::link::{MAX_SCRIPT_BYTES, read_bounded};
use super::script_run::{ScriptRun, run_with_limit};
use super::{Agent, now};
use crate::{Transaction, TransactionPackage};

/// Packages downloaded in parallel during an install.
const DOWNLOADS_AT_ONCE: usize = 4;

/// How often the health checks run again during a soak.
const SOAK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl Agent {
    pub(super) async fn set_state(&self, install_state: InstallState, error: Option<String>) {
        let mut state = self.state.lock().await;
        state.install_state = install_state;
        state.last_error = error;
        self.save(&state);
    }

    /// install-rejected goes back to idle once the host is locked, or after 60 s.
    pub(super) async fn reset_rejection(&self, locked: bool) {
        let mut state = self.state.lock().await;
        if state.install_state == InstallState::InstallRejected
            && (locked
                || state
                    .rejected_at
                    .is_some_and(|t| now().saturating_sub(t) >= 60))
        {
            state.install_state = InstallState::Idle;
            state.last_error = None;
            state.rejected_at = None;
            self.save(&state);
        }
    }

    /// Brings the host to its desired package set; records the outcome.
    pub async fn install(&self, force: bool, locked: bool, seq: u64) -> Result<(), String> {
        self.install_soaking(force, locked, seq, std::time::Duration::ZERO)
            .await
    }

    /// [`Agent::install`], the health checks (when configured) then to keep passing for
    /// `soak` before the install counts as done.
    pub async fn install_soaking(
        &self,
        force: bool,
        locked: bool,
        seq: u64,
        soak: std::time::Duration,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut outcome = self.install_inner(force, locked).await;
        if let (Ok((rebooting, brought)), Some(dir)) = (&outcome, &self.config.health_dir)
            && !brought.is_empty()
        {
            let brought = brought.clone();
            if *rebooting {
                // The new packages are in use only once the host has rebooted: the checks
                // run then (see `after_boot`).
                self.check_after_boot(brought, soak).await;
            } else {
                outcome = self.health_gate(dir, brought, locked, soak, false).await;
            }
        }
        self.record_outcome(seq, started, outcome).await
    }

    /// Records how an install order ended (what the next report carries).
    async fn record_outcome(
        &self,
        seq: u64,
        started: Instant,
        outcome: Result<(bool, std::collections::BTreeSet<String>), (InstallState, String)>,
    ) -> Result<(), String> {
        let result = outcome.as_ref().map(|_| ()).map_err(|(_, m)| m.clone());
        self.metrics.install_finished(started, result.is_ok());
        let mut state = self.state.lock().await;
        state.installing = false;
        state.install_done = state.install_done.max(seq);
        match outcome {
            Ok((rebooting, _)) => {
                state.install_state = InstallState::Idle;
                state.last_error = None;
                state.reboot_pending |= rebooting;
                tracing::info!("install finished in {:?}", started.elapsed());
            }
            Err((install_state, message)) => {
                tracing::warn!("install {}: {message}", install_state.as_str());
                if install_state == InstallState::InstallRejected {
                    state.rejected_at = Some(now());
                }
                state.install_state = install_state;
                state.last_error = Some(message);
            }
        }
        self.save(&state);
        result
    }

    /// Remembers that the health checks are due once the host has rebooted into `brought`.
    async fn check_after_boot(
        &self,
        brought: std::collections::BTreeSet<String>,
        soak: std::time::Duration,
    ) {
        use host_state::protocol::{HealthReport, HealthState};
        let mut state = self.state.lock().await;
        state.health_after_boot = Some(super::BootHealth {
            boot_id: state.boot_id.clone(),
            patches: brought,
            soak_secs: soak.as_secs(),
        });
        state.health = Some(HealthReport {
            state: HealthState::AfterReboot,
            detail: "the health checks run after the reboot".into(),
            rolled_back: Default::default(),
        });
        self.save(&state);
    }

    /// After a boot: runs the health checks a reboot-required install left due. A failing
    /// required check rolls the host back from those patches and reboots it again, so that
    /// it runs the versions it had; the install then counts as failed, with the check's words.
    pub(super) async fn after_boot(&self) {
        let due = {
            let state = self.state.lock().await;
            match &state.health_after_boot {
                Some(due) if due.boot_id != state.boot_id => due.clone(),
                _ => return,
            }
        };
        let started = Instant::now();
        let outcome = match &self.config.health_dir {
            Some(dir) => {
                let soak = std::time::Duration::from_secs(due.soak_secs);
                self.health_gate(dir, due.patches, true, soak, true).await
            }
            // Configured away since the install: nothing to check.
            None => Ok((false, Default::default())),
        };
        let reboot_again = {
            // Cleared here, saved with the outcome: one write.
            let mut state = self.state.lock().await;
            state.health_after_boot = None;
            outcome.is_err() && state.reboot_pending
        };
        let _ = self.record_outcome(0, started, outcome).await;
        if reboot_again {
            self.restart_host("back to the versions before the rolled back patches")
                .await;
        }
    }

    /// Runs the health checks after an install that brought `brought` is in use (at once for
    /// an in-service one, `after_reboot` for a reboot-required one). A failing required check
    /// holds the host back from those patches and installs again (back to the versions before
    /// them); the install then counts as failed, with the check's words. A rollback that
    /// needs a reboot leaves the reboot pending.
    async fn health_gate(
        &self,
        dir: &std::path::Path,
        brought: std::collections::BTreeSet<String>,
        locked: bool,
        soak: std::time::Duration,
        after_reboot: bool,
    ) -> Result<(bool, std::collections::BTreeSet<String>), (InstallState, String)> {
        use host_state::protocol::{HealthReport, HealthState};
        let limit = self.config.script_timeout;
        let mut verdict = super::health::run_checks(dir, &self.config.root, limit).await;
        // The soak: the checks run again every few seconds until it is over, and must keep
        // passing (a warning is kept, a failure ends it).
        let soak_end = Instant::now() + soak;
        while !matches!(verdict, super::health::Verdict::Failed(_)) && Instant::now() < soak_end {
            let pause = soak_end
                .saturating_duration_since(Instant::now())
                .min(SOAK_INTERVAL);
            tokio::time::sleep(pause).await;
            match super::health::run_checks(dir, &self.config.root, limit).await {
                super::health::Verdict::Failed(f) => {
                    verdict = super::health::Verdict::Failed(format!("{f} (during the soak)"))
                }
                super::health::Verdict::Warned(w) => verdict = super::health::Verdict::Warned(w),
                super::health::Verdict::Passed => {}
            }
        }
        let (state, detail) = match verdict {
            super::health::Verdict::Passed => (HealthState::Passed, String::new()),
            super::health::Verdict::Warned(w) => (HealthState::Warned, w),
            super::health::Verdict::Failed(f) => (HealthState::Failed, f),
        };
        let rolled_back = if state == HealthState::Failed {
            brought.clone()
        } else {
            Default::default()
        };
        {
            let mut agent_state = self.state.lock().await;
            agent_state.health = Some(HealthReport {
                state,
                detail: detail.clone(),
                rolled_back: rolled_back.clone(),
            });
            agent_state.held_patches.extend(rolled_back.iter().cloned());
            self.save(&agent_state);
        }
        if state != HealthState::Failed {
            if state == HealthState::Warned {
                tracing::warn!("health checks warn: {detail}");
            }
            return Ok((false, brought));
        }
        let patches: Vec<&str> = rolled_back.iter().map(String::as_str).collect();
        tracing::warn!("health check failed, rolling back from {patches:?}: {detail}");
        let when = if after_reboot {
            " (after the reboot)"
        } else {
            ""
        };
        let rollback = match self.install_inner(true, locked).await {
            Ok((true, _)) => {
                self.state.lock().await.reboot_pending = true;
                format!("rolled back from {} and rebooting", patches.join(", "))
            }
            Ok((false, _)) => format!("rolled back from {}", patches.join(", ")),
            Err((_, e)) => format!("the rollback from {} failed too: {e}", patches.join(", ")),
        };
        Err((
            InstallState::InstallFailed,
            format!("health check {detail}{when}; {rollback}"),
        ))
    }

    /// Installs the desired set; returns whether a reboot is needed, and the patches whose
    /// packages it installed or upgraded.
    pub(super) async fn install_inner(
        &self,
        force: bool,
        locked: bool,
    ) -> Result<(bool, std::collections::BTreeSet<String>), (InstallState, String)> {
        let failed = |m: String| (InstallState::InstallFailed, m);
        let release = &self.config.release;
        let feed: RepoIndex = self
            .retrying("the feed index", || self.fetch_index("feed"))
            .await
            .map_err(failed)?;
        let repo: RepoIndex = self
            .retrying("the repo index", || self.fetch_index("repo"))
            .await
            .map_err(failed)?;
        let installed = self
            .installed()
            .map_err(|e| failed(format!("cannot list installed packages: {e}")))?;
        let held = self.state.lock().await.held_patches.clone();
        let desired =
            desired_packages_holding(self.config.personality, &feed, &repo, &installed, &held);
        let diff = HostDiff::compute(&installed, &desired);
        if diff.is_empty() {
            return Ok((false, Default::default()));
        }
        let brought: std::collections::BTreeSet<String> = diff
            .changes
            .iter()
            .filter_map(|c| match c {
                PackageChange::Missing(to) | PackageChange::Upgrade { to, .. } => to.patch.clone(),
                _ => None,
            })
            .collect();
        let rr = diff.requires_reboot();
        if rr && !locked && !force {
            return Err((InstallState::InstallRejected, "Node must be locked.".into()));
        }
        {
            let mut state = self.state.lock().await;
            state.installing = true;
            self.save(&state);
        }
        let cache = self.config.state_dir.join("cache");
        let _ = tokio::fs::remove_dir_all(&cache).await;
        tokio::fs::create_dir_all(&cache)
            .await
            .map_err(|e| failed(format!("{}: {e}", cache.display())))?;
        let mut tx = Transaction::default();
        let mut downloads = Vec::new();
        for (n, change) in diff.changes.iter().enumerate() {
            let to = match change {
                PackageChange::Missing(to)
                | PackageChange::Upgrade { to, .. }
                | PackageChange::Downgrade { to, .. } => to,
                PackageChange::Remove(from) => {
                    tx.remove.push((from.id.name.clone(), from.id.arch.clone()));
                    continue;
                }
            };
            let area = if to.from_base { "feed" } else { "repo" };
            // Numbered, not named after the package: names come from the controller's index
            // and must never choose a path on this host.
            let file = cache.join(format!("{n}.rpm"));
            let path = format!("{area}/rel-{release}/{}", to.path);
            downloads.push((
                to.id.name.clone(),
                to.size,
                to.sha256.clone(),
                path,
                file.clone(),
            ));
            tx.install.push(TransactionPackage {
                package: InstalledPackage {
                    id: to.id.clone(),
                    patch: to.patch.clone(),
                    reboot_required: to.reboot_required,
                },
                rpm: file,
            });
        }
        // A few downloads at a time: one stream rarely fills the link or the controller's disk.
        let fetches: Vec<_> = downloads
            .into_iter()
            .map(|(name, size, sha256, path, file)| async move {
                self.retrying(&path, || self.download(&path, &file, size, &sha256))
                    .await
                    .map_err(|e| failed(format!("{name}: {e}")))
            })
            .collect();
        let mut pending = futures_util::stream::iter(fetches).buffer_unordered(DOWNLOADS_AT_ONCE);
        while let Some(result) = pending.next().await {
            result?;
        }
        drop(pending);
        if let Some(keyring) = &self.rpm_keyring {
            // Every package proves itself before anything is written to the root.
            let keyring = keyring.clone();
            let files: Vec<(String, PathBuf)> = tx
                .install
                .iter()
                .map(|p| (p.package.id.name.clone(), p.rpm.clone()))
                .collect();
            tokio::task::spawn_blocking(move || {
                for (name, file) in &files {
                    keyring
                        .verify_file(file)
                        .map_err(|e| format!("package {name}: RPM signature check failed: {e}"))?;
                }
                Ok::<(), String>(())
            })
            .await
            .map_err(|e| failed(format!("signature check: {e}")))?
            .map_err(failed)?;
        }
        let installer = self.installer.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut installer = match installer.lock() {
                Ok(i) => i,
                Err(p) => p.into_inner(),
            };
            installer.apply(&tx)
        })
        .await
        .map_err(|e| failed(format!("install task: {e}")))?;
        let _ = tokio::fs::remove_dir_all(&cache).await;
        result.map_err(|e| failed(e.to_string()))?;
        if !rr {
            // In-service patches whose packages this install changed run their restart
            // script now; a failing script fails the install.
            let involved: std::collections::BTreeSet<&str> = diff
                .changes
                .iter()
                .filter_map(|c| match c {
                    PackageChange::Missing(to)
                    | PackageChange::Upgrade { to, .. }
                    | PackageChange::Downgrade { to, .. } => to.patch.as_deref(),
                    PackageChange::Remove(_) => None,
                })
                .collect();
            for script in repo
                .restart_scripts
                .iter()
                .filter(|s| involved.contains(s.patch.as_str()))
            {
                self.run_restart_script(release, script)
                    .await
                    .map_err(failed)?;
            }
        }
        Ok((rr, brought))
    }

    /// Downloads a restart script, checks it against the signed sha256, runs it with the
    /// root in `STX_PATCH_ROOT`.
    pub(super) async fn run_restart_script(
        &self,
        release: &str,
        script: &host_state::protocol::RestartScriptEntry,
    ) -> Result<(), String> {
        let dir = self.config.state_dir.join("scripts");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| e.to_string())?;
        if script.name.contains('/') || script.name.starts_with('.') {
            return Err(format!("bad restart script name {:?}", script.name));
        }
        let path = dir.join(&script.name);
        let remote = format!("repo/rel-{release}/scripts/{}", script.name);
        let bytes = self
            .retrying(&remote, || async {
                let response = self
                    .send(|http, base| http.get(format!("{base}/agent/v1/{remote}")))
                    .await?;
                read_bounded(response, MAX_SCRIPT_BYTES, &remote).await
            })
            .await?;
        if hex::encode(Sha256::digest(&bytes)) != script.sha256 {
            return Err(format!(
                "restart script {} does not match its signed sha256",
                script.name
            ));
        }
        tokio::fs::write(&path, &bytes)
            .await
            .map_err(|e| e.to_string())?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg(&path)
            .env("STX_PATCH_ROOT", &self.config.root)
            .env("STX_PATCH_ID", &script.patch)
            .current_dir(&self.config.root);
        let ran = run_with_limit(command, self.config.script_timeout).await;
        let _ = tokio::fs::remove_file(&path).await;
        let output = match ran {
            ScriptRun::Finished(output) => output,
            ScriptRun::Failed(e) => {
                return Err(format!("cannot run restart script {}: {e}", script.name));
            }
            ScriptRun::TimedOut => {
                return Err(format!(
                    "restart script {} of {} did not finish within {} s and was stopped (--script-timeout)",
                    script.name,
                    script.patch,
                    self.config.script_timeout.as_secs()
                ));
            }
        };
        if output.status.success() {
            tracing::info!(
                "restart script {} of {} succeeded",
                script.name,
                script.patch
            );
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let tail = crate::builtin::output_tail(&text, 500);
            Err(format!(
                "restart script {} of {} failed ({}): {}",
                script.name,
                script.patch,
                output.status,
                tail.trim()
            ))
        }
    }
}
