//! The job scheduler: fires stored jobs' schedules, each fire once.
//!
//! One task per daemon. It sleeps until the earliest next fire of any job
//! (no polling tick), or until the home's notifier says the jobs changed
//! (`tend job …` or the API), or until the slow backstop
//! (`reconcile_every`) in case a job was changed from another home on a
//! shared ledger. On each wake, for each active scheduled job, it computes
//! the fires owed since the job's last decided fire ([`tend_model::job::due`]),
//! and decides the latest of them through [`Ledger::claim_fire`]: a unique
//! (job, nominal instant) row, inserted only if no fire at or after it is
//! decided. Only the winner acts, so two daemons on one ledger, or a
//! daemon restarted after SIGKILL, never fire a slot twice; a crash between
//! the claim and the launch loses that one fire rather than doubling it.
//!
//! Fires owed from before this daemon started came while no daemon ran:
//! catch-up decides the latest of them first (`latest`: run it once;
//! `skip`: record it), and a `fire-missed` job event says how many. Then
//! the fires owed since it started: the latest is fired (a late wake
//! counts the ones it overtook as missed). `forbid` with a live run records a `fire-skipped`
//! event; `replace` kills the live run (audited) and launches once its
//! tree is gone. Paused jobs fire nothing.

use std::os::fd::AsFd;
use std::time::Duration;

use serde_json::json;
use tend_ledger::{Claim, FireOutcome, Ledger};
use tend_model::job::{due, next_fires, Job};
use tend_model::{Actor, CatchUp, Concurrency, EventKind};
use tend_supervisor::detach::Answer;
use tend_supervisor::jobs::{live_runs, make_room, Room};

use crate::readable::Readable;
use crate::AppState;

/// Why a fire could not be carried out (logged; the next fire tries again).
type Failed = Box<dyn std::error::Error + Send + Sync>;

/// Runs until aborted.
pub async fn schedule(state: AppState) {
    let started = tend_ledger::now_ms();
    let mut wake = match subscribe(&state) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to job changes; they will be seen at the next fire or the backstop");
            None
        }
    };
    let s = state.clone();
    let _ = tokio::task::spawn_blocking(move || recover(&s)).await;
    let mut held = false;
    loop {
        // Without a valid lease no fire is decided: it waits (and is owed)
        // until the lease is renewed.
        if let Err(why) = state.lease().may_start() {
            if !std::mem::replace(&mut held, true) {
                tracing::warn!(why = %why, "holding the scheduler's fires");
            }
            tokio::time::sleep(state.config().lease.interval).await;
            continue;
        }
        if std::mem::replace(&mut held, false) {
            tracing::info!("the lease is valid again; the scheduler fires what is owed");
        }
        let s = state.clone();
        let next = tokio::task::spawn_blocking(move || pass(&s, started))
            .await
            .ok()
            .flatten();
        let backstop = state.config().reconcile_every;
        let sleep = match next {
            Some(at) => Duration::from_millis((at - tend_ledger::now_ms()).max(0) as u64 + 1),
            None => backstop,
        }
        .min(backstop);
        match wake.as_mut() {
            Some((sub, fd)) => {
                tokio::select! {
                    _ = fd.read_with(|_| sub.take()) => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
            None => tokio::time::sleep(sleep).await,
        }
    }
}

type Wake = (Box<dyn tend_supervisor::Subscription>, Readable);

fn subscribe(state: &AppState) -> Result<Wake, crate::Error> {
    let sub = state.config().home.notifier().subscribe_jobs()?;
    let fd = sub
        .as_fd()
        .try_clone_to_owned()
        .and_then(Readable::new)
        .map_err(|source| crate::Error::Io {
            doing: "registering the jobs' subscription",
            source,
        })?;
    Ok((sub, fd))
}

/// One look at every job: decides what is owed, and returns when the next
/// fire of any job comes (ms since the epoch).
fn pass(state: &AppState, started: i64) -> Option<i64> {
    let ledger = match state.ledger() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = ?e, "the scheduler cannot open the ledger");
            return None;
        }
    };
    let jobs = match ledger.jobs() {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(error = %e, "the scheduler cannot read the jobs");
            return None;
        }
    };
    let mut next: Option<i64> = None;
    for job in jobs.iter().filter(|j| !j.paused) {
        let Some((schedule, zone)) = job.schedule() else {
            continue;
        };
        let name = &job.definition.name;
        let after = match ledger.last_fire(name) {
            Ok(last) => last.unwrap_or(i64::MIN).max(job.fires_after),
            Err(e) => {
                tracing::warn!(job = %name, error = %e, "cannot read the job's fires");
                continue;
            }
        };
        let now = tend_ledger::now_ms();
        // Owed from before this daemon started: catch-up decides the latest
        // of those, whatever came since; then the latest that came since is
        // fired as usual.
        let mut after = after;
        for until in [now.min(started), now] {
            if let (_, Some(latest)) = due(&schedule, &zone, job.created_at, after, until) {
                if let Err(e) = decide(state, &*ledger, job, latest, started) {
                    tracing::warn!(job = %name, error = %e, "a fire failed");
                }
                after = latest;
            }
        }
        let upcoming = next_fires(&schedule, &zone, job.created_at, now.max(after), 1);
        if let Some(at) = upcoming.first().map(|z| z.timestamp().as_millisecond()) {
            next = Some(next.map_or(at, |n: i64| n.min(at)));
        }
    }
    next
}

/// How far back a restarted daemon looks for fires it decided but never
/// launched: older ones are history (and their runs may be pruned).
const RECOVER_WITHIN: Duration = Duration::from_secs(24 * 3600);

/// At start: a fire this home's agent decided to run but whose execution
/// was never recorded (the daemon stopped between the claim and the launch)
/// is started now, late, with a `fire-recovered` event, so that no fire is
/// lost without a word. The execution carries the fire's instant under a
/// unique index, so it can never run twice.
fn recover(state: &AppState) {
    let Ok(ledger) = state.ledger() else {
        return;
    };
    let home = &state.config().home;
    let agent = home.agent().map(|a| a.id).unwrap_or_default();
    let since = tend_ledger::ms_ago(RECOVER_WITHIN);
    for job in ledger
        .jobs()
        .unwrap_or_default()
        .into_iter()
        .filter(|j| !j.paused)
    {
        let name = &job.definition.name;
        let Ok(Some(at)) = ledger.unlaunched_fire(name, &agent, since) else {
            continue;
        };
        let details = json!({
            "scheduled_at": tend_model::format_rfc3339(at),
            "note": "the daemon stopped between deciding this fire and starting its run; started now",
        });
        let started = match make_room(&*ledger, home, &job, Actor::Scheduler) {
            Ok(Room::Free) => launch(state, &*ledger, &job, at),
            Ok(Room::Forbidden(_)) => Ok(()),
            Err(e) => Err(e.into()),
        };
        let _ = ledger.record_job(name, EventKind::FireRecovered, &Actor::Scheduler, details);
        if let Err(e) = started {
            tracing::warn!(job = %name, error = %e, "a recovered fire failed");
        }
    }
}

/// Decides the fire at `latest`, the newest one owed.
fn decide(
    state: &AppState,
    ledger: &dyn Ledger,
    job: &Job,
    latest: i64,
    started: i64,
) -> Result<(), Failed> {
    let name = &job.definition.name;
    let home = &state.config().home;
    let agent = home.agent().map(|a| a.id).unwrap_or_default();
    let while_down = latest <= started;
    let live = live_runs(ledger, name)?;
    let outcome = if while_down && job.definition.catch_up == CatchUp::Skip {
        FireOutcome::Missed
    } else if job.definition.concurrency == Concurrency::Forbid && !live.is_empty() {
        FireOutcome::Skipped
    } else {
        FireOutcome::Fired
    };
    let Claim::Won { previous } = ledger.claim_fire(name, latest, &agent, outcome)? else {
        return Ok(());
    };
    record_missed(ledger, job, previous, latest, outcome, started)?;
    // A missed fire queued its alert with its event: no transition says so.
    state.want_alerts();
    let refs = |l: &[tend_model::Execution]| -> Vec<String> {
        l.iter()
            .map(|e| e.job_ref().unwrap_or_else(|| e.id.to_string()))
            .collect()
    };
    match outcome {
        FireOutcome::Missed => return Ok(()),
        FireOutcome::Skipped => {
            let details =
                json!({ "scheduled_at": tend_model::format_rfc3339(latest), "live": refs(&live) });
            ledger.record_job(name, EventKind::FireSkipped, &Actor::Scheduler, details)?;
            return Ok(());
        }
        FireOutcome::Fired => {}
    }
    if let Room::Forbidden(live) = make_room(ledger, home, job, Actor::Scheduler)? {
        let details =
            json!({ "scheduled_at": tend_model::format_rfc3339(latest), "live": refs(&live) });
        ledger.record_job(name, EventKind::FireSkipped, &Actor::Scheduler, details)?;
        return Ok(());
    }
    launch(state, ledger, job, latest)
}

/// The fires between the last decided one and `latest` that nobody ran,
/// recorded as one `fire-missed` event (with `latest` itself when it is not
/// run either); nothing when there are none.
fn record_missed(
    ledger: &dyn Ledger,
    job: &Job,
    previous: Option<i64>,
    latest: i64,
    outcome: FireOutcome,
    started: i64,
) -> Result<(), Failed> {
    let Some((schedule, zone)) = job.schedule() else {
        return Ok(());
    };
    let after = previous.unwrap_or(i64::MIN).max(job.fires_after);
    let (owed, _) = due(&schedule, &zone, job.created_at, after, latest);
    let ran_latest = outcome == FireOutcome::Fired;
    let missed = owed - u64::from(ran_latest || outcome == FireOutcome::Skipped);
    if missed == 0 {
        return Ok(());
    }
    let details = json!({
        "missed": missed,
        "latest": tend_model::format_rfc3339(latest),
        "ran_latest": ran_latest,
        "catch_up": job.definition.catch_up,
        "while_down": latest <= started,
        "at_least": owed >= tend_model::job::MAX_COUNTED,
    });
    ledger.record_job(
        &job.definition.name,
        EventKind::FireMissed,
        &Actor::Scheduler,
        details,
    )?;
    Ok(())
}

/// Starts the job's run for the fire at `at` under a background supervisor.
fn launch(state: &AppState, ledger: &dyn Ledger, job: &Job, at: i64) -> Result<(), Failed> {
    let c = state.config();
    let mut spec = job.spec(&c.run).map_err(|e| e.to_string())?;
    spec.fire = Some(at);
    tend_supervisor::failpoint("scheduler-after-claim");
    let answer = tend_supervisor::detach::launch(&c.exe, &c.home, &c.store, &spec)?;
    let id = match answer {
        Answer::Started { id } | Answer::FailedToStart { id } | Answer::Existing { id } => id,
        Answer::Error { message } => return Err(message.into()),
    };
    let id = tend_model::ExecutionId::parse(&id)?;
    let details = json!({ "scheduled_at": tend_model::format_rfc3339(at) });
    ledger.record(&id, EventKind::Fired, &Actor::Scheduler, details)?;
    Ok(())
}
