//! The `tend` binary: parses the command line and dispatches; the work is
//! done by the library crates. `main` turns any error into one sentence on
//! stderr and an exit code (2 for usage errors, 1 otherwise), and a closed
//! stdout into a quiet exit 141 (see [`mod@print`]).

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

#[macro_use]
mod print;

mod cli;
mod commands;
mod config;
mod output;

use clap::Parser;
use tend_model::limits::{check_text, MAX_PROGRESS_BYTES};

use crate::cli::{Cli, Cmd};
use crate::commands::{Access, Context};

/// A mistake in what the user typed: reported like clap's own, exit 2.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Builds a usage error.
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| parse_error(e));
    tend_supervisor::watchdog::install();
    let code = match dispatch(&cli) {
        Ok(code) => code,
        Err(e) if print::is_closed(&e) => print::CLOSED_EXIT,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            note!("{}", output::esc(&dedupe(msg).join(": ")));
            exit_code(&e)
        }
    };
    std::process::exit(code);
}

/// Says clap's own usage mistakes the way tend says its own: `tend: `, one
/// sentence (what clap writes before its tips and usage), exit 2. Help and
/// version are printed in full, as clap does.
fn parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.render().to_string();
    let sentence: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let sentence = sentence.join(" ");
    let sentence = sentence.strip_prefix("error: ").unwrap_or(&sentence);
    note!("{}", output::esc(sentence));
    std::process::exit(2)
}

fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Cmd::Supervise => return Ok(tend_supervisor::detach::supervise_from_stdin()),
        Cmd::Completions(a) => return commands::completions(a.shell),
        Cmd::Man(a) => return commands::man(a.command.as_deref()),
        Cmd::Alert(cli::AlertCmd::Test) => return commands::alert::test(cli.global.json),
        _ => {}
    }
    let access = match cli.command {
        Cmd::Ps | Cmd::Top | Cmd::List(_) | Cmd::Show(_) | Cmd::Logs(_) | Cmd::Wait(_) => {
            Access::Read
        }
        Cmd::Health | Cmd::Doctor | Cmd::Stats(_) => Access::Read,
        Cmd::Job(cli::JobCmd::List | cli::JobCmd::Show(_)) => Access::Read,
        _ => Access::Write,
    };
    // A foreground run is its command's supervisor: see `drop_secrets`.
    let foreground = match &cli.command {
        Cmd::Run(a) => !a.detach,
        Cmd::Job(cli::JobCmd::Run(a)) => !a.detach,
        _ => false,
    };
    if foreground {
        commands::run::drop_secrets()?;
    }
    let mut ctx = match Context::open(&cli.global, access) {
        Ok(ctx) => ctx,
        Err(e) if matches!(cli.command, Cmd::Health) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            say!("unhealthy: {}", output::esc(&dedupe(msg).join(": ")))?;
            return Ok(2);
        }
        Err(e) => return Err(e),
    };
    if !foreground {
        // Waiters wake for every host's transitions; a supervisor (which
        // forks, and must stay single-threaded) only announces.
        ctx.listen_across_hosts()?;
    }
    match &cli.command {
        Cmd::Run(a) => commands::run::run(&ctx, a),
        Cmd::Ps => commands::query::ps(&ctx),
        Cmd::Top => commands::top::top(&ctx),
        Cmd::List(a) => commands::query::list(&ctx, a),
        Cmd::Show(a) => commands::show::show(&ctx, a),
        Cmd::Logs(a) => commands::logs::logs(&ctx, a),
        Cmd::Wait(a) => commands::wait::wait(&ctx, a),
        Cmd::Kill(a) => commands::kill::kill(&ctx, a),
        Cmd::Reap(a) => commands::reap::reap(&ctx, a),
        Cmd::Heartbeat(a) => {
            if let Some(p) = &a.progress {
                check_text("progress", p, MAX_PROGRESS_BYTES).map_err(|e| usage(e.to_string()))?;
            }
            commands::health::heartbeat(&ctx, a)
        }
        Cmd::Health => commands::health::health(&ctx),
        Cmd::Stats(a) => commands::stats::stats(&ctx, a),
        Cmd::Prune(a) => commands::prune::prune(&ctx, a),
        Cmd::Serve(a) => commands::serve::serve(&ctx, a),
        Cmd::Doctor => commands::health::doctor(&ctx),
        Cmd::Job(c) => commands::job::job(&ctx, c),
        Cmd::Supervise | Cmd::Completions(_) | Cmd::Man(_) | Cmd::Alert(_) => {
            unreachable!("handled before the ledger is opened")
        }
    }
}

/// Usage mistakes (a malformed id, an ambiguous prefix, a missing
/// directory, an unknown or duplicate job) exit 2, like clap's own; everything else exits 1, an id that
/// matches nothing ("not found") too.
fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.is::<Usage>() {
            return 2;
        }
        if let Some(l) = cause.downcast_ref::<tend_ledger::Error>() {
            if matches!(
                l,
                tend_ledger::Error::Ambiguous { .. }
                    | tend_ledger::Error::BadId(_)
                    | tend_ledger::Error::JobExists(_)
            ) {
                return 2;
            }
        }
        if let Some(tend_supervisor::Error::Ledger(
            tend_ledger::Error::Ambiguous { .. }
            | tend_ledger::Error::BadId(_)
            | tend_ledger::Error::JobExists(_),
        )) = cause.downcast_ref::<tend_supervisor::Error>()
        {
            return 2;
        }
    }
    1
}

/// thiserror's `transparent` and anyhow's context can repeat a message;
/// print each distinct part once.
fn dedupe(parts: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if !out.iter().any(|o| o.contains(&p)) {
            out.push(p);
        }
    }
    out
}
