//! What `tend run` does when its key names another execution: attach to
//! it, skip, refuse, or reuse its result — and always say which, in one
//! line (and in the `dedup` field with `--json`).

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use tend_ledger::Ledger;
use tend_model::Execution;
use tend_supervisor::output::{OutputReader, Piece, Streams};
use tend_supervisor::OnDuplicate;

use super::Context;
use crate::output;

/// An execution as `run --json` prints it when the key decided.
#[derive(Serialize)]
struct Decided<'a> {
    #[serde(flatten)]
    execution: &'a Execution,
    /// `attached`, `skipped`, `refused` or `reused`.
    dedup: &'static str,
}

/// The key's holder `e` (or its reusable result) stands for this run.
/// Returns the exit code: the holder's for an attach or a reuse, 0 for a
/// skip, 1 for a refusal.
pub fn existing(ctx: &Context, e: Execution, mode: OnDuplicate, detached: bool) -> Result<i32> {
    let key = output::esc(e.key.as_deref().unwrap_or_default()).into_owned();
    let (e, dedup, code) = if e.status.is_terminal() {
        let ended = e
            .finished_at
            .map_or(String::new(), |t| format!(" {}", output::ago(t)));
        ctx.note(format_args!(
            "key '{key}': reusing execution {}, which {}{ended}",
            e.id, e.status
        ));
        let code = e.shell_code();
        (e, "reused", code)
    } else {
        match mode {
            OnDuplicate::Skip => {
                ctx.note(format_args!(
                    "key '{key}' is held by execution {} ({}); skipped",
                    e.id, e.status
                ));
                (e, "skipped", 0)
            }
            OnDuplicate::Fail => {
                note!(
                    "key '{key}' is held by execution {} ({}); not started (--on-duplicate fail)",
                    e.id,
                    e.status
                );
                (e, "refused", 1)
            }
            _ if detached => {
                ctx.note(format_args!(
                    "key '{key}' is held by execution {} ({})",
                    e.id, e.status
                ));
                (e, "attached", 0)
            }
            _ => {
                ctx.note(format_args!(
                    "key '{key}' is held by execution {}; following it (Ctrl-C stops following and leaves it running)",
                    e.id
                ));
                let done = attach(ctx, &e)?;
                if let Some(line) = output::ending(&done) {
                    ctx.note(line);
                }
                let code = done.shell_code();
                (done, "attached", code)
            }
        }
    };
    if ctx.global.json {
        output::json(&Decided {
            execution: &e,
            dedup,
        })?;
    } else if detached {
        say!("{}", e.id)?;
    }
    Ok(code)
}

/// Follows the holder's output to its end (stdout to stdout, stderr to
/// stderr; with `--json`, both to stderr) and returns its final row.
fn attach(ctx: &Context, e: &Execution) -> Result<Execution> {
    let mut reader = OutputReader::new(e, Streams::Both);
    let json = ctx.global.json;
    let mut sink = |pieces: Vec<Piece>| -> std::io::Result<()> {
        for p in pieces {
            if p.stream == 0 && !json {
                let mut out = std::io::stdout().lock();
                out.write_all(&p.bytes)?;
                out.flush()?;
            } else {
                std::io::stderr().lock().write_all(&p.bytes)?;
            }
        }
        Ok(())
    };
    tend_supervisor::follow(&ctx.ledger, &ctx.home, e, &mut reader, &mut sink)?;
    Ok(ctx.ledger.get(&e.id)?)
}
