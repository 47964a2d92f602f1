//! Human output: aligned tables, relative times, colour only on a terminal
//! (and never with `NO_COLOR`), and text from outside tend escaped so that
//! it cannot act on the terminal ([`esc`]). JSON output goes through serde
//! instead. Writing is [`crate::print`]'s job.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::path::Path;
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

/// Text tend did not write (a name, a label, a reason, progress), made
/// safe for a terminal: control characters and line-breaking or reordering
/// characters are written as escapes (`\x1b`, `\n`, …; see
/// [`tend_model::text`]). Every human printer passes such text through this
/// or [`Cell::text`]; JSON output is exact instead.
pub fn esc(s: &str) -> Cow<'_, str> {
    tend_model::text::escape(s)
}

/// A path for a person: [`esc`], and bytes that are not UTF-8 as `\xNN`.
pub fn path(p: &Path) -> Cow<'_, str> {
    tend_model::text::escape_path(p)
}

/// Longest cell shown in a column that is not the last: a longer one is
/// cut, so that one long name cannot pad every row (`show` and `--json`
/// give it whole).
const MAX_CELL: usize = 64;

/// The number of leading characters of escaped text `s` to keep so that at
/// most `max` are kept and no escape (`\n`, `\x1b`, `\u{202e}`) is cut in
/// half: a cut escape would read as other text.
fn escape_boundary(s: &str, max: usize) -> usize {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let len = match (chars[i], chars.get(i + 1)) {
            ('\\', Some('u')) => chars[i..]
                .iter()
                .position(|c| *c == '}')
                .map_or(1, |p| p + 1),
            ('\\', Some('x')) => 4,
            ('\\', Some(_)) => 2,
            _ => 1,
        };
        if i + len > max {
            return i;
        }
        i += len;
    }
    chars.len().min(max)
}

/// One cell of a [`table`]: escaped text, or a status word that may carry
/// colour codes (which take no width).
pub struct Cell {
    shown: String,
    width: usize,
    plain: bool,
}

impl Cell {
    /// Text, escaped with [`esc`].
    pub fn text(s: &str) -> Cell {
        Cell::escaped(esc(s).into_owned())
    }

    /// A path, escaped with [`path`].
    pub fn path(p: &Path) -> Cell {
        Cell::escaped(path(p).into_owned())
    }

    fn escaped(shown: String) -> Cell {
        Cell {
            width: shown.chars().count(),
            shown,
            plain: true,
        }
    }

    /// A status word, coloured when `colour` is set.
    pub fn status(s: Status, colour: bool) -> Cell {
        Cell {
            width: s.to_string().len(),
            shown: status(s, colour),
            plain: false,
        }
    }

    fn cut(mut self) -> Cell {
        if self.plain && self.width > MAX_CELL {
            let keep = escape_boundary(&self.shown, MAX_CELL - 1);
            self.shown = self.shown.chars().take(keep).collect();
            self.shown.push('…');
            self.width = keep + 1;
        }
        self
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::text(&s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::text(s)
    }
}

/// Prints rows as columns separated by two spaces, each as wide as its
/// widest cell.
pub fn table(header: &[&str], rows: Vec<Vec<Cell>>) -> anyhow::Result<()> {
    let last = header.len() - 1;
    let rows: Vec<Vec<Cell>> = std::iter::once(header.iter().map(|h| Cell::text(h)).collect())
        .chain(rows)
        .map(|r| {
            r.into_iter()
                .enumerate()
                .map(|(i, c)| if i == last { c } else { c.cut() })
                .collect()
        })
        .collect();
    let mut widths = vec![0; header.len()];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.width);
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(&c.shown);
            if i != last {
                line.push_str(&" ".repeat(widths[i].saturating_sub(c.width) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    crate::print::text(&out)
}

/// Prints `key  value` lines, the keys right-aligned.
pub fn fields(fields: Vec<(&str, Cell)>) -> anyhow::Result<()> {
    let w = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{k:>w$}  {}\n", v.shown));
    }
    crate::print::text(&out)
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(v).expect("tend's types always serialise");
    s.push('\n');
    crate::print::text(&s)
}

/// A size in its largest unit: `512B`, `3K`, `1.5M`, `2.00G`.
pub fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n}B"),
        1024..=1_048_575 => format!("{:.0}K", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1}M", n as f64 / 1_048_576.0),
        _ => format!("{:.2}G", n as f64 / 1_073_741_824.0),
    }
}

/// The one-word result of an execution for tables: exit code, signal, or `-`.
pub fn exit(e: &Execution) -> String {
    match (e.exit_code, e.signal) {
        (_, Some(s)) => format!("sig{s}"),
        (Some(c), None) => c.to_string(),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod cut_tests {
    use super::escape_boundary;

    #[test]
    fn a_cell_is_never_cut_inside_an_escape() {
        let s = format!("{}\\u{{202e}}tail", "a".repeat(60));
        assert_eq!(escape_boundary(&s, 63), 60);
        assert_eq!(escape_boundary("ab\\x1bcd", 3), 2);
        assert_eq!(escape_boundary("abcdef", 3), 3);
    }
}

/// argv written so that it could be pasted into a shell: bare when that is
/// safe, in single quotes, or — when it holds a control character — in
/// bash's `$'…'`, whose escapes leave nothing for the terminal to act on.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else if !a.chars().any(tend_model::text::needs_escape) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                ansi_c_quoted(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` as bash's `$'…'` reads it back.
fn ansi_c_quoted(a: &str) -> String {
    let mut out = String::from("$'");
    for c in a.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            c if !tend_model::text::needs_escape(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_controls_are_quoted_for_bash_and_hold_no_control() {
        let argv = ["echo".to_string(), "a b".into(), "x\x1b[31m\n'".into()];
        assert_eq!(command_line(&argv), r"echo 'a b' $'x\x1b[31m\n\''");
        assert_eq!(command_line(&["\u{202e}".into()]), r"$'\u202e'");
    }
}

/// How an attempt that is retried ended, and when its next one starts:
/// `attempt 1 failed (exit 1); attempt 2 of 4 in 1.0s, as execution abcd1234`.
pub fn retrying(ended: &Execution, next: &Execution) -> String {
    let how = match (ended.status, ended.exit_code) {
        (Status::Failed, Some(code)) => format!("failed (exit {code})"),
        _ => format!(
            "{}: {}",
            ended.status,
            esc(ended.reason.as_deref().unwrap_or("no reason recorded"))
        ),
    };
    let wait = next
        .start_after
        .map(|at| (at - tend_ledger::now_ms()).max(0) as u64)
        .unwrap_or(0);
    format!(
        "attempt {} {how}; attempt {} of {} in {}, as execution {}",
        ended.attempt.unwrap_or(1),
        next.attempt.unwrap_or(2),
        next.retries + 1,
        short(Duration::from_millis(wait)),
        next.id
    )
}

/// The one line a person is owed when tend, not the command, ended an
/// execution: why, and what the kill took (`timed out after 1s; killed 3
/// processes gracefully in 4ms`). `None` when the command ended by itself.
pub fn ending(e: &Execution) -> Option<String> {
    let why = esc(e.reason.as_deref().unwrap_or("ended by tend")).into_owned();
    let kill = match (e.kill_method, e.processes_signalled) {
        (Some(m), Some(n)) if n > 0 => {
            let how = match m {
                tend_model::KillMethod::Forced => "with SIGKILL after the grace",
                _ => "gracefully",
            };
            let took = e
                .kill_duration_ms
                .map(|ms| format!(" in {}", short(Duration::from_millis(ms))))
                .unwrap_or_default();
            let s = if n == 1 { "" } else { "es" };
            format!("; killed {n} process{s} {how}{took}")
        }
        _ => String::new(),
    };
    match e.status {
        Status::TimedOut | Status::Killed => Some(format!("{why}{kill}")),
        Status::Lost => Some(format!("execution {} was lost: {why}", e.id)),
        Status::Cancelled => Some(format!("execution {} was {why}", e.id)),
        _ => None,
    }
}

/// An audit trail as `show` and `job show` print it: one row per event,
/// (when, kind, actor, details), foreign text escaped.
pub fn events_table<'a>(
    events: impl IntoIterator<Item = (i64, &'a str, &'a str, &'a serde_json::Value)>,
) -> anyhow::Result<()> {
    let cells: Vec<Vec<Cell>> = events
        .into_iter()
        .map(|(at, kind, actor, details)| {
            vec![
                tend_model::format_rfc3339(at).into(),
                Cell::text(kind),
                Cell::text(actor),
                details.to_string().into(),
            ]
        })
        .collect();
    table(&["TIME", "EVENT", "ACTOR", "DETAILS"], cells)
}
