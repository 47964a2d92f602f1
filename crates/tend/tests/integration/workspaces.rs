//! `--workspace tmp|worktree` with a real git, and what `prune` does with
//! the workspaces no execution uses any more.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{assert_one_sentence, code, eventually, stderr, TestEnv};

/// Runs git in `dir`, asserting success; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_git() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A repository with one commit, in the test's folder.
fn repo(env: &TestEnv) -> PathBuf {
    let r = env.dir.path().join("repo");
    std::fs::create_dir_all(r.join("sub")).unwrap();
    git(&r, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(r.join("README"), "hello\n").unwrap();
    std::fs::write(r.join("sub/file"), "x\n").unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "--quiet", "-m", "first"]);
    r
}

fn branches(repo: &Path) -> String {
    git(repo, &["branch", "--list", "exec-*"])
}

/// The run's stdout, asserting exit 0.
fn run_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.tend(args);
    assert_eq!(code(&out), 0, "tend {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_tmp_workspace_is_private_fresh_recorded_and_pruned() {
    let env = TestEnv::new();
    let out = run_ok(
        &env,
        &[
            "--json",
            "run",
            "--workspace",
            "tmp",
            "--",
            "sh",
            "-c",
            "pwd >&2; touch made",
        ],
    );
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    let path = PathBuf::from(e["workspace"]["path"].as_str().unwrap());
    assert_eq!(e["workspace"]["kind"], "tmp");
    assert!(path.starts_with(env.home().join("workspaces")), "{path:?}");
    assert!(path.ends_with(e["id"].as_str().unwrap()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(
        path.join("made").exists(),
        "the command ran in its workspace"
    );
    let shown = env.ok(&["show", e["id"].as_str().unwrap()]);
    assert!(
        shown.contains(&format!("{} (tmp)", path.display())),
        "{shown}"
    );

    // A live execution's workspace is never removed.
    let live = env.detach_with(&["--workspace", "tmp"], &["sleep", "600"]);
    let live_path = PathBuf::from(
        env.show(&live)["workspace"]["path"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    std::thread::sleep(Duration::from_millis(20));
    let dry = env.json(&["prune", "--older-than", "1ms", "--dry-run"]);
    assert_eq!(dry["workspaces"].as_array().unwrap().len(), 1, "{dry}");
    assert!(path.exists(), "a dry run removes nothing");
    let done = env.json(&["prune", "--older-than", "1ms"]);
    assert_eq!(done["workspaces"][0]["outcome"], "removed", "{done}");
    assert!(!path.exists(), "the pruned execution's workspace is gone");
    assert!(live_path.is_dir(), "the live one's stays");
    env.ok(&["kill", &live]);
}

#[test]
fn a_worktree_workspace_is_a_branch_that_prune_deletes_once_merged() {
    if !has_git() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let env = TestEnv::new();
    let r = repo(&env);
    let sub = r.join("sub");
    let out = run_ok(
        &env,
        &[
            "--json",
            "run",
            "--cwd",
            sub.to_str().unwrap(),
            "--workspace",
            "worktree",
            "--",
            "sh",
            "-c",
            "git branch --show-current >&2; pwd >&2; cat file >&2",
        ],
    );
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = e["id"].as_str().unwrap();
    let w = &e["workspace"];
    assert_eq!(w["branch"], format!("exec-{id}"));
    assert_eq!(w["repository"], r.canonicalize().unwrap().to_str().unwrap());
    let path = PathBuf::from(w["path"].as_str().unwrap());
    assert!(path.join("sub/file").exists());
    assert!(branches(&r).contains(&format!("exec-{id}")));
    // Nothing new on the branch: it is merged, and prune deletes it.
    std::thread::sleep(Duration::from_millis(20));
    let done = env.json(&["prune", "--older-than", "1ms"]);
    assert_eq!(done["workspaces"][0]["outcome"], "removed", "{done}");
    assert!(!path.exists());
    assert!(branches(&r).trim().is_empty(), "{}", branches(&r));
}

#[test]
fn an_unmerged_branch_and_a_dirty_worktree_are_kept_until_forced() {
    if !has_git() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let env = TestEnv::new();
    let r = repo(&env);
    let cwd = r.to_str().unwrap();
    // One commits on its branch; the other leaves a change uncommitted.
    let commit = "echo new > new && git add new && git -c user.name=t -c user.email=t@e commit --quiet -m new";
    run_ok(
        &env,
        &[
            "run",
            "--cwd",
            cwd,
            "--workspace",
            "worktree",
            "--",
            "sh",
            "-c",
            commit,
        ],
    );
    run_ok(
        &env,
        &[
            "run",
            "--cwd",
            cwd,
            "--workspace",
            "worktree",
            "--",
            "sh",
            "-c",
            "echo changed > README",
        ],
    );
    std::thread::sleep(Duration::from_millis(20));
    let first = env.json(&["prune", "--older-than", "1ms"]);
    let outcomes: Vec<&str> = first["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["branch_kept", "dirty_kept"], "{first}");
    assert_eq!(branches(&r).lines().count(), 2, "{}", branches(&r));
    // Still known after the rows are gone: a later prune finishes the job.
    let said = stderr(&env.tend(&["prune", "--older-than", "1ms"]));
    assert!(said.contains("--force-branches deletes it"), "{said}");
    assert!(said.contains("--force removes it"), "{said}");
    let forced = env.json(&[
        "prune",
        "--older-than",
        "1ms",
        "--force",
        "--force-branches",
    ]);
    let outcomes: Vec<&str> = forced["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["removed", "removed"], "{forced}");
    assert!(branches(&r).trim().is_empty(), "{}", branches(&r));
    assert!(eventually(Duration::from_secs(1), || env.json(&[
        "prune",
        "--older-than",
        "1ms"
    ])["workspaces"]
        .as_array()
        .unwrap()
        .is_empty()));
}

/// `tend run --cwd DIR --workspace worktree -- true`.
fn worktree_run(env: &TestEnv, dir: &Path) -> std::process::Output {
    let dir = dir.to_str().unwrap();
    env.tend(&["run", "--cwd", dir, "--workspace", "worktree", "--", "true"])
}

#[test]
fn a_worktree_that_cannot_be_made_is_refused_in_one_sentence() {
    if !has_git() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let env = TestEnv::new();
    let plain = env.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let said = assert_one_sentence(&worktree_run(&env, &plain), 2);
    assert!(said.contains("is not in a git repository"), "{said}");
    let r = repo(&env);
    std::fs::write(r.join("README"), "dirty\n").unwrap();
    let said = assert_one_sentence(&worktree_run(&env, &r), 2);
    assert!(said.contains("uncommitted changes"), "{said}");
    let said = assert_one_sentence(&env.tend(&["run", "--workspace", "nfs", "--", "true"]), 2);
    assert!(said.contains("tmp, worktree"), "{said}");
    assert!(
        env.json(&["list"]).as_array().unwrap().is_empty(),
        "nothing recorded"
    );
}

#[test]
fn the_api_refuses_a_worktree_it_cannot_make_naming_the_field() {
    if !has_git() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let env = TestEnv::new();
    let plain = env.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let d = crate::support::Daemon::start(&env);
    let body = serde_json::json!({
        "command": ["true"], "cwd": plain.to_str().unwrap(), "workspace": "worktree",
    });
    let (st, refused) = d.post("/api/v1/executions", body);
    assert_eq!(
        (st, refused["field"].as_str()),
        (400, Some("workspace")),
        "{refused}"
    );
    assert!(
        env.json(&["list"]).as_array().unwrap().is_empty(),
        "nothing recorded"
    );
}

#[test]
fn doctor_says_when_a_worktree_job_has_no_git() {
    if !has_git() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let env = TestEnv::new();
    let r = repo(&env);
    let cwd = r.to_str().unwrap();
    env.ok(&[
        "job",
        "add",
        "wt",
        "--cwd",
        cwd,
        "--workspace",
        "worktree",
        "--",
        "/bin/true",
    ]);
    let line = |path: &str| -> String {
        let out = env.cmd().env("PATH", path).arg("doctor").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.contains("job wt"))
            .unwrap_or_default()
            .to_string()
    };
    let empty = env.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let without = line(empty.to_str().unwrap());
    assert!(without.contains("git is not installed"), "{without}");
    let with = line(&std::env::var("PATH").unwrap());
    assert!(with.starts_with("ok"), "{with}");
}
