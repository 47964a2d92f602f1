//! The daemon's eyes: a subscription to the home's notifier for every
//! transition (on a shared ledger, every host's, through LISTEN), a pidfd
//! per live supervisor of this agent for deaths, a timer per overdue
//! timeout, and a slow backstop timer.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;

use tend_ledger::Ledger;
use tend_model::{Execution, ExecutionId};
use tend_proc::{Pidfd, Verified};
use tend_supervisor::Subscription;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::readable::Readable;
use crate::AppState;

/// What the watcher holds: a task per live supervisor's pidfd and per
/// overdue timer, and the live rows only another agent can end (heard of
/// through the ledger's listener, looked at again when it may have missed
/// something).
struct Eyes {
    watched: HashMap<ExecutionId, JoinHandle<()>>,
    timers: HashMap<ExecutionId, JoinHandle<()>>,
    remote: HashSet<ExecutionId>,
    dead: mpsc::UnboundedSender<ExecutionId>,
}

impl Eyes {
    fn watch(&mut self, state: &AppState, e: &Execution) {
        if !e.status.is_terminal() && !here(state, e) {
            self.remote.insert(e.id.clone());
        }
        watch_supervisor(state, &mut self.watched, e, &self.dead);
        watch_overdue(&mut self.timers, e, &self.dead);
    }

    fn forget(&mut self, id: &ExecutionId) {
        self.remote.remove(id);
        for map in [&mut self.watched, &mut self.timers] {
            if let Some(h) = map.remove(id) {
                h.abort();
            }
        }
    }

    /// A row was announced (or looked at again): watch it while it lives,
    /// stream it either way.
    async fn on_row(&mut self, state: &AppState, e: Execution) {
        // A retried attempt's next one is recorded with its outcome: watch
        // it now, in case its supervisor dies before it announces it.
        if e.status.is_terminal() && e.retries > 0 {
            let (s, id) = (state.clone(), e.id.clone());
            let next = tokio::task::spawn_blocking(move || {
                s.ledger().ok()?.next_attempt(&id).ok().flatten()
            })
            .await
            .ok()
            .flatten();
            if let Some(n) = next.filter(|n| !n.status.is_terminal()) {
                self.watch(state, &n);
            }
        }
        if e.status.is_terminal() {
            self.forget(&e.id);
        } else {
            self.watch(state, &e);
        }
        state.publish(e);
    }

    /// The wake-up named nothing (the listener connected again, or a queue
    /// overflowed): the rows only another agent can end are read again, so
    /// an end that went unheard is streamed now.
    async fn look_again(&mut self, state: &AppState) {
        let ids: Vec<ExecutionId> = self.remote.iter().cloned().collect();
        for e in rows(state, ids).await {
            if e.status.is_terminal() {
                self.on_row(state, e).await;
            }
        }
    }
}

/// The rows of `ids` that could be read, on the blocking pool.
async fn rows(state: &AppState, ids: Vec<ExecutionId>) -> Vec<Execution> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(l) = s.ledger() else { return Vec::new() };
        ids.iter().filter_map(|id| l.get(id).ok()).collect()
    })
    .await
    .unwrap_or_default()
}

/// Whether this daemon's kernel may be asked about `e`'s supervisor.
fn here(state: &AppState, e: &Execution) -> bool {
    let shared = matches!(state.config().store, tend_ledger::Store::Postgres(_));
    tend_supervisor::supervised_here(
        shared,
        &state.config().home,
        e,
        &tend_proc::procfs::hostname(),
    )
}

/// Runs until aborted.
pub async fn watch(state: AppState) {
    let (mut sub, notify) = match subscribe(&state) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to transitions; they will only be seen by the backstop timer");
            return backstop_only(state).await;
        }
    };
    let (dead, mut dead_rx) = mpsc::unbounded_channel::<ExecutionId>();
    let mut eyes = Eyes {
        watched: HashMap::new(),
        timers: HashMap::new(),
        remote: HashSet::new(),
        dead,
    };
    let s = state.clone();
    let live = tokio::task::spawn_blocking(move || s.live().unwrap_or_default());
    for e in live.await.unwrap_or_default() {
        state.track(&e);
        eyes.watch(&state, &e);
    }
    let s = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(l) = s.ledger() {
            adopt_pending(&s, &*l);
        }
    })
    .await;
    let mut tick = tokio::time::interval(state.config().reconcile_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            ready = notify.read_with(|_| sub.take()) => {
                let Ok(ids) = ready else { continue };
                if ids.is_empty() {
                    eyes.look_again(&state).await;
                }
                for e in rows(&state, ids).await {
                    eyes.on_row(&state, e).await;
                }
            }
            Some(id) = dead_rx.recv() => {
                eyes.watched.remove(&id);
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || reconcile_one(&s, &id)).await;
            }
            _ = tick.tick() => {
                let s = state.clone();
                let live = tokio::task::spawn_blocking(move || backstop(&s)).await.ok().flatten();
                for e in live.unwrap_or_default() {
                    state.track(&e);
                    eyes.watch(&state, &e);
                }
                eyes.look_again(&state).await;
            }
        }
    }
}

async fn backstop_only(state: AppState) {
    let mut tick = tokio::time::interval(state.config().reconcile_every);
    loop {
        tick.tick().await;
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || backstop(&s)).await;
    }
}

/// The slow pass: reconcile everything, end strays; returns the live rows.
fn backstop(state: &AppState) -> Option<Vec<Execution>> {
    let l = state.ledger().ok()?;
    let lost = tend_supervisor::reconcile(&*l, &state.config().home).unwrap_or_default();
    let strays = tend_supervisor::sweep_stragglers(
        &*l,
        &state.config().home,
        false,
        state.config().run.kill_grace,
    )
    .unwrap_or_default();
    state.note_reaped(lost.len(), strays.len());
    adopt_pending(state, &*l);
    l.live().ok()
}

/// Adopts every pending attempt whose supervisor is gone: at start (they
/// waited while no daemon ran) and in the backstop.
fn adopt_pending(state: &AppState, l: &dyn Ledger) {
    for e in l.live().unwrap_or_default() {
        if tend_supervisor::retry::is_pending_attempt(&e) {
            adopt(state, l, &e);
        }
    }
}

/// Reconciles `id` after its supervisor's pidfd fired or its timeout became
/// overdue. The whole reconcile, not `verify_or_reconcile`: an overdue
/// execution's supervisor is alive (stopped, maybe), and only the reconcile
/// ends it then.
fn reconcile_one(state: &AppState, id: &ExecutionId) {
    let Ok(l) = state.ledger() else { return };
    let Ok(e) = l.get(id) else { return };
    if !e.status.is_terminal() {
        if let Ok(Some(_)) = tend_supervisor::reconcile_execution(&*l, &state.config().home, &e) {
            state.note_reaped(1, 0);
        }
    }
    // A pending attempt whose supervisor died, or the retry that a `lost`
    // verdict just recorded: this daemon starts it. Runs without retries
    // (nearly every exit) cost nothing more.
    if e.retries == 0 {
        return;
    }
    let Ok(e) = l.get(id) else { return };
    let orphan = match tend_supervisor::retry::is_pending_attempt(&e) {
        true => Some(e),
        false => l.next_attempt(id).ok().flatten(),
    };
    if let Some(o) = orphan {
        adopt(state, &*l, &o);
    }
}

/// Gives the pending attempt `e` a new supervisor if its own is gone.
fn adopt(state: &AppState, l: &dyn Ledger, e: &Execution) {
    let c = state.config();
    match tend_supervisor::retry::adopt_if_orphaned(l, &c.home, &c.exe, &c.store, e) {
        Ok(true) => {
            tracing::info!(id = %e.id, "adopted a pending attempt whose supervisor was gone")
        }
        Ok(false) => {}
        Err(err) => tracing::warn!(id = %e.id, error = %err, "cannot adopt a pending attempt"),
    }
}

/// A timer at the moment a running execution with a timeout is overdue
/// (its supervisor had the timeout, the grace and a little more to end it):
/// then it is reconciled, which ends it if its supervisor is stopped.
fn watch_overdue(
    timers: &mut HashMap<ExecutionId, JoinHandle<()>>,
    e: &Execution,
    due: &mpsc::UnboundedSender<ExecutionId>,
) {
    let Some(at) = tend_supervisor::overdue_at(e) else {
        return;
    };
    if timers.contains_key(&e.id) {
        return;
    }
    let (id, tx) = (e.id.clone(), due.clone());
    let wait = std::time::Duration::from_millis((at - tend_ledger::now_ms()).max(0) as u64);
    timers.insert(
        e.id.clone(),
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(id);
        }),
    );
}

fn watch_supervisor(
    state: &AppState,
    watched: &mut HashMap<ExecutionId, JoinHandle<()>>,
    e: &Execution,
    dead: &mpsc::UnboundedSender<ExecutionId>,
) {
    if watched.contains_key(&e.id) || e.status.is_terminal() || !here(state, e) {
        return;
    }
    let id = e.id.clone();
    let tx = dead.clone();
    match Pidfd::open_verified(&e.supervisor) {
        // The dup costs one system call and keeps tend-proc's pidfd type out
        // of the reactor.
        Ok(Verified::Alive(fd)) => match fd.as_fd().try_clone_to_owned().and_then(Readable::new) {
            Ok(afd) => {
                let handle = tokio::spawn(async move {
                    let _ = afd.readable().await;
                    let _ = tx.send(id);
                });
                watched.insert(e.id.clone(), handle);
            }
            Err(_) => {
                let _ = tx.send(id);
            }
        },
        _ => {
            let _ = tx.send(id);
        }
    }
}

/// A subscription to every transition, and its descriptor registered with
/// the reactor (a duplicate: one system call, and the subscription keeps
/// its own). Reading through either takes the same queue.
fn subscribe(state: &AppState) -> Result<(Box<dyn Subscription>, Readable), crate::Error> {
    let sub = state.config().home.notifier().subscribe()?;
    let fd = sub
        .as_fd()
        .try_clone_to_owned()
        .and_then(Readable::new)
        .map_err(|source| crate::Error::Io {
            doing: "registering the transitions' subscription",
            source,
        })?;
    Ok((sub, fd))
}
