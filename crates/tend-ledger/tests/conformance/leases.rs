//! Agent leases: on PostgreSQL a renewal is one write that keeps the epoch
//! while the lease is valid and takes a new one after it expired, and an
//! expired agent's live executions are marked `lost` by exactly one of
//! racing reapers; on SQLite nothing is written and nothing is judged.

use std::sync::Arc;
use std::time::Duration;

use tend_ledger::{ExpiredClaim, LeaseHolder, Ledger, NewExecution};
use tend_model::Status;

fn holder(agent: &str) -> LeaseHolder {
    LeaseHolder {
        agent_id: agent.into(),
        host: format!("{agent}-host"),
        api: Some("127.0.0.1:7757".into()),
    }
}

fn of_agent<L: Ledger + ?Sized>(l: &L, agent: &str) -> tend_model::Execution {
    let new = NewExecution {
        agent_id: Some(agent.into()),
        ..super::new_exec(None, None)
    };
    match l.create(&new).unwrap() {
        tend_ledger::Created::New(e) => e,
        tend_ledger::Created::Existing(e) => panic!("{} holds no key", e.id),
    }
}

pub(crate) fn a_lease_is_renewed_in_place_and_taken_anew_after_it_expired<L: Ledger + ?Sized>(
    l: &L,
) {
    let a = holder("agent-a");
    let Some(first) = l.renew_lease(&a, 60_000).unwrap() else {
        assert!(!l.shared(), "a shared ledger keeps leases");
        assert!(l.leases().unwrap().is_empty());
        of_agent(l, "agent-a");
        assert!(l.claim_expired("agent-b").unwrap().is_empty());
        return;
    };
    assert!(l.shared());
    assert_eq!((first.epoch, first.fresh, first.renewals), (1, true, 1));
    let again = l.renew_lease(&a, 60_000).unwrap().unwrap();
    assert_eq!((again.epoch, again.fresh, again.renewals), (1, false, 2));
    // A TTL of 1 ms has run out by the next renewal: a new epoch.
    l.renew_lease(&a, 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let anew = l.renew_lease(&a, 60_000).unwrap().unwrap();
    assert_eq!((anew.epoch, anew.fresh, anew.renewals), (2, true, 4));
    let rows = l.leases().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].api.as_deref(), Some("127.0.0.1:7757"));
    assert!(!rows[0].expired);
}

pub(crate) fn an_expired_agents_live_executions_are_lost_by_its_lease<L: Ledger + ?Sized>(l: &L) {
    let (a, b) = (holder("agent-a"), holder("agent-b"));
    if l.renew_lease(&a, 60_000).unwrap().is_none() {
        return;
    }
    l.renew_lease(&b, 60_000).unwrap();
    let running = of_agent(l, "agent-a");
    l.start(&running.id, &running.supervisor).unwrap();
    let queued = of_agent(l, "agent-a");
    let bs = of_agent(l, "agent-b");
    // Valid: nothing is judged.
    assert!(l.claim_expired("agent-b").unwrap().is_empty());
    l.renew_lease(&a, 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // Its own reaper never judges its own lease.
    assert!(l.claim_expired("agent-a").unwrap().is_empty());
    let claims = l.claim_expired("agent-b").unwrap();
    let [ExpiredClaim::Claimed {
        agent_id,
        epoch,
        lost,
        ..
    }] = &claims[..]
    else {
        panic!("one claim expected: {claims:?}");
    };
    assert_eq!((agent_id.as_str(), *epoch, lost.len()), ("agent-a", 1, 2));
    for id in [&running.id, &queued.id] {
        let e = l.get(id).unwrap();
        assert_eq!(e.status, Status::Lost);
        assert_eq!(
            e.reason.as_deref(),
            Some("agent agent-a (agent-a-host) lease expired")
        );
    }
    assert_eq!(l.get(&bs.id).unwrap().status, Status::Queued);
    // Judged once: nothing is left to claim.
    assert!(l.claim_expired("agent-b").unwrap().is_empty());
    let row = l.leases().unwrap().into_iter().next().unwrap();
    assert_eq!(row.claimed, Some((1, "agent-b".to_string())));
    // The returning agent takes a new epoch; its new executions are valid.
    let back = l.renew_lease(&a, 60_000).unwrap().unwrap();
    assert_eq!((back.epoch, back.fresh), (2, true));
    of_agent(l, "agent-a");
    assert!(l.claim_expired("agent-b").unwrap().is_empty());
}

pub(crate) fn racing_reapers_make_one_verdict<L: Ledger + Send + Sync + 'static>(l: Arc<L>) {
    let dead = holder("dead");
    if l.renew_lease(&dead, 1).unwrap().is_none() {
        return;
    }
    let ids: Vec<_> = (0..20).map(|_| of_agent(&*l, "dead").id).collect();
    std::thread::sleep(Duration::from_millis(20));
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (l, barrier) = (l.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                l.claim_expired(&format!("reaper-{t}")).unwrap()
            })
        })
        .collect();
    let claims: Vec<ExpiredClaim> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let won: Vec<_> = claims
        .iter()
        .filter_map(|c| match c {
            ExpiredClaim::Claimed { lost, .. } => Some(lost.len()),
            ExpiredClaim::AlreadyClaimed { .. } => None,
        })
        .collect();
    assert_eq!(won, vec![20], "exactly one verdict: {claims:?}");
    for id in &ids {
        let events = l.events(id).unwrap();
        let lost = events.iter().filter(|e| e.kind == "marked-lost").count();
        assert_eq!(lost, 1);
    }
}
