use std::collections::HashMap;
use std::time::Duration;

use tend_ledger::Ledger;

use crate::support::*;

const TERMINAL_EVENTS: &[&str] = &[
    "exited",
    "timed-out",
    "killed",
    "marked-lost",
    "failed-to-start",
    "cancelled",
];

/// After crashes, one reap must leave the ledger true: no live row, exactly
/// one terminal event per execution, no marked process, a sound file.
fn assert_consistent(env: &TestEnv) {
    env.ok(&["reap"]);
    let ledger = env.ledger();
    assert!(
        ledger.live().unwrap().is_empty(),
        "rows left live after reap"
    );
    let all = ledger.list(&tend_ledger::Filter::default()).unwrap();
    for e in &all {
        let terminal = ledger
            .events(&e.id)
            .unwrap()
            .iter()
            .filter(|ev| TERMINAL_EVENTS.contains(&ev.kind.as_str()))
            .count();
        assert_eq!(terminal, 1, "{} has {terminal} terminal events", e.id);
        if e.status.as_str() == "lost" {
            assert!(e.reason.as_deref().is_some_and(|r| !r.is_empty()));
        }
    }
    env.assert_no_marked(None, Duration::from_secs(10));
    if !env.is_postgres() {
        assert!(env.sqlite().check_integrity().is_ok());
    }
}

#[test]
fn a_crash_at_every_commit_boundary_leaves_a_true_ledger() {
    let env = TestEnv::new();
    let points = [
        "after-queued-commit",
        "after-spawn",
        "before-terminal-commit",
        "after-terminal-commit",
    ];
    let mut outcomes: HashMap<&str, Vec<String>> = HashMap::new();
    for point in points {
        for _ in 0..5 {
            let out = env
                .cmd()
                .env("TEND_FAILPOINT", point)
                .args(["run", "--", "sh", "-c", "sleep 1000 & sleep 0.05"])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                None,
                "{point}: the supervisor was to die"
            );
            let e = env.json(&["list", "--limit", "1"]);
            outcomes
                .entry(point)
                .or_default()
                .push(e[0]["status"].as_str().unwrap().to_string());
        }
        assert_consistent(&env);
    }
    assert!(outcomes["after-queued-commit"].iter().all(|s| s == "lost"));
    assert!(outcomes["after-spawn"].iter().all(|s| s == "lost"));
    assert!(outcomes["before-terminal-commit"]
        .iter()
        .all(|s| s == "lost"));
    assert!(
        outcomes["after-terminal-commit"]
            .iter()
            .all(|s| s == "succeeded"),
        "{outcomes:?}"
    );
}

/// Seeded random SIGKILLs of supervisors around short commands. The default
/// suite runs 40 rounds; `TEND_CRASH_ROUNDS=200` (or more) runs the long one.
#[test]
fn seeded_random_supervisor_kills_leave_a_true_ledger() {
    let rounds: u64 = std::env::var("TEND_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let env = TestEnv::new();
    let mut seed: u64 = 0x7e4d_5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..rounds {
        let delay = Duration::from_millis(next() % 60);
        let mut child = env
            .cmd()
            .args([
                "run",
                "--kill-grace",
                "200ms",
                "--",
                "sh",
                "-c",
                "sleep 1000 & sleep 0.03",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        sigkill(child.id());
        let _ = child.wait();
        if round % 10 == 9 {
            assert_consistent(&env);
        }
    }
    assert_consistent(&env);
}
