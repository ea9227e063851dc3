//! Telling a service manager (systemd with `Type=notify`, or anything speaking its
//! `NOTIFY_SOCKET` protocol) how a daemon is doing: ready once it accepts connections, alive
//! while its runtime runs (the watchdog), stopping when asked. Without `NOTIFY_SOCKET` every
//! call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// The environment is left as it is: the daemons start scripts (restart scripts, health
/// checks) whose notifications the units' `NotifyAccess=main` ignores, and changing the
/// environment of a multi-threaded process is not sound.
const KEEP_ENV: bool = false;

fn notify(state: NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(KEEP_ENV, &[state]) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// The daemon accepts connections.
pub fn ready() {
    notify(NotifyState::Ready);
}

/// The daemon is shutting down.
pub fn stopping() {
    notify(NotifyState::Stopping);
}

/// The daemon reloads (its TLS certificate, on SIGHUP); [`ready`] says when it is done.
pub fn reloading() {
    notify(NotifyState::Reloading);
}

/// When the service manager asked for a watchdog (`WatchdogSec=`), pings it at half its
/// interval from the async runtime, so a runtime that stops making progress is restarted.
pub fn spawn_watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(KEEP_ENV, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify(NotifyState::Watchdog);
        }
    });
}
