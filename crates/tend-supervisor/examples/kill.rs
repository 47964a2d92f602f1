//! Kills executions graceful-then-certain, from Rust: what
//! `tend kill --grace 300ms ID ID` does.
//!
//! ```text
//! cargo run -p tend-supervisor --example kill
//! ```
//!
//! Two long commands: `sleep 60`, which SIGTERM ends, and a shell that
//! ignores SIGTERM (as its `sleep` does, inheriting that), which only the
//! SIGKILL after the grace ends. Both are killed in one call, so their
//! grace periods run side by side; the call returns once both outcomes are
//! committed and their trees are gone. The home is a temporary folder,
//! removed at the end, and the background supervisor is this same program
//! run again (see `common/mod.rs`). Exits 0 only when the first ended
//! `graceful` and the second `forced`.

#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::{command, Sandbox};
use tend_ledger::KillRequest;
use tend_model::{Actor, Execution, KillMethod, Status};
use tend_supervisor::output::{OutputReader, Streams};

fn main() -> common::Result<()> {
    common::be_the_supervisor_if_asked();
    let sandbox = Sandbox::new()?;
    let polite = sandbox.launch(command(&["sleep", "60"]))?;
    let script = "trap '' TERM; echo ready; sleep 60";
    let mut stubborn = command(&["sh", "-c", script]);
    stubborn.name = Some("stubborn".into());
    let stubborn = sandbox.launch(stubborn)?;
    // Running means started, not that the shell has set its trap yet.
    wait_for_output(&stubborn, "ready")?;
    println!(
        "launched {} ({}) and {} ({})",
        polite.id, polite.name, stubborn.id, stubborn.name
    );

    // The request is stored on each row first (audited, it survives this
    // process), then each supervisor is nudged and does the kill itself.
    let req = KillRequest {
        actor: Actor::User(None),
        reason: Some("shown by the kill example".into()),
        force: false,
        grace_ms: Some(300),
    };
    let targets = [polite, stubborn];
    let results = tend_supervisor::kill(&sandbox.ledger, &sandbox.home, &targets, &req)?;

    let mut methods = Vec::new();
    for r in &results {
        let e = &r.execution;
        let method = e.kill_method.map_or("none", KillMethod::as_str);
        println!(
            "{} ({}): {}, {method} in {} ms, {} process(es) signalled: {}",
            e.id,
            e.name,
            e.status,
            e.kill_duration_ms.unwrap_or(0),
            e.processes_signalled.unwrap_or(0),
            e.reason.as_deref().unwrap_or(""),
        );
        methods.push((e.status, e.kill_method));
    }
    let expected = [
        (Status::Killed, Some(KillMethod::Graceful)),
        (Status::Killed, Some(KillMethod::Forced)),
    ];
    if methods != expected {
        return Err(format!("expected {expected:?}, got {methods:?}").into());
    }
    println!("ok: SIGTERM was enough for one, the other needed SIGKILL");
    Ok(())
}

/// Waits (up to 5 s) until `e` has written `text` on stdout.
fn wait_for_output(e: &Execution, text: &str) -> common::Result<()> {
    let mut reader = OutputReader::new(e, Streams::Stdout);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains(text) {
        if Instant::now() > deadline {
            return Err(format!("{} did not write {text:?} within 5 s", e.id).into());
        }
        std::thread::sleep(Duration::from_millis(10));
        for piece in reader.read(false)? {
            seen.extend(piece.bytes);
        }
    }
    Ok(())
}
