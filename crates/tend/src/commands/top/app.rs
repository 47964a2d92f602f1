//! What `tend top` shows and how keys change it, without any I/O: the
//! loop in [`super`] loads the rows, draws, and carries out the
//! [`Action`]s that [`App::key`] returns, so every key is tested here.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tend_model::{Event, Execution, ExecutionId};

/// A live execution with its tree's usage, read from `/proc` at most once
/// a second.
pub struct Row {
    pub execution: Execution,
    /// CPU time of the whole tree so far, in milliseconds.
    pub cpu_ms: Option<u64>,
    /// Resident memory of the whole tree, in bytes.
    pub rss_bytes: Option<u64>,
}

/// Which screen is up. Detail and logs name their execution by id, so a
/// refresh that reorders the table keeps them on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Table,
    Detail(ExecutionId),
    Logs(ExecutionId),
}

/// What the keyboard is doing on top of the view: typing a filter, or
/// answering the kill question (which names the grace it would give).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    None,
    Filter(String),
    Kill {
        id: ExecutionId,
        name: String,
        grace_ms: u64,
    },
}

/// What the loop must do after a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Redraw what is there.
    Redraw,
    /// The view changed: read the ledger (and logs) again.
    Reload,
    /// Kill this execution (the person said `y`).
    Kill(ExecutionId),
    Quit,
}

/// Everything on screen.
pub struct App {
    pub live: Vec<Row>,
    /// The most recent finished executions, below the live ones.
    pub recent: Vec<Execution>,
    /// The selection, by id, so that rows arriving or leaving keep it.
    pub selected: Option<ExecutionId>,
    /// The name filter applied (case-insensitive substring).
    pub filter: String,
    pub view: View,
    pub prompt: Prompt,
    /// One line for the person: a kill's outcome, an error.
    pub message: Option<String>,
    /// The detail view's execution and its events.
    pub detail: Option<(Execution, Vec<Event>)>,
    /// The log view's text, newest last (already made printable).
    pub log: Vec<String>,
}

impl App {
    pub fn new() -> App {
        App {
            live: Vec::new(),
            recent: Vec::new(),
            selected: None,
            filter: String::new(),
            view: View::Table,
            prompt: Prompt::None,
            message: None,
            detail: None,
            log: Vec::new(),
        }
    }

    /// True when the execution's name passes the filter.
    pub fn shows(&self, name: &str) -> bool {
        self.filter.is_empty() || name.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// The table's executions in order: live ones, then recent finished.
    pub fn rows(&self) -> Vec<&Execution> {
        self.live
            .iter()
            .map(|r| &r.execution)
            .chain(self.recent.iter())
            .filter(|e| self.shows(&e.name))
            .collect()
    }

    /// Where the selection is in [`App::rows`]; a selection that left the
    /// table (filtered out, pruned) falls back to the first row.
    pub fn selected_index(&self) -> Option<usize> {
        let rows = self.rows();
        if rows.is_empty() {
            return None;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|id| rows.iter().position(|e| &e.id == id));
        Some(at.unwrap_or(0))
    }

    /// The selected execution, if the table has any row.
    pub fn selection(&self) -> Option<&Execution> {
        let i = self.selected_index()?;
        self.rows().get(i).copied()
    }

    fn move_by(&mut self, delta: isize) {
        let rows = self.rows();
        let Some(i) = self.selected_index() else {
            return;
        };
        let j = (i as isize + delta).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[j].id.clone());
    }

    /// Handles one key; Ctrl-C quits from anywhere, since the terminal is
    /// in raw mode and no SIGINT comes.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match &self.prompt {
            Prompt::Filter(_) => return self.filter_key(k),
            Prompt::Kill { .. } => return self.kill_key(k),
            Prompt::None => {}
        }
        self.message = None;
        match (k.code, &self.view) {
            (KeyCode::Char('q'), _) => Action::Quit,
            (KeyCode::Esc, View::Table) => Action::Redraw,
            (KeyCode::Esc, _) => {
                self.view = View::Table;
                Action::Reload
            }
            (KeyCode::Char('K'), _) => self.ask_kill(),
            (_, View::Table) => self.table_key(k),
            _ => Action::Redraw,
        }
    }

    fn table_key(&mut self, k: KeyEvent) -> Action {
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Char('/') => self.prompt = Prompt::Filter(self.filter.clone()),
            KeyCode::Enter | KeyCode::Char('l') => {
                let Some(e) = self.selection() else {
                    return Action::Redraw;
                };
                let id = e.id.clone();
                self.selected = Some(id.clone());
                self.view = match k.code {
                    KeyCode::Enter => View::Detail(id),
                    _ => View::Logs(id),
                };
                return Action::Reload;
            }
            _ => {}
        }
        Action::Redraw
    }

    /// The execution a view is about: the one shown, else the selection.
    fn target(&self) -> Option<(ExecutionId, String, u64)> {
        let e = match (&self.view, &self.detail) {
            (View::Detail(_), Some((e, _))) => e,
            _ => self.selection()?,
        };
        let e = match &self.view {
            View::Logs(id) | View::Detail(id) => {
                self.rows().into_iter().find(|r| &r.id == id).unwrap_or(e)
            }
            View::Table => e,
        };
        Some((e.id.clone(), e.name.clone(), e.kill_grace_ms))
    }

    fn ask_kill(&mut self) -> Action {
        let Some((id, name, grace_ms)) = self.target() else {
            return Action::Redraw;
        };
        let live = self.live.iter().any(|r| r.execution.id == id);
        self.prompt = match live {
            true => Prompt::Kill { id, name, grace_ms },
            false => {
                self.message = Some(format!("{id} has already finished; nothing to kill"));
                Prompt::None
            }
        };
        Action::Redraw
    }

    fn kill_key(&mut self, k: KeyEvent) -> Action {
        let Prompt::Kill { id, .. } = std::mem::replace(&mut self.prompt, Prompt::None) else {
            return Action::Redraw;
        };
        match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                self.message = Some(format!("killing {id}…"));
                Action::Kill(id)
            }
            // Anything else is No: a destructive action never defaults on.
            _ => {
                self.message = Some("nothing was killed".into());
                Action::Redraw
            }
        }
    }

    fn filter_key(&mut self, k: KeyEvent) -> Action {
        let Prompt::Filter(text) = &mut self.prompt else {
            return Action::Redraw;
        };
        match k.code {
            KeyCode::Enter => {
                self.filter = std::mem::take(text);
                self.prompt = Prompt::None;
            }
            KeyCode::Esc => self.prompt = Prompt::None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !c.is_control() && text.len() < 200 => text.push(c),
            _ => {}
        }
        Action::Redraw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str, name: &str, status: tend_model::Status) -> Execution {
        let me = tend_model::ProcessIdentity {
            boot_id: "boot".into(),
            pid: 1,
            start_time: 1,
            pidfd_ino: None,
        };
        Execution {
            id: ExecutionId::parse(id).expect("a valid id"),
            name: name.into(),
            status,
            reason: None,
            exit_code: None,
            signal: None,
            pid: None,
            key: None,
            labels: Default::default(),
            command: vec![name.into()],
            cwd: "/".into(),
            env: Default::default(),
            created_at: 0,
            started_at: None,
            finished_at: None,
            host: "host".into(),
            tier: tend_model::Containment::Session,
            agent_id: None,
            process: None,
            supervisor: me,
            timeout_ms: None,
            kill_grace_ms: 5000,
            kill_request: None,
            kill_method: None,
            kill_duration_ms: None,
            processes_signalled: None,
            stdout_path: String::new(),
            stderr_path: String::new(),
            version: 1,
            cgroup: None,
            heartbeat_timeout_ms: None,
            idle_timeout_ms: None,
            max_memory_bytes: None,
            last_heartbeat_at: None,
            progress: None,
            cpu_ms: None,
            max_rss_bytes: None,
            job: None,
            job_number: None,
            attempt: None,
            retries: 0,
            retry_backoff_ms: None,
            retry_max_backoff_ms: None,
            retry_of: None,
            start_after: None,
            workspace: None,
        }
    }

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn app() -> App {
        use tend_model::Status::*;
        let mut app = App::new();
        for (id, name) in [("aaaaaaaa", "build"), ("bbbbbbbb", "test")] {
            app.live.push(Row {
                execution: exec(id, name, Running),
                cpu_ms: None,
                rss_bytes: None,
            });
        }
        app.recent.push(exec("cccccccc", "deploy", Succeeded));
        app
    }

    #[test]
    fn keys_move_the_selection_within_the_table() {
        let mut app = app();
        assert_eq!(app.selection().map(|e| e.name.as_str()), Some("build"));
        press(&mut app, KeyCode::Char('j'));
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selection().map(|e| e.name.as_str()), Some("deploy"));
        press(&mut app, KeyCode::Char('k'));
        assert_eq!(app.selection().map(|e| e.name.as_str()), Some("test"));
    }

    #[test]
    fn kill_asks_first_and_anything_but_y_is_no() {
        let mut app = app();
        press(&mut app, KeyCode::Char('K'));
        assert!(matches!(app.prompt, Prompt::Kill { grace_ms: 5000, .. }));
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Redraw);
        assert_eq!(app.prompt, Prompt::None);
        press(&mut app, KeyCode::Char('K'));
        let id = app.selection().map(|e| e.id.clone()).expect("a selection");
        assert_eq!(press(&mut app, KeyCode::Char('y')), Action::Kill(id));
    }

    #[test]
    fn a_finished_execution_is_not_offered_for_killing() {
        let mut app = app();
        press(&mut app, KeyCode::End);
        press(&mut app, KeyCode::Char('K'));
        assert_eq!(app.prompt, Prompt::None);
        assert!(app
            .message
            .as_deref()
            .is_some_and(|m| m.contains("finished")));
    }

    #[test]
    fn the_filter_applies_on_enter_and_esc_backs_out() {
        let mut app = app();
        press(&mut app, KeyCode::Char('/'));
        for c in "TE".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        assert_eq!(app.rows().len(), 3, "nothing applies while typing");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.rows().len(), 1);
        assert_eq!(app.selection().map(|e| e.name.as_str()), Some("test"));
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Char('x'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "TE");
    }

    #[test]
    fn enter_opens_the_detail_and_esc_returns_q_quits() {
        let mut app = app();
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Reload);
        assert!(matches!(app.view, View::Detail(_)));
        assert_eq!(press(&mut app, KeyCode::Esc), Action::Reload);
        assert_eq!(app.view, View::Table);
        assert_eq!(press(&mut app, KeyCode::Char('l')), Action::Reload);
        assert!(matches!(app.view, View::Logs(_)));
        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.key(ctrl_c), Action::Quit);
    }
}
