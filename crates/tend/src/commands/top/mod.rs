//! `tend top`: a live terminal monitor of the home's executions.
//!
//! It is woken by events, never by a timer polling the ledger: one
//! `poll(2)` waits for the home's announcements of transitions
//! ([`Notifier::subscribe`](tend_supervisor::Notifier::subscribe); in the
//! log view the subscription also covers new output), the pidfds of the
//! live executions' supervisors (a supervisor that dies without recording
//! its end wakes it, and the row is reconciled to `lost`), and its own
//! wake-up pipe (keys, resizes, a kill's outcome, SIGTERM/SIGHUP; see
//! [`wake`]). Only the CPU, RSS and age columns move with time: while
//! something is live they are refreshed from `/proc` at most once a second,
//! without reading the ledger; with nothing live there is no deadline at
//! all, and an idle `tend top` sleeps until something happens. Heartbeats
//! are not announced, so the heartbeat column is as fresh as the last
//! ledger read (a transition, a kill, a change of view), not newer.
//!
//! It uses the CLI's own calls: the ledger's `live` and `list`,
//! [`tend_supervisor::kill()`] (on a thread of its own with its own ledger
//! connection, so the screen stays live through the grace), the `ps`
//! usage function, and [`OutputReader`] for the logs. The terminal is
//! restored when it quits, on Ctrl-C (a key in raw mode), on SIGTERM or
//! SIGHUP, and on a panic (ratatui's panic hook).

mod app;
mod draw;
mod wake;

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossterm::event::{Event as Input, KeyEventKind};
use ratatui::DefaultTerminal;
use tend_ledger::{Filter, KillRequest, Ledger};
use tend_model::{ExecutionId, Status};
use tend_proc::{tree, Pidfd, Verified};
use tend_supervisor::output::{OutputReader, Streams};
use tend_supervisor::{wait_any, Subscription, Wake};

use super::query::usage;
use super::{actor, Context};
use app::{Action, App, Row, View};
use draw::Palette;
use wake::{Msg, Wakes};

/// How many finished executions are listed below the live ones.
const RECENT: u32 = 15;
/// The most often the usage columns are refreshed while something runs.
const USAGE_EVERY: Duration = Duration::from_secs(1);
/// How much of a followed log is kept in memory (the tail of it).
const LOG_KEEP: usize = 256 * 1024;

/// What the loop waits on besides the wake-up pipe.
struct Watch {
    /// Announcements; with output too while the log view is up.
    sub: Box<dyn Subscription>,
    with_output: bool,
    /// A pidfd on each live execution's supervisor on this host.
    supervisors: Vec<Pidfd>,
    /// The followed log: whose, its reader, and its recent text.
    log: Option<(ExecutionId, OutputReader, String)>,
    /// When the usage columns were last read.
    usage_at: Instant,
}

/// Restores the terminal when the loop ends, whichever way it ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        // While unwinding, ratatui's panic hook has restored it already,
        // and leaving the alternate screen twice moves the cursor back up
        // over the panic's message.
        if !std::thread::panicking() {
            ratatui::restore();
        }
    }
}

/// `tend top`. Without a terminal it refuses in one sentence (exit 2):
/// there is nothing to draw on, and `tend ps` is the command for a pipe.
pub fn top(ctx: &Context) -> Result<i32> {
    if ctx.global.json {
        return Err(crate::usage(
            "tend top draws a screen and has no JSON; use tend --json ps",
        ));
    }
    if !std::io::stdout().is_terminal() {
        return Err(crate::usage(
            "tend top needs a terminal to draw on; use tend ps (or tend --json ps) in scripts and pipes",
        ));
    }
    let wakes = Wakes::start()?;
    // Subscribe before the first read, so nothing committed in between is
    // missed.
    let mut watch = Watch {
        sub: ctx.home.notifier().subscribe()?,
        with_output: false,
        supervisors: Vec::new(),
        log: None,
        usage_at: Instant::now(),
    };
    let mut app = App::new();
    let palette = Palette::from_env();
    let mut terminal = ratatui::try_init().context("setting up the terminal for tend top")?;
    let _restore = Restore;
    run_loop(ctx, &mut terminal, &mut app, &mut watch, &wakes, palette)?;
    Ok(0)
}

/// The tests' way to see that a panic gives the terminal back:
/// `TEND_FAILPOINT=top-panic-after-draw` panics once a frame is drawn.
fn failpoint_panic() {
    let var = std::env::var(tend_supervisor::FAILPOINT_VAR);
    if var.is_ok_and(|v| v == "top-panic-after-draw") {
        panic!("the failpoint top-panic-after-draw");
    }
}

/// Load, draw, wait; until `q`, Ctrl-C or a signal.
fn run_loop(
    ctx: &Context,
    terminal: &mut DefaultTerminal,
    app: &mut App,
    watch: &mut Watch,
    wakes: &Wakes,
    palette: Palette,
) -> Result<()> {
    let mut reload = true;
    loop {
        if reload {
            load(ctx, app, watch)?;
            reload = false;
        }
        terminal
            .draw(|f| draw::frame(f, app, palette))
            .context("drawing tend top")?;
        failpoint_panic();
        // The only deadline: the usage columns, while something is live.
        let deadline = (!app.live.is_empty()).then(|| watch.usage_at + USAGE_EVERY);
        let mut fds: Vec<BorrowedFd<'_>> = vec![wakes.fd(), watch.sub.as_fd()];
        fds.extend(watch.supervisors.iter().map(Pidfd::as_fd));
        let woke = wait_any(&fds, deadline)?;
        if wakes.stopped() {
            return Ok(());
        }
        // A transition, or a supervisor that ended: read the ledger again.
        let pinned: Vec<BorrowedFd<'_>> = watch.supervisors.iter().map(Pidfd::as_fd).collect();
        let ended = !pinned.is_empty() && wait_any(&pinned, Some(Instant::now()))? == Wake::Ready;
        reload |= !watch.sub.take().is_empty() || ended;
        for msg in wakes.take() {
            match msg {
                Msg::Input(input) => match on_input(ctx, app, wakes, input)? {
                    Action::Quit => return Ok(()),
                    Action::Reload => reload = true,
                    Action::Redraw | Action::Kill(_) => {}
                },
                Msg::Said(text) => {
                    app.message = Some(text);
                    reload = true;
                }
            }
        }
        if !reload && watch.with_output {
            // New output (the subscription names no execution for it).
            read_log(app, watch)?;
        }
        if !reload && (woke == Wake::TimedOut || watch.usage_at.elapsed() >= USAGE_EVERY) {
            refresh_usage(app, watch);
        }
    }
}

/// One key or resize; a kill is started here, in the background.
fn on_input(ctx: &Context, app: &mut App, wakes: &Wakes, input: Input) -> Result<Action> {
    let Input::Key(k) = input else {
        // A resize: the next draw takes the new size.
        return Ok(Action::Redraw);
    };
    if k.kind != KeyEventKind::Press {
        return Ok(Action::Redraw);
    }
    let action = app.key(k);
    if let Action::Kill(id) = &action {
        kill_in_background(ctx, id, wakes.poster());
    }
    Ok(action)
}

/// Reconciles, then reads the live and recent executions, pins their
/// supervisors, and reads what the current view needs.
fn load(ctx: &Context, app: &mut App, watch: &mut Watch) -> Result<()> {
    // Never a note on stderr here: it would land in the middle of the
    // screen. A failure is said on the message line instead.
    if ctx.read_only.is_none() {
        if let Err(e) = tend_supervisor::reconcile(&ctx.ledger, &ctx.home) {
            app.message = Some(format!(
                "cannot reconcile now ({e}); showing the ledger as recorded"
            ));
        }
    }
    let live = ctx.ledger.live()?;
    watch.supervisors = live
        .iter()
        .filter_map(|e| match Pidfd::open_verified(&e.supervisor) {
            Ok(Verified::Alive(fd)) => Some(fd),
            _ => None,
        })
        .collect();
    app.live = live
        .into_iter()
        .map(|execution| Row {
            execution,
            cpu_ms: None,
            rss_bytes: None,
        })
        .collect();
    refresh_usage(app, watch);
    let finished = Filter {
        statuses: Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect(),
        limit: Some(RECENT),
        ..Filter::default()
    };
    app.recent = ctx.ledger.list(&finished)?;
    app.detail = match &app.view {
        View::Detail(id) => match ctx.ledger.get(id) {
            Ok(e) => Some((e, ctx.ledger.events(id)?)),
            Err(_) => None,
        },
        _ => None,
    };
    follow_view(ctx, app, watch)
}

/// Keeps the subscription and the log reader in step with the view: new
/// output wakes the loop only while a log is shown.
fn follow_view(ctx: &Context, app: &mut App, watch: &mut Watch) -> Result<()> {
    let shown = match &app.view {
        View::Logs(id) => Some(id.clone()),
        _ => None,
    };
    if shown.is_some() != watch.with_output {
        let notifier = ctx.home.notifier();
        watch.sub = match shown {
            Some(_) => notifier.subscribe_with_output(&ctx.home.logs_dir())?,
            None => notifier.subscribe()?,
        };
        watch.with_output = shown.is_some();
    }
    let Some(id) = shown else {
        watch.log = None;
        app.log.clear();
        return Ok(());
    };
    if watch.log.as_ref().is_none_or(|(of, _, _)| *of != id) {
        let e = ctx.ledger.get(&id)?;
        watch.log = Some((id, OutputReader::new(&e, Streams::Both), String::new()));
    }
    read_log(app, watch)
}

/// Reads what the followed execution wrote since the last read.
fn read_log(app: &mut App, watch: &mut Watch) -> Result<()> {
    let Some((id, reader, text)) = &mut watch.log else {
        return Ok(());
    };
    let done = app.live.iter().all(|r| r.execution.id != *id);
    for piece in reader.read(done).context("reading the log")? {
        text.push_str(&String::from_utf8_lossy(&piece.bytes));
    }
    if text.len() > LOG_KEEP {
        let mut cut = text.len() - LOG_KEEP;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    app.log = text.lines().map(draw::clean).collect();
    Ok(())
}

/// CPU and RSS of every live tree, from one snapshot of `/proc`.
fn refresh_usage(app: &mut App, watch: &mut Watch) {
    let snapshot = tree::Snapshot::take();
    for row in &mut app.live {
        (row.cpu_ms, row.rss_bytes) = usage(&snapshot, &row.execution);
    }
    watch.usage_at = Instant::now();
}

/// Kills `id` the way `tend kill` does, on a thread with a ledger
/// connection of its own, and posts the outcome. Quitting meanwhile is
/// safe: the request is already in the ledger and its supervisor carries
/// it out.
fn kill_in_background(ctx: &Context, id: &ExecutionId, poster: wake::Poster) {
    let (home, id) = (ctx.home.clone(), id.clone());
    let store = ctx.config.store();
    let target = ctx.ledger.get(&id);
    let req = KillRequest {
        actor: actor(),
        reason: Some("killed from tend top".into()),
        force: false,
        grace_ms: None,
    };
    std::thread::spawn(move || {
        let outcome = (|| -> Result<String> {
            let ledger = tend_ledger::open(&store?)?;
            let done = tend_supervisor::kill(&ledger, &home, &[target?], &req)?;
            Ok(match done.first() {
                Some(r) if r.already_finished => format!("{id} had already finished"),
                Some(r) => format!("{id} is {}", r.execution.status),
                None => format!("{id}: nothing to kill"),
            })
        })();
        poster.post(Msg::Said(match outcome {
            Ok(said) => said,
            Err(e) => format!("could not kill {id}: {e:#}"),
        }));
    });
}
