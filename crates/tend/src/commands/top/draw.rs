//! Drawing one frame of `tend top` from an [`App`]. Pure: it reads the
//! state and the clock, nothing else.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table, TableState, Wrap};
use ratatui::Frame;
use tend_model::{Execution, Status};

use super::app::{App, Prompt, View};
use crate::output::{ago, bytes};

/// Below this the table's columns cannot be told apart; it says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 8;

/// Styles, or none at all with `NO_COLOR` or `TERM=dumb`.
#[derive(Clone, Copy)]
pub struct Palette {
    pub colour: bool,
}

impl Palette {
    /// Colour unless `NO_COLOR` is set (any value) or `TERM` is `dumb`.
    pub fn from_env() -> Palette {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Palette {
            colour: std::env::var_os("NO_COLOR").is_none() && !dumb,
        }
    }

    fn fg(self, c: Color) -> Style {
        match self.colour {
            true => Style::default().fg(c),
            false => Style::default(),
        }
    }

    fn status(self, s: Status) -> Style {
        self.fg(match s {
            Status::Succeeded => Color::Green,
            Status::Running | Status::Queued => Color::Cyan,
            Status::Failed | Status::Lost | Status::TimedOut => Color::Red,
            Status::Killed | Status::Cancelled => Color::Yellow,
        })
    }
}

/// One frame.
pub fn frame(f: &mut Frame, app: &App, p: Palette) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small ({}x{}): tend top needs {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [title, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title_line(app)), title);
    match &app.view {
        View::Table => table(f, body, app, p),
        View::Detail(_) => detail(f, body, app, p),
        View::Logs(id) => logs(f, body, app, id.as_str()),
    }
    f.render_widget(Paragraph::new(footer(app, p)), foot);
}

fn title_line(app: &App) -> String {
    let mut s = format!("tend top: {} live", app.live.len());
    if !app.filter.is_empty() {
        s.push_str(&format!(", name contains \"{}\"", clean(&app.filter)));
    }
    match &app.view {
        View::Table => s,
        View::Detail(id) => format!("{s} | detail of {id}"),
        View::Logs(id) => format!("{s} | output of {id} (following)"),
    }
}

/// The prompt, the last message, or the keys that work here.
fn footer(app: &App, p: Palette) -> Line<'static> {
    let text = match &app.prompt {
        Prompt::Filter(t) => format!(
            "filter by name: {}_   (Enter applies, Esc cancels)",
            clean(t)
        ),
        Prompt::Kill { id, name, grace_ms } => format!(
            "kill {id} ({})? SIGTERM, then SIGKILL after a grace of {}  [y/N]",
            clean(name),
            tend_model::format_duration(Duration::from_millis(*grace_ms))
        ),
        Prompt::None => match (&app.message, &app.view) {
            (Some(m), _) => m.clone(),
            (None, View::Table) => {
                "↑/↓ j/k move  / filter  Enter detail  l logs  K kill  q quit".into()
            }
            (None, _) => "Esc back  K kill  q quit".into(),
        },
    };
    let style = match app.prompt {
        Prompt::Kill { .. } => p.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        _ => Style::default(),
    };
    Line::from(Span::styled(text, style))
}

fn cells(e: &Execution, cpu: Option<u64>, rss: Option<u64>, p: Palette) -> TableRow<'static> {
    let dur = |ms: u64| tend_model::format_duration(Duration::from_millis(ms));
    let heartbeat = match (e.last_heartbeat_at, &e.progress) {
        (Some(at), Some(pr)) => format!("{} {}", ago(at), clean(pr)),
        (Some(at), None) => ago(at),
        (None, _) if e.heartbeat_timeout_ms.is_some() && !e.status.is_terminal() => {
            "none yet".into()
        }
        (None, _) => "-".into(),
    };
    let age = ago(e.created_at).trim_end_matches(" ago").to_string();
    TableRow::new(vec![
        Cell::from(e.id.to_string()),
        Cell::from(clean(&e.name)),
        Cell::from(e.status.to_string()).style(p.status(e.status)),
        Cell::from(e.pid.map_or("-".into(), |x| x.to_string())),
        Cell::from(age),
        Cell::from(heartbeat),
        Cell::from(cpu.or(e.cpu_ms).map_or("-".into(), dur)),
        Cell::from(rss.or(e.max_rss_bytes).map_or("-".into(), bytes)),
        Cell::from(clean(&e.host)),
    ])
}

fn table(f: &mut Frame, area: Rect, app: &App, p: Palette) {
    let live = app.live.iter().filter(|r| app.shows(&r.execution.name));
    let mut rows: Vec<TableRow> = live
        .map(|r| cells(&r.execution, r.cpu_ms, r.rss_bytes, p))
        .collect();
    rows.extend(
        app.recent
            .iter()
            .filter(|e| app.shows(&e.name))
            .map(|e| cells(e, None, None, p).style(p.fg(Color::DarkGray))),
    );
    let empty = rows.is_empty();
    let header = [
        "ID",
        "NAME",
        "STATUS",
        "PID",
        "AGE",
        "HEARTBEAT",
        "CPU",
        "RSS",
        "HOST",
    ];
    let widths = [
        Constraint::Length(8),
        Constraint::Fill(2),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Fill(1),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let t = Table::new(rows, widths)
        .header(TableRow::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .highlight_symbol("> ")
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(app.selected_index());
    f.render_stateful_widget(t, area, &mut state);
    if empty {
        let [_, below] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(area);
        let msg = match app.filter.is_empty() {
            true => "no executions yet: start one with tend run",
            false => "nothing matches the filter (/ to change it)",
        };
        f.render_widget(Paragraph::new(msg), below);
    }
}

fn detail(f: &mut Frame, area: Rect, app: &App, p: Palette) {
    let Some((e, events)) = &app.detail else {
        f.render_widget(
            Paragraph::new("this execution is no longer in the ledger"),
            area,
        );
        return;
    };
    let when = |ms: Option<i64>| ms.map_or("-".into(), tend_model::format_rfc3339);
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!("{}  {}  ", e.id, clean(&e.name))),
            Span::styled(e.status.to_string(), p.status(e.status)),
        ]),
        Line::from(format!("command   {}", clean(&e.command.join(" ")))),
        Line::from(format!("cwd       {}", clean(&e.cwd.to_string_lossy()))),
        Line::from(format!(
            "pid       {}   supervisor {}   host {}   tier {}",
            e.pid.map_or("-".into(), |x| x.to_string()),
            e.supervisor.pid,
            clean(&e.host),
            e.tier
        )),
        Line::from(format!(
            "created   {}   started {}   finished {}",
            when(Some(e.created_at)),
            when(e.started_at),
            when(e.finished_at)
        )),
        Line::from(format!(
            "exit      {}   signal {}   reason {}",
            e.exit_code.map_or("-".into(), |c| c.to_string()),
            e.signal.map_or("-".into(), |s| s.to_string()),
            clean(e.reason.as_deref().unwrap_or("-"))
        )),
        Line::from(""),
        Line::from(Span::styled(
            "EVENTS",
            Style::default().add_modifier(Modifier::BOLD),
        )),
    ];
    lines.extend(events.iter().map(|ev| {
        let details = match &ev.details {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            serde_json::Value::Null => String::new(),
            d => d.to_string(),
        };
        Line::from(format!(
            "{}  {:<16} {:<14} {}",
            tend_model::format_rfc3339(ev.at),
            clean(&ev.kind),
            clean(&ev.actor),
            clean(&details)
        ))
    }));
    // The newest events matter most: keep the tail when it does not fit.
    let skip = lines.len().saturating_sub(area.height as usize);
    let lines: Vec<Line> = match skip {
        0 => lines,
        n => lines.into_iter().skip(n).collect(),
    };
    f.render_widget(Paragraph::new(lines), area);
}

fn logs(f: &mut Frame, area: Rect, app: &App, id: &str) {
    if app.log.is_empty() {
        let msg = format!("execution {id} has written nothing yet");
        f.render_widget(Paragraph::new(msg), area);
        return;
    }
    let skip = app.log.len().saturating_sub(area.height as usize);
    let lines: Vec<Line> = app.log[skip..]
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

/// Text made safe for a cell: control characters (escape sequences a
/// command printed, a name with a newline) would move the cursor and
/// garble the screen, so each becomes `?`; a tab becomes spaces.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => "    ".to_string(),
            c if c.is_control() => "?".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
        t.draw(|f| frame(f, app, Palette { colour: false }))
            .expect("it draws");
        let buf = t.backend().buffer();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn a_terminal_too_small_is_told_so_instead_of_a_garbled_table() {
        let text = screen(&App::new(), 40, 6);
        assert!(text.contains("terminal too small (40x6)"), "{text}");
        assert!(!text.contains("HEARTBEAT"), "{text}");
    }

    #[test]
    fn the_table_has_ps_columns_and_the_keys() {
        let text = screen(&App::new(), 120, 10);
        for col in [
            "ID",
            "NAME",
            "STATUS",
            "PID",
            "AGE",
            "HEARTBEAT",
            "CPU",
            "RSS",
            "HOST",
        ] {
            assert!(text.contains(col), "{col}: {text}");
        }
        assert!(text.contains("no executions yet"), "{text}");
        assert!(text.contains("K kill  q quit"), "{text}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("a\x1b[2Jb\tc\r"), "a?[2Jb    c?");
    }
}
