//! One suite for every ledger backend: each test is generic over `Ledger`
//! and runs against a fresh ledger of each backend (`factory.rs`): a
//! SQLite file, and a PostgreSQL database on the server
//! `TEND_TEST_POSTGRES` names. `both!` makes `NAME::sqlite` and
//! `NAME::postgres` of each; what only one backend has is tested in
//! `sqlite_only.rs` and `postgres_only.rs`.

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use tend_ledger::{
    AlertOutcome, Claim, Created, Error, Filter, FireOutcome, KillRequest, Ledger, NewExecution,
    Outcome, Transition,
};

mod factory;
mod leases;
use leases::*;
mod postgres_only;
mod sqlite_only;
use tend_model::job::JobDefinition;
use tend_model::{AlertKind, Execution, ProcessIdentity, Status};

fn new_exec(key: Option<&str>, reuse_finished_ms: Option<u64>) -> NewExecution {
    NewExecution {
        name: "job".into(),
        command: vec!["true".into()],
        cwd: "/".into(),
        env: BTreeMap::new(),
        labels: BTreeMap::from([("team".to_string(), "infra".to_string())]),
        key: key.map(str::to_string),
        reuse_finished_ms,
        host: "h".into(),
        tier: tend_model::Containment::Session,
        agent_id: Some("agent".into()),
        supervisor: ProcessIdentity {
            boot_id: "b".into(),
            pid: 1,
            start_time: 1,
            pidfd_ino: None,
        },
        timeout_ms: None,
        kill_grace_ms: 5000,
        log_dir: "/tmp/logs".into(),
        cgroup: None,
        heartbeat_timeout_ms: Some(1000),
        idle_timeout_ms: None,
        max_memory_bytes: None,
        job: None,
        job_slot: None,
        workspace: None,
        retries: 0,
        retry_backoff_ms: None,
        retry_max_backoff_ms: None,
        run_spec: None,
    }
}

fn created<L: Ledger + ?Sized>(l: &L, key: Option<&str>) -> Execution {
    match l.create(&new_exec(key, None)).unwrap() {
        Created::New(e) => e,
        Created::Existing(e) => panic!("expected a new execution, got {}", e.id),
    }
}

fn outcome(status: Status, actor: &str) -> Outcome {
    Outcome {
        status,
        reason: format!("by {actor}"),
        exit_code: Some(0),
        signal: None,
        kill: None,
        usage: Some(tend_ledger::Usage {
            cpu_ms: 12,
            max_rss_bytes: 4096,
        }),
        event: tend_model::EventKind::Exited,
        actor: actor
            .parse()
            .unwrap_or(tend_model::Actor::User(Some(actor.into()))),
        details: serde_json::json!({}),
    }
}

fn proc_id() -> ProcessIdentity {
    ProcessIdentity {
        boot_id: "b".into(),
        pid: 42,
        start_time: 7,
        pidfd_ino: Some(9),
    }
}

fn lifecycle_records_each_step<L: Ledger + ?Sized>(l: &L) {
    let e = created(l, None);
    assert_eq!(e.status, Status::Queued);
    assert_eq!(e.id.as_str().len(), 8);
    assert!(e.stdout_path.ends_with(&format!("{}.out", e.id)));
    let t = l.start(&e.id, &proc_id()).unwrap();
    assert!(t.won());
    assert_eq!(t.execution().pid, Some(42));
    let t = l
        .transition(
            &e.id,
            Status::Running,
            &outcome(Status::Succeeded, "supervisor"),
        )
        .unwrap();
    assert!(t.won());
    let kinds: Vec<String> = l
        .events(&e.id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "started", "exited"]);
    let got = l.get(&e.id).unwrap();
    assert_eq!(got.status, Status::Succeeded);
    assert!(got.finished_at.is_some());
}

fn a_terminal_status_never_changes<L: Ledger + ?Sized>(l: &L) {
    let e = created(l, None);
    l.start(&e.id, &proc_id()).unwrap();
    assert!(l
        .transition(
            &e.id,
            Status::Running,
            &outcome(Status::Failed, "supervisor")
        )
        .unwrap()
        .won());
    match l
        .transition(&e.id, Status::Running, &outcome(Status::Lost, "reaper"))
        .unwrap()
    {
        Transition::Lost(cur) => assert_eq!(cur.status, Status::Failed),
        Transition::Won(_) => panic!("a terminal row changed"),
    }
    // Even naming the current status as expected cannot move a terminal row.
    assert!(l
        .transition(&e.id, Status::Failed, &outcome(Status::Lost, "reaper"))
        .is_err());
    assert_eq!(l.get(&e.id).unwrap().status, Status::Failed);
    let refused = l
        .events(&e.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "transition-refused")
        .count();
    assert_eq!(refused, 1, "the loser's attempt is audited");
}

fn illegal_edges_are_refused<L: Ledger + ?Sized>(l: &L) {
    let e = created(l, None);
    // queued -> succeeded skips running: the ledger refuses it outright,
    // with a typed error (an API answers 409 to it, not 500).
    assert!(matches!(
        l.transition(&e.id, Status::Queued, &outcome(Status::Succeeded, "x")),
        Err(tend_ledger::Error::IllegalTransition { .. })
    ));
    assert!(l
        .transition(&e.id, Status::Queued, &outcome(Status::TimedOut, "x"))
        .is_err());
    assert_eq!(l.get(&e.id).unwrap().status, Status::Queued);
    assert!(l
        .transition(&e.id, Status::Queued, &outcome(Status::Lost, "reaper"))
        .unwrap()
        .won());
}

fn racing_finishers_have_one_winner<L: Ledger + Sync + 'static>(l: Arc<L>) {
    // 1,000 rounds: the finisher and the reaper are released together by a
    // barrier and each tries its compare-and-set on its own connection.
    for _ in 0..1000 {
        let e = created(&*l, None);
        l.start(&e.id, &proc_id()).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = [("supervisor", Status::Succeeded), ("reaper", Status::Lost)]
            .into_iter()
            .map(|(actor, st)| {
                let (l, b, id) = (l.clone(), barrier.clone(), e.id.clone());
                std::thread::spawn(move || {
                    b.wait();
                    l.transition(&id, Status::Running, &outcome(st, actor))
                        .unwrap()
                        .won()
                })
            })
            .collect();
        let wins: usize = handles
            .into_iter()
            .map(|h| h.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1);
        let events = l.events(&e.id).unwrap();
        let terminal = events.iter().filter(|e| e.kind == "exited").count();
        assert_eq!(terminal, 1);
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == "transition-refused")
                .count(),
            1
        );
    }
}

fn keys_dedupe_and_are_released_on_the_terminal_write<L: Ledger + ?Sized>(l: &L) {
    let first = created(l, Some("nightly"));
    match l.create(&new_exec(Some("nightly"), None)).unwrap() {
        Created::Existing(e) => assert_eq!(e.id, first.id),
        Created::New(_) => panic!("a live key must dedupe"),
    }
    // A lost execution frees its key: the next run starts afresh.
    l.transition(&first.id, Status::Queued, &outcome(Status::Lost, "reaper"))
        .unwrap();
    let second = created(l, Some("nightly"));
    l.start(&second.id, &proc_id()).unwrap();
    l.transition(
        &second.id,
        Status::Running,
        &outcome(Status::Succeeded, "supervisor"),
    )
    .unwrap();
    // So does a finished one, unless a recent result may be reused.
    assert_eq!(l.by_key("nightly").unwrap().unwrap().id, second.id);
    match l
        .create(&new_exec(Some("nightly"), Some(3_600_000)))
        .unwrap()
    {
        Created::Existing(e) => assert_eq!(e.id, second.id, "reused"),
        Created::New(_) => panic!("a recent success is reused when asked"),
    }
    let third = created(l, Some("nightly"));
    assert_eq!(third.key.as_deref(), Some("nightly"));
    l.transition(&third.id, Status::Queued, &outcome(Status::Cancelled, "x"))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    match l.create(&new_exec(Some("nightly"), Some(5))).unwrap() {
        Created::New(e) => assert_ne!(e.id, second.id, "too old to reuse"),
        Created::Existing(e) => panic!("{} is older than the window", e.id),
    }
}

fn prefixes_resolve_or_say_why_not<L: Ledger + ?Sized>(l: &L) {
    let ids: Vec<_> = (0..60).map(|_| created(l, None).id).collect();
    let one = &ids[0];
    assert_eq!(l.resolve(&one.as_str()[..6]).unwrap().id, *one);
    assert_eq!(l.resolve(one.as_str()).unwrap().id, *one);
    if !ids.iter().any(|i| i.as_str() == "zzzzzzzz") {
        assert!(matches!(l.resolve("zzzzzzzz"), Err(Error::NotFound(_))));
    }
    assert!(matches!(l.resolve("ab"), Err(Error::BadId(_))));
    assert!(matches!(l.resolve("ab'; --"), Err(Error::BadId(_))));
}

fn filters_select_by_status_name_label_and_limit<L: Ledger + ?Sized>(l: &L) {
    let a = created(l, None);
    let b = created(l, None);
    l.start(&b.id, &proc_id()).unwrap();
    let all = l.list(&Filter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, b.id, "newest first");
    let running = l
        .list(&Filter {
            statuses: vec![Status::Running],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(running.len(), 1);
    let by_label = l
        .list(&Filter {
            labels: vec![("team".into(), "infra".into())],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_label.len(), 2);
    let none = l
        .list(&Filter {
            labels: vec![("team".into(), "web".into())],
            ..Default::default()
        })
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        l.list(&Filter {
            name: Some("j*".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        2
    );
    assert_eq!(
        l.list(&Filter {
            name: Some("x*".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        0
    );
    assert_eq!(
        l.list(&Filter {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    assert_eq!(l.live().unwrap().len(), 2);
    let one = Filter {
        statuses: vec![Status::Running],
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(
        l.count(&one).unwrap(),
        1,
        "a count is of what the filter selects"
    );
    assert_eq!(
        l.count(&Filter {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap(),
        2,
        "paging aside"
    );
    let _ = a;
}

fn prune_takes_old_terminal_rows_and_never_a_live_one<L: Ledger + ?Sized>(l: &L) {
    let done = created(l, None);
    l.start(&done.id, &proc_id()).unwrap();
    l.transition(
        &done.id,
        Status::Running,
        &outcome(Status::Succeeded, "supervisor"),
    )
    .unwrap();
    let live = created(l, None);
    let later = tend_ledger::now_ms() + 1;
    std::thread::sleep(std::time::Duration::from_millis(5));
    let dry = l.prune(later, 10, true).unwrap();
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0].id, done.id);
    assert!(l.get(&done.id).is_ok(), "a dry run deletes nothing");
    assert_eq!(l.prune(later, 10, false).unwrap().len(), 1);
    assert!(matches!(l.get(&done.id), Err(Error::NotFound(_))));
    assert!(
        l.events(&done.id).unwrap_or_default().is_empty(),
        "its events went too"
    );
    assert_eq!(
        l.get(&live.id).unwrap().status,
        Status::Queued,
        "a live row stays"
    );
    assert!(
        l.prune(i64::MAX, 0, false).unwrap().is_empty(),
        "nothing terminal is left"
    );
}

fn prune_counts_age_from_the_end_not_the_start<L: Ledger + ?Sized>(l: &L) {
    let long = created(l, None);
    l.start(&long.id, &proc_id()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let cutoff = tend_ledger::now_ms();
    std::thread::sleep(std::time::Duration::from_millis(5));
    l.transition(
        &long.id,
        Status::Running,
        &outcome(Status::Succeeded, "supervisor"),
    )
    .unwrap();
    assert!(
        l.prune(cutoff, 10, false).unwrap().is_empty(),
        "created before the cutoff but ended after it: kept"
    );
    assert!(l.get(&long.id).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(l.prune(tend_ledger::now_ms(), 10, false).unwrap().len(), 1);
}

fn stats_percentiles_are_nearest_ranks<L: Ledger + ?Sized>(l: &L) {
    for _ in 0..10 {
        let e = created(l, None);
        l.start(&e.id, &proc_id()).unwrap();
        l.transition(
            &e.id,
            Status::Running,
            &outcome(Status::Succeeded, "supervisor"),
        )
        .unwrap();
    }
    let slow = created(l, None);
    l.start(&slow.id, &proc_id()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    l.transition(
        &slow.id,
        Status::Running,
        &outcome(Status::Failed, "supervisor"),
    )
    .unwrap();
    let d = l
        .stats(None, None)
        .unwrap()
        .duration_ms
        .expect("eleven ran");
    assert!(d.p50 < 300 && d.p90 < 300, "10 of 11 are quick: {d:?}");
    assert!(d.p95 >= 300 && d.p99 >= 300 && d.max >= 300, "{d:?}");
    let s = l.stats(None, None).unwrap();
    assert_eq!(s.slowest[0].key, "job");
    assert!(s.slowest[0].value >= 300);
}

fn stats_count_what_the_ledger_holds<L: Ledger + ?Sized>(l: &L) {
    let end = |name: &str, status: Status| {
        let mut n = new_exec(None, None);
        n.name = name.into();
        let e = match l.create(&n).unwrap() {
            Created::New(e) => e,
            Created::Existing(_) => unreachable!("no key"),
        };
        l.start(&e.id, &proc_id()).unwrap();
        l.transition(&e.id, Status::Running, &outcome(status, "supervisor"))
            .unwrap();
    };
    end("a", Status::Succeeded);
    end("a", Status::Succeeded);
    end("b", Status::Failed);
    end("b", Status::Lost);
    let live = created(l, None);
    let s = l.stats(None, None).unwrap();
    assert_eq!(s.total, 5);
    assert_eq!(s.by_status.get("succeeded"), Some(&2));
    assert_eq!(s.by_status.get("queued"), Some(&1));
    assert_eq!(s.failure_rate, Some(0.5), "2 of the 4 that ended");
    let d = s.duration_ms.expect("four ran");
    assert!(d.p50 <= d.p90 && d.p90 <= d.p99 && d.p99 <= d.max, "{d:?}");
    assert_eq!(s.most_failing[0].key, "b");
    assert_eq!(s.most_failing[0].value, 2);
    assert_eq!(s.lost_by_reason[0].value, 1);
    assert_eq!(s.per_hour.len(), 24);
    assert_eq!(s.per_hour.iter().map(|h| h.created).sum::<u64>(), 5);
    assert_eq!(s.per_hour[23].failed, 2, "this hour");
    let only_a = l.stats(None, Some("a")).unwrap();
    assert_eq!((only_a.total, only_a.failure_rate), (2, Some(0.0)));
    let later = l.stats(Some(tend_ledger::now_ms() + 60_000), None).unwrap();
    assert_eq!((later.total, later.duration_ms), (0, None));
    let _ = live;
}

fn kill_requests_are_stored_and_noop_when_finished<L: Ledger + ?Sized>(l: &L) {
    let e = created(l, None);
    l.start(&e.id, &proc_id()).unwrap();
    let req = KillRequest {
        actor: tend_model::Actor::User(Some("test".into())),
        reason: Some("stuck".into()),
        force: false,
        grace_ms: Some(100),
    };
    let after = l.request_kill(&e.id, &req).unwrap();
    let k = after.kill_request.expect("request stored");
    assert_eq!(k.by, "user:test");
    assert_eq!(k.grace_ms, Some(100));
    l.transition(
        &e.id,
        Status::Running,
        &outcome(Status::Killed, "supervisor"),
    )
    .unwrap();
    let again = l.request_kill(&e.id, &req).unwrap();
    assert_eq!(again.status, Status::Killed);
    let requests = l
        .events(&e.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "kill-requested")
        .count();
    assert_eq!(
        requests, 1,
        "a kill of a finished execution records nothing"
    );
}

fn heartbeats_touch_only_running_rows<L: Ledger + ?Sized>(l: &L) {
    let e = created(l, None);
    assert_eq!(
        l.heartbeat(&e.id, Some("early")).unwrap().last_heartbeat_at,
        None
    );
    l.start(&e.id, &proc_id()).unwrap();
    let hb = l.heartbeat(&e.id, Some("step 1")).unwrap();
    assert!(hb.last_heartbeat_at.is_some());
    assert_eq!(hb.progress.as_deref(), Some("step 1"));
    assert_eq!(hb.heartbeat_timeout_ms, Some(1000));
    let done = l
        .transition(
            &e.id,
            Status::Running,
            &outcome(Status::Succeeded, "supervisor"),
        )
        .unwrap();
    assert_eq!(
        done.execution().cpu_ms,
        Some(12),
        "usage is recorded with the outcome"
    );
    assert_eq!(done.execution().max_rss_bytes, Some(4096));
    assert_eq!(
        l.heartbeat(&e.id, Some("late"))
            .unwrap()
            .progress
            .as_deref(),
        Some("step 1")
    );
}

fn summaries_count_by_status_method_and_reason<L: Ledger + ?Sized>(l: &L) {
    let a = created(l, None);
    l.start(&a.id, &proc_id()).unwrap();
    let mut killed = outcome(Status::Killed, "supervisor");
    killed.kill = Some(tend_ledger::KillReport {
        method: tend_model::KillMethod::Graceful,
        duration_ms: 7,
        processes_signalled: 2,
    });
    l.transition(&a.id, Status::Running, &killed).unwrap();
    let b = created(l, None);
    l.transition(&b.id, Status::Queued, &outcome(Status::Lost, "reaper"))
        .unwrap();
    let c = created(l, None);
    l.start(&c.id, &proc_id()).unwrap();
    let s = l.summary(None, tend_ledger::now_ms() + 1000).unwrap();
    let count = |st: Status| {
        s.by_status
            .iter()
            .find(|(x, _)| *x == st)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        (
            count(Status::Killed),
            count(Status::Lost),
            count(Status::Running)
        ),
        (1, 1, 1)
    );
    assert_eq!(s.started, 2);
    assert_eq!(s.long_running, 1, "c started before the cutoff");
    assert_eq!(
        s.kills_by_method,
        vec![(tend_model::KillMethod::Graceful, 1)]
    );
    assert_eq!(s.lost_by_reason, vec![("by reaper".to_string(), 1)]);
    assert_eq!(s.kill_duration_le[0], (5, 0));
    assert_eq!(s.kill_duration_le[1], (10, 1));
    assert_eq!(s.kill_duration_sum_ms, 7);
}

fn a_working_directory_is_kept_byte_for_byte<L: Ledger + ?Sized>(l: &L) {
    use std::os::unix::ffi::OsStrExt;
    for raw in [
        &b"/tmp/x\xffdir"[..],
        "/tmp/x\u{fffd}dir".as_bytes(),
        b"/plain",
    ] {
        let mut new = new_exec(None, None);
        new.cwd = std::ffi::OsStr::from_bytes(raw).into();
        let Created::New(e) = l.create(&new).unwrap() else {
            panic!("expected a new execution");
        };
        assert_eq!(e.cwd.as_os_str().as_bytes(), raw, "as created");
        let again = l.get(&e.id).unwrap();
        assert_eq!(again.cwd.as_os_str().as_bytes(), raw, "as read back");
    }
}

fn job_def(name: &str) -> JobDefinition {
    JobDefinition {
        name: name.into(),
        run: tend_model::run::RunOptions {
            command: vec!["true".into()],
            cwd: Some("/".into()),
            ..Default::default()
        },
        schedule: Some("@every 1s".into()),
        timezone: "UTC".into(),
        concurrency: tend_model::Concurrency::Forbid,
        catch_up: tend_model::CatchUp::Latest,
    }
}

fn job_run<L: Ledger + ?Sized>(l: &L, job: &str) -> Execution {
    let mut new = new_exec(None, None);
    new.job = Some(job.into());
    match l.create(&new).unwrap() {
        Created::New(e) => e,
        Created::Existing(e) => panic!("expected a new execution, got {}", e.id),
    }
}

fn jobs_are_stored_refused_twice_replaced_paused_and_removed<L: Ledger + ?Sized>(l: &L) {
    let j = l.add_job(&job_def("backup"), false).unwrap();
    assert_eq!((j.next_number, j.paused), (1, false));
    assert_eq!(j.definition, job_def("backup"));
    assert!(
        matches!(l.add_job(&job_def("backup"), false), Err(Error::JobExists(n)) if n == "backup")
    );
    let mut changed = job_def("backup");
    changed.schedule = Some("@hourly".into());
    let r = l.add_job(&changed, true).unwrap();
    assert_eq!(r.definition.schedule.as_deref(), Some("@hourly"));
    assert_eq!(
        r.created_at, j.created_at,
        "a replaced job keeps its creation time"
    );
    assert!(l.set_paused("backup", true).unwrap().paused);
    let resumed = l.set_paused("backup", false).unwrap();
    assert!(!resumed.paused && resumed.fires_after >= r.fires_after);
    l.add_job(&job_def("alpha"), false).unwrap();
    let names: Vec<String> = l
        .jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.definition.name)
        .collect();
    assert_eq!(names, ["alpha", "backup"]);
    assert_eq!(l.remove_job("backup").unwrap().definition.name, "backup");
    assert!(matches!(l.job("backup"), Err(Error::NoJob(_))));
    assert!(matches!(l.remove_job("backup"), Err(Error::NoJob(_))));
    assert!(matches!(l.set_paused("nope", true), Err(Error::NoJob(_))));
}

fn job_numbers_count_up_and_are_never_reused<L: Ledger + ?Sized>(l: &L) {
    l.add_job(&job_def("backup"), false).unwrap();
    let numbers: Vec<(Option<u64>, Option<u32>)> = (0..3)
        .map(|_| {
            let e = job_run(l, "backup");
            (e.job_number, e.attempt)
        })
        .collect();
    assert_eq!(
        numbers,
        [(Some(1), Some(1)), (Some(2), Some(1)), (Some(3), Some(1))]
    );
    assert_eq!(l.job("backup").unwrap().next_number, 4);
    l.remove_job("backup").unwrap();
    l.add_job(&job_def("backup"), false).unwrap();
    assert_eq!(l.job("backup").unwrap().next_number, 4);
    let e = job_run(l, "backup");
    assert_eq!(e.job_ref().as_deref(), Some("backup#4"));
    let filter = Filter {
        job: Some("backup".into()),
        ..Filter::default()
    };
    assert_eq!(l.list(&filter).unwrap().len(), 4);
    assert_eq!(l.count(&filter).unwrap(), 4);
    created(l, None);
    assert_eq!(l.count(&filter).unwrap(), 4, "a plain run is no job's");
}

fn a_fire_is_decided_once_and_never_before_a_later_one<L: Ledger + ?Sized>(l: &L) {
    let won = |c: Claim| matches!(c, Claim::Won { .. });
    assert_eq!(
        l.claim_fire("j", 2000, "a", FireOutcome::Fired).unwrap(),
        Claim::Won { previous: None }
    );
    assert!(!won(l
        .claim_fire("j", 2000, "b", FireOutcome::Fired)
        .unwrap()));
    assert!(
        !won(l.claim_fire("j", 1000, "b", FireOutcome::Missed).unwrap()),
        "older than a decided fire"
    );
    assert_eq!(
        l.claim_fire("j", 5000, "b", FireOutcome::Skipped).unwrap(),
        Claim::Won {
            previous: Some(2000)
        }
    );
    assert!(won(l
        .claim_fire("other", 1000, "a", FireOutcome::Fired)
        .unwrap()));
    assert_eq!(l.last_fire("j").unwrap(), Some(5000));
    assert_eq!(l.last_fire("none").unwrap(), None);
    let actor = tend_model::Actor::Scheduler;
    l.record_job(
        "j",
        tend_model::EventKind::FireSkipped,
        &actor,
        serde_json::json!({"at": 5000}),
    )
    .unwrap();
    let ev = l.job_events("j").unwrap();
    assert_eq!(
        (ev.len(), ev[0].kind.as_str(), ev[0].actor.as_str()),
        (1, "fire-skipped", "scheduler")
    );
    assert!(l.job_events("other").unwrap().is_empty());
    let missed = serde_json::json!({"missed": 4});
    l.record_job("j", tend_model::EventKind::FireMissed, &actor, missed)
        .unwrap();
    let stats = l.fire_stats(None).unwrap();
    let j = stats.iter().find(|s| s.job == "j").unwrap();
    assert_eq!((j.fired, j.skipped, j.missed), (1, 1, 4));
    assert!(l
        .fire_stats(Some(tend_ledger::now_ms() + 60_000))
        .unwrap()
        .is_empty());
}

/// Many connections racing for the same fires (as daemons would): each
/// fire goes to exactly one.
fn racing_claims_have_one_winner_per_fire<L: Ledger + Send + Sync + 'static>(l: Arc<L>) {
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (l, barrier) = (l.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (1..=20)
                    .filter(|slot| {
                        let by = format!("daemon-{t}");
                        matches!(
                            l.claim_fire("j", slot * 1000, &by, FireOutcome::Fired)
                                .unwrap(),
                            Claim::Won { .. }
                        )
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut wins: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let n = wins.len();
    wins.sort();
    wins.dedup();
    assert_eq!(wins.len(), n, "a fire was won twice");
    assert_eq!(l.last_fire("j").unwrap(), Some(20_000));
}

fn retried_run(l: &(impl Ledger + ?Sized), retries: u32, key: Option<&str>) -> Execution {
    let new = NewExecution {
        retries,
        retry_backoff_ms: Some(1000),
        retry_max_backoff_ms: Some(300_000),
        run_spec: Some("{\"spec\":1}".into()),
        ..new_exec(key, None)
    };
    match l.create(&new).unwrap() {
        Created::New(e) => e,
        Created::Existing(e) => panic!("expected a new execution, got {}", e.id),
    }
}

fn failed(code: i32) -> Outcome {
    Outcome {
        exit_code: Some(code),
        ..outcome(Status::Failed, "supervisor")
    }
}

fn retry(pid: i32) -> tend_ledger::Retry {
    tend_ledger::Retry {
        delay_ms: 60_000,
        supervisor: ProcessIdentity { pid, ..proc_id() },
    }
}

fn a_retry_is_recorded_with_the_outcome_and_holds_the_key<L: Ledger + ?Sized>(l: &L) {
    let first = retried_run(l, 1, Some("nightly"));
    assert_eq!(first.attempt, Some(1));
    l.start(&first.id, &proc_id()).unwrap();
    let (t, next) = l
        .transition_retrying(&first.id, Status::Running, &failed(3), &retry(77))
        .unwrap();
    assert!(t.won());
    let next = next.expect("a next attempt");
    assert_eq!(next.status, Status::Queued);
    assert_eq!((next.attempt, next.retries), (Some(2), 1));
    assert_eq!(next.retry_of.as_ref(), Some(&first.id));
    assert_eq!(next.supervisor.pid, 77);
    assert!(next.start_after.unwrap() >= tend_ledger::now_ms() + 50_000);
    assert!(next.stdout_path.ends_with(&format!("{}.out", next.id)));
    assert_eq!(
        l.run_spec(&next.id).unwrap().as_deref(),
        Some("{\"spec\":1}")
    );
    assert_eq!(l.next_attempt(&first.id).unwrap().unwrap().id, next.id);
    // The key went from the attempt that ended to the one that follows.
    let holder = l.by_key("nightly").unwrap().unwrap();
    assert_eq!(holder.id, next.id);
    assert!(matches!(
        l.create(&new_exec(Some("nightly"), None)).unwrap(),
        Created::Existing(_)
    ));
    let kinds: Vec<String> = l
        .events(&first.id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"retry-scheduled".to_string()), "{kinds:?}");
    // The last attempt is not retried again, and neither is a kill.
    l.start(&next.id, &proc_id()).unwrap();
    let (t, none) = l
        .transition_retrying(&next.id, Status::Running, &failed(3), &retry(77))
        .unwrap();
    assert!(t.won() && none.is_none());
    let other = retried_run(l, 3, None);
    l.start(&other.id, &proc_id()).unwrap();
    let killed = outcome(Status::Killed, "user");
    let (_, none) = l
        .transition_retrying(&other.id, Status::Running, &killed, &retry(77))
        .unwrap();
    assert!(none.is_none(), "a killed attempt is never retried");
}

fn a_pending_attempt_is_adopted_once<L: Ledger + ?Sized>(l: &L) {
    let first = retried_run(l, 2, None);
    l.start(&first.id, &proc_id()).unwrap();
    let (_, next) = l
        .transition_retrying(&first.id, Status::Running, &failed(1), &retry(77))
        .unwrap();
    let next = next.unwrap();
    let gone = next.supervisor.clone();
    let new = ProcessIdentity {
        pid: 88,
        ..proc_id()
    };
    let t = l.adopt(&next.id, &gone, &new).unwrap();
    assert!(t.won());
    assert_eq!(t.execution().supervisor.pid, 88);
    // A second adopter, still naming the gone supervisor, loses.
    let late = ProcessIdentity {
        pid: 99,
        ..proc_id()
    };
    let t = l.adopt(&next.id, &gone, &late).unwrap();
    assert!(!t.won());
    assert_eq!(t.execution().supervisor.pid, 88);
}

/// A lost execution on its way to `lost` through the ledger's own
/// compare-and-set, as the reaper makes it.
fn lost_one<L: Ledger + ?Sized>(l: &L) -> Execution {
    let e = created(l, None);
    l.start(&e.id, &proc_id()).unwrap();
    let t = l
        .transition(&e.id, Status::Running, &outcome(Status::Lost, "reaper"))
        .unwrap();
    assert!(t.won());
    e
}

fn only_the_last_failing_attempt_of_a_retried_run_alerts<L: Ledger + ?Sized>(l: &L) {
    let first = retried_run(l, 1, None);
    l.start(&first.id, &proc_id()).unwrap();
    let (_, next) = l
        .transition_retrying(&first.id, Status::Running, &failed(3), &retry(7))
        .unwrap();
    assert_eq!(l.alert_counts(0).unwrap().queued, 0, "a retry follows it");
    let next = next.unwrap();
    l.start(&next.id, &proc_id()).unwrap();
    l.transition_retrying(&next.id, Status::Running, &failed(3), &retry(7))
        .unwrap();
    let got = l.claim_alerts("a", 60_000, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].execution.as_ref(), Some(&next.id));
}

fn an_outcome_queues_its_alert_and_one_claimer_gets_it<L: Ledger + ?Sized>(l: &L) {
    let ok = created(l, None);
    l.start(&ok.id, &proc_id()).unwrap();
    l.transition(
        &ok.id,
        Status::Running,
        &outcome(Status::Succeeded, "supervisor"),
    )
    .unwrap();
    assert_eq!(
        l.alert_counts(0).unwrap().queued,
        0,
        "success alerts nobody"
    );
    let e = lost_one(l);
    assert_eq!(l.alert_counts(0).unwrap().queued, 1);
    let got = l.claim_alerts("a", 60_000, 10).unwrap();
    assert_eq!(got.len(), 1);
    let a = &got[0];
    assert_eq!(
        (a.kind, a.execution.as_ref()),
        (AlertKind::Lost, Some(&e.id))
    );
    assert_eq!(a.details["reason"], "by reaper");
    assert_eq!(a.details["name"], "job");
    assert!(
        l.claim_alerts("b", 60_000, 10).unwrap().is_empty(),
        "claimed twice"
    );
    let done = AlertOutcome::Delivered {
        delivered_to: vec!["w1".into()],
    };
    assert!(
        !l.finish_alert(a.id, "b", &done).unwrap(),
        "b holds no claim"
    );
    assert!(l.finish_alert(a.id, "a", &done).unwrap());
    assert!(!l.finish_alert(a.id, "a", &done).unwrap(), "finished twice");
    let kinds: Vec<String> = l
        .events(&e.id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.last().map(String::as_str), Some("alert-sent"));
    assert!(l.claim_alerts("a", 60_000, 10).unwrap().is_empty());
    assert_eq!(l.alert_counts(0).unwrap().queued, 0);
}

fn a_retry_waits_and_keeps_what_was_delivered<L: Ledger + ?Sized>(l: &L) {
    lost_one(l);
    let a = l.claim_alerts("a", 60_000, 10).unwrap().remove(0);
    let later = tend_ledger::now_ms() + 60_000;
    let retry = AlertOutcome::Retry {
        at: later,
        error: "500".into(),
        delivered_to: vec!["w1".into()],
    };
    assert!(l.finish_alert(a.id, "a", &retry).unwrap());
    assert!(
        l.claim_alerts("a", 60_000, 10).unwrap().is_empty(),
        "not due yet"
    );
    assert_eq!(l.next_alert_at().unwrap(), Some(later));
    let now = AlertOutcome::Retry {
        at: 0,
        error: "500".into(),
        delivered_to: vec!["w1".into()],
    };
    // Only the holder of a claim may reschedule: take it again first.
    assert!(!l.finish_alert(a.id, "a", &now).unwrap());
    let e = lost_one(l);
    let b = l.claim_alerts("a", 60_000, 10).unwrap().remove(0);
    assert_eq!(b.execution.as_ref(), Some(&e.id));
    let failed = AlertOutcome::Failed {
        error: "500 for a day".into(),
        delivered_to: vec![],
    };
    assert!(l.finish_alert(b.id, "a", &failed).unwrap());
    let c = l.alert_counts(0).unwrap();
    assert_eq!((c.queued, c.failed), (1, 1));
    assert_eq!(c.last_error.as_deref(), Some("500 for a day"));
    let kinds: Vec<String> = l
        .events(&e.id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.last().map(String::as_str), Some("alert-failed"));
    assert_eq!(l.prune_alerts(tend_ledger::now_ms() + 1).unwrap(), 2);
    assert_eq!(
        l.alert_counts(0).unwrap(),
        tend_ledger::AlertCounts::default()
    );
}

fn an_expired_claim_is_retaken_and_a_released_one_at_once<L: Ledger + ?Sized>(l: &L) {
    lost_one(l);
    // A sender that died holding it: its lease is over.
    let a = l.claim_alerts("dead", -1, 10).unwrap().remove(0);
    let b = l.claim_alerts("alive", 60_000, 10).unwrap();
    assert_eq!(b.iter().map(|b| b.id).collect::<Vec<_>>(), [a.id]);
    let done = AlertOutcome::Delivered {
        delivered_to: vec![],
    };
    assert!(
        !l.finish_alert(a.id, "dead", &done).unwrap(),
        "its claim was retaken"
    );
    assert_eq!(l.release_alerts("alive").unwrap(), 1);
    let c = l.claim_alerts("again", 60_000, 10).unwrap();
    assert_eq!(c.len(), 1);
    let skip = AlertOutcome::Skipped {
        why: "not configured".into(),
    };
    assert!(l.finish_alert(c[0].id, "again", &skip).unwrap());
    assert!(l.claim_alerts("again", 60_000, 10).unwrap().is_empty());
}

fn missed_fires_and_level_changes_queue_alerts<L: Ledger + ?Sized>(l: &L) {
    let actor = tend_model::Actor::Scheduler;
    let missed = serde_json::json!({"missed": 3});
    l.record_job("j", tend_model::EventKind::FireMissed, &actor, missed)
        .unwrap();
    let a = l.claim_alerts("a", 60_000, 10).unwrap().remove(0);
    assert_eq!(
        (a.kind, a.job.as_deref()),
        (AlertKind::FireMissed, Some("j"))
    );
    assert_eq!(a.details["missed"], 3);
    let done = AlertOutcome::Delivered {
        delivered_to: vec![],
    };
    assert!(l.finish_alert(a.id, "a", &done).unwrap());
    let kinds: Vec<String> = l
        .job_events("j")
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["fire-missed", "alert-sent"]);
    let lr = AlertKind::LongRunning;
    let set = |level: &str| {
        l.set_alert_level("lr", level, "normal", lr, serde_json::json!({"count": 1}))
            .unwrap()
    };
    assert!(!set("normal"), "the quiet level alerts nobody");
    assert!(set("above"));
    assert!(!set("above"), "the same level twice");
    assert!(set("normal"), "falling back alerts too");
    let got = l.claim_alerts("a", 60_000, 10).unwrap();
    let levels: Vec<&str> = got
        .iter()
        .map(|a| a.details["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["above", "normal"]);
    assert_eq!(got[1].details["previous"], "above");
}

/// Several senders claiming at once (as daemons on one ledger would): each
/// alert goes to exactly one.
fn racing_senders_claim_each_alert_once<L: Ledger + Send + Sync + 'static>(l: Arc<L>) {
    for _ in 0..30 {
        lost_one(&*l);
    }
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (l, barrier) = (l.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let by = format!("daemon-{t}");
                let mut mine = Vec::new();
                loop {
                    let got = l.claim_alerts(&by, 60_000, 3).unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|a| a.id));
                }
            })
        })
        .collect();
    let mut ids: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (ids.len(), n),
        (30, 30),
        "an alert was claimed twice or never"
    );
}

fn a_workspace_is_recorded_and_outlives_its_executions_until_cleaned<L: Ledger + ?Sized>(l: &L) {
    let new = NewExecution {
        workspace: Some(tend_ledger::NewWorkspace {
            kind: tend_model::WorkspaceKind::Worktree,
            dir: "/home/w".into(),
            repository: Some("/src/repo".into()),
        }),
        retries: 1,
        ..new_exec(None, None)
    };
    let Created::New(e) = l.create(&new).unwrap() else {
        panic!("a new execution")
    };
    let w = e.workspace.clone().expect("recorded with the execution");
    assert_eq!(w.path, format!("/home/w/{}", e.id));
    assert_eq!(w.branch, Some(format!("exec-{}", e.id)));
    assert!(l.left_workspaces().unwrap().is_empty(), "in use");
    // A retry shares it.
    l.start(&e.id, &proc_id()).unwrap();
    let (_, next) = l
        .transition_retrying(&e.id, Status::Running, &failed(1), &retry(5))
        .unwrap();
    let next = next.unwrap();
    assert_eq!(next.workspace, Some(w.clone()));
    l.transition(
        &next.id,
        Status::Queued,
        &outcome(Status::Cancelled, "user"),
    )
    .unwrap();
    assert_eq!(
        l.prune(tend_ledger::now_ms() + 1, 0, false).unwrap().len(),
        2
    );
    let left = l.left_workspaces().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].workspace.clone(), left[0].worktree_removed),
        (w.clone(), false)
    );
    l.workspace_cleaned(&w.path, true).unwrap();
    assert!(
        l.left_workspaces().unwrap()[0].worktree_removed,
        "its branch stays known"
    );
    l.workspace_cleaned(&w.path, false).unwrap();
    assert!(l.left_workspaces().unwrap().is_empty());
}

/// Racing creates of one key (as several hosts launching the same
/// `--key` would): one records an execution, every other gets that one.
fn racing_creates_share_one_key<L: Ledger + Send + Sync + 'static>(l: Arc<L>) {
    for round in 0..20 {
        let key = format!("k{round}");
        let barrier = Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (l, barrier, key) = (l.clone(), barrier.clone(), key.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    match l.create(&new_exec(Some(&key), None)).unwrap() {
                        Created::New(e) => (true, e.id),
                        Created::Existing(e) => (false, e.id),
                    }
                })
            })
            .collect();
        let got: Vec<(bool, tend_model::ExecutionId)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(got.iter().filter(|(new, _)| *new).count(), 1, "{got:?}");
        assert!(got.iter().all(|(_, id)| *id == got[0].1), "{got:?}");
    }
}

/// Names, labels, keys, job names and filters that look like SQL (or like
/// a pattern's syntax) are stored as they are and matched literally.
fn hostile_text_is_stored_and_matched_literally<L: Ledger + ?Sized>(l: &L) {
    let hostile = [
        "x'; DROP TABLE executions; --",
        "a\"b\\c' OR '1'='1",
        "a.b(c)|d+$^{1}",
        "100% _done_",
    ];
    for text in hostile {
        let mut new = new_exec(Some(text), None);
        new.name = text.into();
        new.labels = BTreeMap::from([(text.to_string(), text.to_string())]);
        new.job = Some(text.into());
        let Created::New(e) = l.create(&new).unwrap() else {
            panic!("a new execution for {text}");
        };
        assert_eq!((e.name.as_str(), e.key.as_deref()), (text, Some(text)));
        assert_eq!(l.by_key(text).unwrap().unwrap().id, e.id, "{text}");
        let exact = Filter {
            name: Some(
                text.replace('[', "[[]")
                    .replace('*', "[*]")
                    .replace('?', "[?]"),
            ),
            labels: vec![(text.into(), text.into())],
            job: Some(text.into()),
            ..Filter::default()
        };
        let found = l.list(&exact).unwrap();
        assert_eq!(
            found.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&e.id],
            "{text}"
        );
        let mut def = job_def(text);
        def.name = text.into();
        assert_eq!(l.add_job(&def, false).unwrap().definition.name, text);
        assert_eq!(l.job(text).unwrap().next_number, 2, "{text}");
    }
    // Pattern syntax in a name is literal unless it is the glob's own.
    let by = |glob: &str| {
        l.list(&Filter {
            name: Some(glob.into()),
            ..Filter::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(by("a.b(c)|d+$^{1}"), 1);
    assert_eq!(by("a?b(c)|d+$^{1}"), 1, "? is any one character");
    assert_eq!(by("axb*"), 0, "a dot is not any character");
    assert_eq!(by("100%*"), 1);
    assert_eq!(by("1%"), 0, "% is no wildcard");
    assert_eq!(by("*"), hostile.len());
    assert_eq!(by("[x1]*"), 2);
    assert_eq!(by("[^x1]*"), 2);
    assert_eq!(
        l.jobs().unwrap().len(),
        hostile.len(),
        "every table is still there"
    );
}

/// A test of each backend for each generic test: `NAME::sqlite` and
/// `NAME::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                let (_dir, l) = super::factory::sqlite();
                super::$name(&l);
            }

            #[test]
            fn postgres() {
                let Some(db) = super::factory::Database::fresh() else { return };
                super::$name(&db.ledger());
            }
        }
    )*};
}

/// The same for the racing tests, whose ledger takes each call on a
/// connection of its own.
macro_rules! both_racing {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use std::sync::Arc;

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let l = super::factory::Many::PerCall(dir.path().join("tend.db"));
                super::$name(Arc::new(l));
            }

            #[test]
            fn postgres() {
                let Some(db) = super::factory::Database::fresh() else { return };
                super::$name(Arc::new(super::factory::Many::pool(&db.url, 6)));
            }
        }
    )*};
}

both!(
    lifecycle_records_each_step,
    a_terminal_status_never_changes,
    illegal_edges_are_refused,
    keys_dedupe_and_are_released_on_the_terminal_write,
    prefixes_resolve_or_say_why_not,
    filters_select_by_status_name_label_and_limit,
    kill_requests_are_stored_and_noop_when_finished,
    heartbeats_touch_only_running_rows,
    summaries_count_by_status_method_and_reason,
    a_working_directory_is_kept_byte_for_byte,
    stats_count_what_the_ledger_holds,
    stats_percentiles_are_nearest_ranks,
    prune_takes_old_terminal_rows_and_never_a_live_one,
    prune_counts_age_from_the_end_not_the_start,
    jobs_are_stored_refused_twice_replaced_paused_and_removed,
    job_numbers_count_up_and_are_never_reused,
    a_fire_is_decided_once_and_never_before_a_later_one,
    a_retry_is_recorded_with_the_outcome_and_holds_the_key,
    a_pending_attempt_is_adopted_once,
    a_workspace_is_recorded_and_outlives_its_executions_until_cleaned,
    only_the_last_failing_attempt_of_a_retried_run_alerts,
    an_outcome_queues_its_alert_and_one_claimer_gets_it,
    a_retry_waits_and_keeps_what_was_delivered,
    an_expired_claim_is_retaken_and_a_released_one_at_once,
    missed_fires_and_level_changes_queue_alerts,
    hostile_text_is_stored_and_matched_literally,
    a_lease_is_renewed_in_place_and_taken_anew_after_it_expired,
    an_expired_agents_live_executions_are_lost_by_its_lease,
);

both_racing!(
    racing_finishers_have_one_winner,
    racing_creates_share_one_key,
    racing_claims_have_one_winner_per_fire,
    racing_senders_claim_each_alert_once,
    racing_reapers_make_one_verdict,
);
