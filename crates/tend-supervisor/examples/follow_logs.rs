//! Follows an execution's output while it runs, from Rust: what
//! `tend logs -f ID` does.
//!
//! ```text
//! cargo run -p tend-supervisor --example follow_logs
//! ```
//!
//! The command writes three lines to stdout and one to stderr, a little
//! apart; each piece is printed as it arrives, with its stream. The home is
//! a temporary folder, removed at the end, and the background supervisor is
//! this same program run again (see `common/mod.rs`). Exits 0 only when
//! every line came, in the order written, and the execution succeeded.

#![forbid(unsafe_code)]

mod common;

use common::{command, Sandbox};
use tend_model::Status;
use tend_supervisor::output::{OutputReader, Piece, Streams};

/// What the command writes, one line every 100 ms.
const SCRIPT: &str = "for i in 1 2 3; do echo \"line $i\"; sleep 0.1; done; echo done >&2";

fn main() -> common::Result<()> {
    common::be_the_supervisor_if_asked();
    let sandbox = Sandbox::new()?;
    let e = sandbox.launch(command(&["sh", "-c", SCRIPT]))?;
    println!("launched {}: {}", e.id, e.status);

    // A reader gives what was written since its last read: both streams,
    // in the order the supervisor read them from the command's pipes.
    let mut reader = OutputReader::new(&e, Streams::Both);
    let mut seen = String::new();
    let mut sink = |pieces: Vec<Piece>| {
        for p in pieces {
            let text = String::from_utf8_lossy(&p.bytes);
            let stream = if p.stream == 0 { "stdout" } else { "stderr" };
            print!("  {stream}: {text}");
            seen.push_str(&text);
        }
        Ok(())
    };
    // Returns once the execution is terminal and all its output was given;
    // woken by new output in logs/ and by the supervisor's pidfd.
    tend_supervisor::follow(&sandbox.ledger, &sandbox.home, &e, &mut reader, &mut sink)?;

    let e = sandbox.ledger.get(&e.id)?;
    println!("{} ended: {}", e.id, e.status);
    let expected = "line 1\nline 2\nline 3\ndone\n";
    if seen != expected || e.status != Status::Succeeded {
        return Err(format!(
            "expected {expected:?} and succeeded, got {seen:?} and {}",
            e.status
        )
        .into());
    }
    println!("ok: followed all 4 lines to the end");
    Ok(())
}
