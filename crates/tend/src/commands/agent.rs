//! No unprotected execution: a home that launches on a shared ledger while
//! no agent of its runs starts one first (`tend serve` in the background,
//! its API on loopback on a free port), so that every execution is covered
//! by a lease. It is recorded in the daemon file as started by tend, and a
//! `tend serve` started later for the home replaces it. On SQLite nothing
//! changes: the kernel says who is alive.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Context;

/// How long a launch waits for the agent it started to hold its lease.
const START_WITHIN: Duration = Duration::from_secs(20);

/// Starts this home's agent when the ledger is shared and none runs, and
/// waits until it holds its lease (it writes its daemon file only then).
pub fn ensure(ctx: &Context) -> Result<()> {
    if !ctx.ledger.shared() || tend_supervisor::retry::daemon_running(&ctx.home) {
        return Ok(());
    }
    let root = ctx.home.root();
    let log_path = root.join("agent.log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let _ = writeln!(
        log,
        "{} tend starts this home's agent: a launch on a shared ledger needs a lease",
        tend_model::format_rfc3339(tend_ledger::now_ms())
    );
    let exe = std::env::current_exe().context("cannot find the tend executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--started-by-tend"])
        .env("TEND_HOME", root)
        // In the environment, not in argv: the URL may hold a password.
        .env("TEND_STORE", ctx.config.store()?.reopen_form())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    tend_proc::spawn::detach_session(&mut cmd);
    let mut child = cmd.spawn().context("cannot start this home's agent")?;
    // It forks away at once: the process to wait for is the one between.
    let _ = child.wait();
    let deadline = Instant::now() + START_WITHIN;
    while Instant::now() < deadline {
        if tend_supervisor::retry::daemon_running(&ctx.home) && daemon_file_written(ctx) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!(
        "this home's agent did not start within {}s (see {}); a launch on a shared ledger needs one, so nothing was started",
        START_WITHIN.as_secs(),
        log_path.display()
    )
}

fn daemon_file_written(ctx: &Context) -> bool {
    tend_supervisor::read_small(&ctx.home.root().join("daemon.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["pid"].is_u64())
}
