//! Launches an execution in the background and waits for it to end, from
//! Rust: what `tend run -d -- sh -c '…'` followed by `tend wait` does.
//!
//! ```text
//! cargo run -p tend-supervisor --example launch_and_wait
//! ```
//!
//! The home is a temporary folder, removed at the end. The background
//! supervisor is this same program run again (see `common/mod.rs`), so no
//! `tend` binary is needed. Exits 0 only when the ledger says what the
//! command did: it failed with exit code 3.

#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{command, Sandbox};
use tend_model::Status;

fn main() -> common::Result<()> {
    common::be_the_supervisor_if_asked();
    let sandbox = Sandbox::new()?;
    println!("home: {}", sandbox.home.root().display());

    // A command that takes a moment and then fails, so that there is
    // something to wait for and an outcome worth reading.
    let e = sandbox.launch(command(&["sh", "-c", "sleep 0.2; exit 3"]))?;
    println!("launched {} ({}): {}", e.id, e.name, e.status);
    println!(
        "  supervisor pid {}, command pid {:?}",
        e.supervisor.pid, e.pid
    );

    // Blocks on the supervisor's pidfd (it exits right after committing the
    // outcome), not on a sleep loop. `Some(timeout)` bounds the wait.
    let done = tend_supervisor::wait_until_done(
        &sandbox.ledger,
        &sandbox.home,
        std::slice::from_ref(&e.id),
        Some(Duration::from_secs(10)),
    )?
    .ok_or("the execution did not end within 10 s")?;
    let e = &done[0];
    let reason = e.reason.as_deref().unwrap_or("");
    println!("{} ended: {} ({reason})", e.id, e.status);
    println!(
        "  exit code {:?}, shell code {}",
        e.exit_code,
        e.shell_code()
    );

    // The events the ledger kept, oldest first.
    for event in sandbox.ledger.events(&e.id)? {
        println!("  event: {} by {}", event.kind, event.actor);
    }

    if e.status != Status::Failed || e.exit_code != Some(3) {
        return Err(format!("expected failed with exit code 3, got {}", e.status).into());
    }
    println!("ok: the ledger recorded exit code 3");
    Ok(())
}
