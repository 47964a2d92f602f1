use std::collections::HashSet;
use std::process::Stdio;

use crate::support::*;

#[test]
fn two_runs_with_one_key_make_one_execution() {
    let env = TestEnv::new();
    let first = env
        .cmd()
        .args(["run", "--key", "k1", "--", "sh", "-c", "sleep 0.7; exit 3"])
        .spawn()
        .unwrap();
    // Let the first one take the key before the second asks.
    assert!(eventually(std::time::Duration::from_secs(5), || !env
        .marked(None)
        .is_empty()));
    let second = env.tend(&["run", "--key", "k1", "--", "sh", "-c", "exit 0"]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(code(&first), 3);
    assert_eq!(
        code(&second),
        3,
        "the second waits and returns the first's code"
    );
    assert!(stderr(&second).contains("waiting for it"));
    let all = env.json(&["list"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    // Skip reports and exits 0; run starts another regardless.
    let skip = env.tend(&["run", "--key", "k1", "--on-duplicate", "skip", "--", "true"]);
    assert_eq!(code(&skip), 0);
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 1);
    env.ok(&["run", "--key", "k1", "--on-duplicate", "run", "--", "true"]);
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 2);
}

#[test]
fn fifty_concurrent_runs_lose_nothing() {
    let env = TestEnv::new();
    env.ok(&["list"]); // create the ledger first, as a real host would have
    let children: Vec<_> = (0..50)
        .map(|i| {
            env.cmd()
                .args([
                    "run",
                    "--name",
                    &format!("c{i}"),
                    "--",
                    "sh",
                    "-c",
                    &format!("exit {}", i % 3),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(code(&out), (i % 3) as i32, "run {i}: {}", stderr(&out));
        assert!(!stderr(&out).contains("locked"), "{}", stderr(&out));
    }
    let all = env.json(&["list", "--limit", "100"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 50);
    let names: HashSet<&str> = all.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 50);
    assert!(all
        .iter()
        .all(|e| e["status"] == "succeeded" || e["status"] == "failed"));
    assert!(env.ledger().check_integrity().is_ok());
}

// Issue 9: on a fresh home, the second of two commands started at once
// failed with "database is locked" while the first switched the new file to
// WAL. Every command must succeed, and all must share one ledger.
#[test]
fn concurrent_first_use_of_a_fresh_home_just_works() {
    for round in 0..20 {
        let env = TestEnv::new();
        let children: Vec<_> = (0..16)
            .map(|i| {
                let args: &[&str] = match i % 4 {
                    0 => &["list"],
                    1 => &["run", "-d", "--", "true"],
                    _ => &["run", "--", "sh", "-c", "echo $TEND_LEDGER"],
                };
                env.cmd()
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut seen = HashSet::new();
        for (i, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert_eq!(
                code(&out),
                0,
                "round {round}, command {i}: {}",
                stderr(&out)
            );
            if i % 4 >= 2 {
                seen.insert(String::from_utf8(out.stdout).unwrap().trim().to_string());
            }
        }
        assert_eq!(seen, HashSet::from([env.ledger_id()]), "round {round}");
        assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 12);
    }
}
