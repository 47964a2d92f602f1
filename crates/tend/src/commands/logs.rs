//! `tend logs`: an execution's output, both streams in the order written
//! (or one), optionally the last lines, the recent part, with times.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use tend_ledger::{Filter, Ledger};
use tend_model::Execution;
use tend_supervisor::output::{OutputReader, Piece, Streams};

use super::Context;
use crate::cli::LogsArgs;
use crate::print::Stdout;

/// `tend logs [ID]`. A reader that goes away (`| head`) ends it quietly
/// with exit 141, like `cat` killed by SIGPIPE.
pub fn logs(ctx: &Context, args: &LogsArgs) -> Result<i32> {
    if ctx.global.json && args.follow {
        return Err(crate::usage(
            "--json gives the output as one array of records and cannot follow; leave out -f",
        ));
    }
    ctx.reconcile_for_read()?;
    let e = match &args.id {
        Some(id) => ctx.resolve(id)?,
        None => latest(ctx)?,
    };
    let which = match (args.stdout, args.stderr) {
        (true, _) => Streams::Stdout,
        (_, true) => Streams::Stderr,
        _ => Streams::Both,
    };
    let mut reader = OutputReader::new(&e, which);
    let since = args.since.map(tend_ledger::ms_ago);
    let keep = |p: &Piece| since.is_none_or(|s| p.at_ms.is_some_and(|t| t >= s));
    let mut out = Stdout::lock();
    if args.follow {
        // The lines asked for from what is there, then everything new.
        let mut first = reader.read(false)?;
        first.retain(keep);
        let r = write_lines(&mut out, &tail(first, args.tail), args.timestamps);
        out.check(r)?;
        let mut sink = |pieces: Vec<Piece>| write_lines(&mut out, &pieces, args.timestamps);
        let r = tend_supervisor::follow(&ctx.ledger, &ctx.home, &e, &mut reader, &mut sink);
        out.check(r)?;
    } else {
        let mut pieces = reader.read(true)?;
        pieces.retain(keep);
        let pieces = tail(pieces, args.tail);
        if ctx.global.json {
            drop(out);
            crate::output::json(&pieces.iter().map(Record::from).collect::<Vec<_>>())?;
            return Ok(0);
        }
        if pieces.is_empty() && !e.status.is_terminal() {
            ctx.note(format_args!("execution {} has written nothing yet", e.id));
        }
        let r = write_lines(&mut out, &pieces, args.timestamps);
        out.check(r)?;
    }
    let r = out.flush();
    out.check(r)?;
    Ok(0)
}

/// The execution created last.
fn latest(ctx: &Context) -> Result<Execution> {
    let filter = Filter {
        limit: Some(1),
        ..Filter::default()
    };
    match ctx.ledger.list(&filter)?.pop() {
        Some(e) => Ok(e),
        None => anyhow::bail!("there is no execution yet; start one with tend run"),
    }
}

/// The pieces cut to their last `n` lines. A newline separates lines,
/// except the very last byte, which only ends the last line.
fn tail(mut pieces: Vec<Piece>, n: Option<usize>) -> Vec<Piece> {
    let Some(n) = n else { return pieces };
    if n == 0 {
        return Vec::new();
    }
    let mut separators = 0;
    let last = pieces.len().saturating_sub(1);
    for i in (0..pieces.len()).rev() {
        let len = pieces[i].bytes.len();
        for j in (0..len).rev() {
            let final_byte = i == last && j == len - 1;
            if pieces[i].bytes[j] != b'\n' || final_byte {
                continue;
            }
            separators += 1;
            if separators == n {
                let mut kept = pieces.split_off(i);
                kept[0].offset += j as u64 + 1;
                kept[0].bytes.drain(..=j);
                return kept;
            }
        }
    }
    pieces
}

/// Writes the pieces; with `timestamps`, each line begins with the time of
/// the piece it starts in (`-` when unknown).
fn write_lines(out: &mut dyn Write, pieces: &[Piece], timestamps: bool) -> std::io::Result<()> {
    if !timestamps {
        for p in pieces {
            out.write_all(&p.bytes)?;
        }
        return Ok(());
    }
    for p in pieces {
        let stamp = p.at_ms.map_or("-".to_string(), tend_model::format_rfc3339);
        for line in p.bytes.split_inclusive(|b| *b == b'\n') {
            write!(out, "{stamp} ")?;
            out.write_all(line)?;
        }
    }
    Ok(())
}

/// One piece of output in `logs --json`.
#[derive(Serialize)]
struct Record {
    /// `stdout` or `stderr`.
    stream: &'static str,
    /// Where it starts in its stream.
    offset: u64,
    /// When it was written (RFC 3339), if known.
    at: Option<String>,
    /// The bytes as text (invalid UTF-8 replaced).
    text: String,
}

impl From<&Piece> for Record {
    fn from(p: &Piece) -> Record {
        Record {
            stream: if p.stream == 0 { "stdout" } else { "stderr" },
            offset: p.offset,
            at: p.at_ms.map(tend_model::format_rfc3339),
            text: String::from_utf8_lossy(&p.bytes).into_owned(),
        }
    }
}
