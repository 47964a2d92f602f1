//! Human output: aligned tables, relative times, colour only on a terminal
//! (and never with `NO_COLOR`). JSON output goes through serde instead.

use std::io::IsTerminal;
use std::time::Duration;

use tend_model::{format_duration, Execution, Status};

/// Whether to colour stdout.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A status word, coloured by outcome when `colour` is set.
pub fn status(s: Status, colour: bool) -> String {
    if !colour {
        return s.to_string();
    }
    let code = match s {
        Status::Succeeded => "32",
        Status::Running | Status::Queued => "36",
        Status::Failed | Status::Lost | Status::TimedOut => "31",
        Status::Killed | Status::Cancelled => "33",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// `3s ago`, `5m ago`, `2h ago`, `4d ago`.
pub fn ago(ms: i64) -> String {
    let d = tend_ledger::now_ms().saturating_sub(ms).max(0) as u64;
    format!("{} ago", short(Duration::from_millis(d)))
}

/// A duration in its largest whole unit: `350ms`, `42s`, `5m`, `2h`, `4d`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// How long it ran (or has been running).
pub fn ran_for(e: &Execution) -> String {
    match (e.started_at, e.finished_at) {
        (Some(s), Some(f)) => format_duration(Duration::from_millis((f - s).max(0) as u64)),
        (Some(s), None) => format_duration(Duration::from_millis(
            (tend_ledger::now_ms() - s).max(0) as u64,
        )),
        _ => "-".into(),
    }
}

/// Prints rows as columns separated by two spaces, each as wide as its
/// widest cell. Cells may hold ANSI colour codes, which take no width.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let visible = |s: &str| {
        let mut n = 0;
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                _ => n += 1,
            }
        }
        n
    };
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(visible(c));
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            let pad = widths[i].saturating_sub(visible(&c));
            out.push_str(&c);
            if i != last {
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("tend's types always serialise")
    );
}

/// The one-word result of an execution for tables: exit code, signal, or `-`.
pub fn exit(e: &Execution) -> String {
    match (e.exit_code, e.signal) {
        (_, Some(s)) => format!("sig{s}"),
        (Some(c), None) => c.to_string(),
        _ => "-".into(),
    }
}
