//! Kill requests for this agent made where its supervisors cannot be
//! reached (another host, or another home on the shared ledger): heard
//! through the home's notifier ([`tend_supervisor::Notifier::subscribe_kills`]:
//! LISTEN on a PostgreSQL ledger, nothing on SQLite, where the asker
//! nudges the supervisor itself), swept once the listener is connected and
//! again whenever it connected anew, and each carried out on the blocking
//! pool by [`tend_supervisor::deliver`], as a local `tend kill` would:
//! through the supervisor, taken over when it does not act in time. The
//! supervisor commits the outcome, whose NOTIFY wakes the asker.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use tend_model::{Execution, ExecutionId};

use crate::readable::Readable;
use crate::AppState;

/// The executions whose kill is being carried out now: each once.
type Busy = Arc<Mutex<HashSet<ExecutionId>>>;

/// Runs until aborted; returns at once where kill requests never cross
/// hosts.
pub async fn deliver_kills(state: AppState) {
    let home = state.config().home.clone();
    let mut sub = match home.notifier().subscribe_kills() {
        Ok(Some(sub)) => sub,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for kill requests; requests from other hosts are carried out only when this daemon starts again");
            return sweep(&state, &Busy::default()).await;
        }
    };
    let fd = match sub.as_fd().try_clone_to_owned().and_then(Readable::new) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the kill requests' subscription");
            return sweep(&state, &Busy::default()).await;
        }
    };
    let busy = Busy::default();
    // Subscribed (LISTENing) first, then swept: a request made in between
    // is heard, and one made before is found.
    sweep(&state, &busy).await;
    loop {
        let Ok(ids) = fd.read_with(|_| sub.take()).await else {
            continue;
        };
        if ids.is_empty() {
            // The listener connected again: requests may have gone unheard.
            sweep(&state, &busy).await;
            continue;
        }
        let s = state.clone();
        let rows = tokio::task::spawn_blocking(move || {
            let Ok(l) = s.ledger() else { return Vec::new() };
            ids.iter()
                .filter_map(|id| l.get(id).ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for row in rows {
            carry_out(&state, &busy, row);
        }
    }
}

/// Carries out every live request of this agent the ledger holds.
async fn sweep(state: &AppState, busy: &Busy) {
    let s = state.clone();
    let found = tokio::task::spawn_blocking(move || {
        let l = s.ledger().ok()?;
        tend_supervisor::deliver::undelivered(&*l, &s.config().home).ok()
    })
    .await
    .ok()
    .flatten();
    for row in found.unwrap_or_default() {
        carry_out(state, busy, row);
    }
}

/// Starts carrying out `row`'s kill request, unless it is not this
/// agent's, has none, or is being carried out already.
fn carry_out(state: &AppState, busy: &Busy, row: Execution) {
    let ours = state.config().home.agent().ok().map(|a| a.id);
    if row.status.is_terminal() || row.kill_request.is_none() || row.agent_id != ours {
        return;
    }
    if !busy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(row.id.clone())
    {
        return;
    }
    let (s, busy) = (state.clone(), busy.clone());
    tokio::task::spawn_blocking(move || {
        let done = s.ledger().map_err(|e| format!("{e:?}")).and_then(|l| {
            tend_supervisor::deliver(&*l, &s.config().home, &row).map_err(|e| e.to_string())
        });
        match done {
            Ok(Some(e)) => {
                tracing::info!(id = %e.id, status = %e.status, "carried out a kill requested through the ledger")
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(id = %row.id, error = %err, "cannot carry out a kill requested through the ledger")
            }
        }
        busy.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&row.id);
    });
}
