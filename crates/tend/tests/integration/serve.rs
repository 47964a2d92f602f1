use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::*;

#[test]
fn launch_wait_logs_kill_and_reap_round_trip() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    assert_eq!(d.anonymous("/api/v1/health"), 401);
    let (st, e) = d.post("/api/v1/executions", json!({"command": ["sh", "-c", "echo out; echo err >&2; exit 4"], "name": "api", "labels": {"via": "api"}}));
    assert_eq!(st, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let (st, done) = d.get(&format!("/api/v1/executions/{id}/wait?timeout=20s"));
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["status"], "failed");
    assert_eq!(done["exit_code"], 4);
    assert_eq!(d.get(&format!("/api/v1/executions/{id}/logs")).1, "out\n");
    assert_eq!(
        d.get(&format!("/api/v1/executions/{id}/logs?stream=stderr"))
            .1,
        "err\n"
    );
    let (_, events) = d.get(&format!("/api/v1/executions/{id}/events"));
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "started", "exited"]);
    // The CLI sees the same execution, in the same schema.
    assert_eq!(env.show(&id)["labels"]["via"], "api");

    // Keys: 201 for the new one, 200 with the same execution for the second.
    let body = json!({"command": ["sleep", "30"], "key": "only-one"});
    let (st, first) = d.post("/api/v1/executions", body.clone());
    assert_eq!(st, 201);
    let (st, second) = d.post("/api/v1/executions", body);
    assert_eq!(st, 200);
    assert_eq!(first["id"], second["id"]);
    let long = first["id"].as_str().unwrap().to_string();
    let (st, timed_out) = d.get(&format!("/api/v1/executions/{long}/wait?timeout=200ms"));
    assert_eq!(st, 408, "{timed_out}");

    let (st, k) = d.post(
        &format!("/api/v1/executions/{long}/kill"),
        json!({"reason": "test", "grace": "2s"}),
    );
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["status"], "killed");
    assert_eq!(k["kill_method"], "graceful");
    assert_eq!(k["processes_signalled"], 1);
    assert!(k["kill_duration_ms"].as_u64().unwrap() < 2000);
    let (_, again) = d.post(&format!("/api/v1/executions/{long}/kill"), json!({}));
    assert_eq!(again["already_finished"], true);
    assert_eq!(again["kill_method"], "none");

    let (st, list) = d.get("/api/v1/executions?status=killed,failed&limit=10");
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, page) = d.get("/api/v1/executions?limit=1&offset=1");
    assert_eq!(page.as_array().unwrap().len(), 1);
    let (st, r) = d.post("/api/v1/reap", json!(null));
    assert_eq!(st, 200, "{r}");
    let (_, h) = d.get("/api/v1/health");
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["last_24h"]["killed"], 1);
    let (_, m) = d.get("/metrics");
    let m = m.as_str().unwrap();
    assert!(m.contains("tend_executions{status=\"killed\"} 1"), "{m}");
    assert!(m.contains("tend_kills_total{method=\"graceful\"} 1"), "{m}");
    assert!(m.contains("tend_api_launches_total 3"), "{m}");
}

/// One health computation: `tend health --json` and `GET /api/v1/health`
/// give the same words and the same checks (the CLI adds whether the daemon
/// answers), degraded or not.
#[test]
fn health_says_the_same_in_the_cli_and_the_api() {
    let env = TestEnv::new();
    // Any execution running longer than 10ms makes the home degraded.
    let alert = [
        ("TEND_ALERT_LONG_RUNNING_AFTER", "10ms"),
        ("TEND_ALERT_LONG_RUNNING_COUNT", "0"),
    ];
    let d = Daemon::start_with(&env, &alert);
    let checks = |v: &serde_json::Value| -> Vec<(String, bool)> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] != "daemon")
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["ok"] == true))
            .collect()
    };
    let both = || {
        let (st, api) = d.get("/api/v1/health");
        assert_eq!(st, 200, "{api}");
        let out = env
            .cmd()
            .envs(alert)
            .args(["--json", "health"])
            .output()
            .unwrap();
        let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(api["status"], cli["status"], "{api} vs {cli}");
        assert_eq!(checks(&api), checks(&cli), "{api} vs {cli}");
        assert_eq!(api["running"], cli["running"], "{api} vs {cli}");
        (
            api["status"].as_str().unwrap().to_string(),
            out.status.code(),
        )
    };
    assert_eq!(both(), ("healthy".to_string(), Some(0)));
    let id = env.detach(&["sleep", "30"]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(both(), ("degraded".to_string(), Some(1)));
    env.ok(&["kill", &id]);
}

#[test]
fn sse_streams_a_transition_within_milliseconds() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let mut events = d.events();
    let stamp = env.dir.path().join("exit-time");
    let id = env.detach(&[
        "sh",
        "-c",
        &format!("sleep 0.5; date +%s%N > {}", stamp.display()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = String::new();
    let received = loop {
        line.clear();
        assert!(Instant::now() < deadline, "no terminal event arrived");
        events.read_line(&mut line).unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            let e: serde_json::Value = serde_json::from_str(data).unwrap();
            if e["id"] == id.as_str() && e["status"] == "succeeded" {
                break SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
            }
        }
    };
    let exited: u128 = read(&stamp).trim().parse().unwrap();
    let latency = Duration::from_nanos((received - exited) as u64);
    eprintln!("measured: command exit -> SSE transition received in {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
}

#[test]
fn executions_outlive_a_sigkilled_daemon_and_keep_their_true_exit_codes() {
    let env = TestEnv::new();
    // On a shared ledger they outlive it while its lease could still be
    // valid (then they fence, see shared_leases.rs): a long one here.
    let mut d = Daemon::start_with(
        &env,
        &[("TEND_LEASE_INTERVAL", "1m"), ("TEND_LEASE_TTL", "1h")],
    );
    let (_, short) = d.post(
        "/api/v1/executions",
        json!({"command": ["sh", "-c", "sleep 1; exit 4"]}),
    );
    let (_, long) = d.post("/api/v1/executions", json!({"command": ["sleep", "30"]}));
    let (short, long) = (
        short["id"].as_str().unwrap().to_string(),
        long["id"].as_str().unwrap().to_string(),
    );
    d.kill9();
    assert_eq!(
        env.status(&short),
        "running",
        "a dead daemon takes nothing with it"
    );
    assert_eq!(env.status(&long), "running");
    let d = Daemon::start(&env);
    let (_, seen) = d.get(&format!("/api/v1/executions/{long}"));
    assert_eq!(seen["status"], "running");
    let (st, done) = d.get(&format!("/api/v1/executions/{short}/wait?timeout=20s"));
    assert_eq!(st, 200);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["exit_code"], 4);
    let (_, k) = d.post(&format!("/api/v1/executions/{long}/kill"), json!({}));
    assert_eq!(k["status"], "killed");
}

#[test]
fn a_restarted_daemon_marks_executions_of_dead_supervisors_lost_and_ends_their_trees() {
    let env = TestEnv::new();
    let mut d = Daemon::start(&env);
    let (_, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["sh", "-c", "sleep 1000 & sleep 1000"], "kill_grace": "500ms"}),
    );
    let id = e["id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(5), || env
        .marked(Some(&id))
        .len()
        >= 2));
    d.kill9();
    sigkill(e["supervisor"]["pid"].as_i64().unwrap() as u32);
    let d = Daemon::start(&env);
    // Recovery runs before the daemon answers: the first read is true.
    let (_, row) = d.get(&format!("/api/v1/executions/{id}"));
    assert_eq!(row["status"], "lost", "{row}");
    assert_eq!(row["reason"], "supervisor died");
    env.assert_no_marked(Some(&id), Duration::from_secs(5));
}

#[test]
fn a_running_daemon_notices_a_dead_supervisor_at_once() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let id = env.detach(&["sleep", "1000"]);
    let mut events = d.events();
    let pid = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
    sigkill(pid);
    let start = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon did not reap it"
        );
        events.read_line(&mut line).unwrap();
        if line.contains(&id) && line.contains("\"lost\"") {
            break;
        }
    }
    eprintln!(
        "measured: supervisor SIGKILL -> lost streamed in {:?}",
        start.elapsed()
    );
    env.assert_no_marked(Some(&id), Duration::from_secs(5));
}

#[test]
fn an_idle_daemon_uses_almost_no_cpu() {
    let env = TestEnv::new();
    // On a shared ledger the lease is one renewal per interval by design
    // (counted in shared_leases.rs and the bench): none in this window.
    let d = Daemon::start_with(
        &env,
        &[("TEND_LEASE_INTERVAL", "1m"), ("TEND_LEASE_TTL", "1h")],
    );
    env.detach(&["sleep", "1000"]);
    std::thread::sleep(Duration::from_millis(500));
    // Context switches per thread (tid -> count): threads come and go (the
    // blocking pool retires idle ones), so deltas are taken per thread.
    let sample = || {
        let stat = tend_proc::procfs::stat(d.pid() as i32).unwrap();
        let mut per_thread = std::collections::HashMap::new();
        for t in std::fs::read_dir(format!("/proc/{}/task", d.pid()))
            .unwrap()
            .flatten()
        {
            let n: u64 = read(&t.path().join("status"))
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            per_thread.insert(t.file_name(), n);
        }
        (stat.utime + stat.stime, per_thread)
    };
    let (cpu0, sw0) = sample();
    std::thread::sleep(Duration::from_secs(10));
    let (cpu1, sw1) = sample();
    let woke: u64 = sw1
        .iter()
        .map(|(tid, n)| n.saturating_sub(*sw0.get(tid).unwrap_or(&0)))
        .sum();
    eprintln!(
        "measured: idle daemon over 10 s: {} CPU ticks, {woke} context switches",
        cpu1 - cpu0
    );
    assert!(
        cpu1 - cpu0 <= 5,
        "an idle daemon used {} ticks in 10 s",
        cpu1 - cpu0
    );
    assert!(woke <= 20, "an idle daemon woke {woke} times in 10 s");
}

/// 100 concurrent clients launch short executions and kill long ones for a
/// bounded 30 s (`TEND_LOAD_SECS`, `TEND_LOAD_CLIENTS` change it): no 5xx,
/// no execution lost or left running; p50/p99 latencies are printed.
#[test]
fn load_100_clients_launching_and_killing() {
    let secs: u64 = std::env::var("TEND_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let clients: usize = std::env::var("TEND_LOAD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let env = TestEnv::new();
    let d = std::sync::Arc::new(Daemon::start(&env));
    let until = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut ids = Vec::new();
                let mut errors = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let long = (i as u64 + n).is_multiple_of(4);
                    let cmd = if long {
                        json!(["sleep", "600"])
                    } else {
                        json!(["true"])
                    };
                    let t = Instant::now();
                    let (st, e) = d.post(
                        "/api/v1/executions",
                        json!({"command": cmd, "kill_grace": "1s"}),
                    );
                    lat.push(t.elapsed());
                    if st != 201 {
                        errors.push(format!("launch {st}: {e}"));
                        continue;
                    }
                    let id = e["id"].as_str().unwrap().to_string();
                    if long {
                        let t = Instant::now();
                        let (st, k) = d.post(&format!("/api/v1/executions/{id}/kill"), json!({}));
                        lat.push(t.elapsed());
                        if st != 200 || k["status"] != "killed" {
                            let (_, row) = d.get(&format!("/api/v1/executions/{id}/events"));
                            errors.push(format!("kill {st}: {k}; launched {e}; events {row}"));
                        }
                    }
                    ids.push(id);
                }
                (lat, ids, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        let (l, i, e) = h.join().unwrap();
        lat.extend(l);
        ids.extend(i);
        errors.extend(e);
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}\ndaemon log: {}",
        errors.len(),
        errors.first(),
        d.log(&env)
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    eprintln!(
        "measured: {} requests from {clients} clients in {secs} s: p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().unwrap()
    );
    for id in &ids {
        let (st, e) = d.get(&format!("/api/v1/executions/{id}/wait?timeout=30s"));
        assert_eq!(st, 200, "{id} still live: {e}");
        assert!(
            e["status"] == "succeeded" || e["status"] == "killed",
            "{id}: {e}"
        );
    }
    assert!(env.ledger().live().map(|l| l.is_empty()).unwrap_or(false));
}

use tend_ledger::Ledger;

/// The first minute with the daemon (issue 10): it says where it listens
/// and where the token is; `--listen` takes a name or a bare port; a taken
/// port is one sentence naming it and the way out; a 405 names what is
/// served.
#[test]
fn serve_introduces_itself_and_explains_a_taken_port_and_a_wrong_method() {
    use std::io::{Read, Write};
    let env = TestEnv::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut c = env.cmd();
    c.args(["serve", "--listen", &port]);
    let out = finish(c, Duration::from_secs(20));
    let e = assert_one_sentence(&out, 1);
    assert!(
        e.contains(&format!("cannot listen on 127.0.0.1:{port}")) && e.contains("--listen"),
        "{e}"
    );
    drop(taken);

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let log = env.dir.path().join("serve.err");
    let mut cmd = env.cmd();
    cmd.args(["serve", "--listen", &format!("localhost:{port}")])
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let up = eventually(Duration::from_secs(20), || {
        env.home().join("daemon.json").is_file()
    });
    let said = std::fs::read_to_string(&log).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port));
    let mut answer = String::new();
    if let Ok(s) = s.as_mut() {
        let token = std::fs::read_to_string(env.home().join("token")).unwrap();
        let req = format!(
            "DELETE /api/v1/executions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        );
        s.write_all(req.as_bytes()).unwrap();
        s.read_to_string(&mut answer).unwrap();
    }
    sigkill(child.id());
    let _ = child.wait();
    assert!(up, "the daemon came up on localhost:{port}: {said}");
    assert!(
        said.contains(&format!("listens on http://127.0.0.1:{port}/")),
        "{said}"
    );
    assert!(
        said.contains(&env.home().join("token").display().to_string()),
        "{said}"
    );
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.contains("it serves GET, HEAD, POST"), "{answer}");
}

/// The API's keys behave as the CLI's (issue 10): `skip`/`wait` answer 200
/// with the holder, `fail` 409 naming it, `reuse_finished` a recent success.
#[test]
fn api_keys_skip_fail_and_reuse_like_the_cli() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let holder = env.detach_with(&["--key", "nightly"], &["sleep", "30"]);
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "key": "nightly", "on_duplicate": "skip"}),
    );
    assert_eq!((st, e["id"].as_str()), (200, Some(holder.as_str())), "{e}");
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "key": "nightly", "on_duplicate": "fail"}),
    );
    assert_eq!(st, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains(&holder), "{e}");
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "on_duplicate": "skip"}),
    );
    assert_eq!((st, &e["field"]), (400, &json!("on_duplicate")), "{e}");
    env.ok(&["kill", &holder]);
    env.ok(&["run", "--key", "daily", "--", "true"]);
    let done = env.json(&["list"])[0]["id"].as_str().unwrap().to_string();
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "key": "daily", "reuse_finished": "1h"}),
    );
    assert_eq!((st, e["id"].as_str()), (200, Some(done.as_str())), "{e}");
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["true"], "key": "daily"}),
    );
    assert_eq!(st, 201, "a finished execution frees its key: {e}");
}

/// The dashboard in a real browser (issue 13): Debian's Chromium driven by
/// Playwright (both installed by scripts/test, which sets
/// `TEND_BROWSER_PYTHON`). Sign-in, a live row, its log, a kill from the
/// button, a filter in the address bar, and no request without the token.
#[test]
fn the_dashboard_works_in_a_real_browser() {
    let python = std::env::var_os("TEND_BROWSER_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/browser-venv/bin/python")
        });
    if !python.exists() || !std::path::Path::new("/usr/bin/chromium").exists() {
        eprintln!("skipped: no Chromium/Playwright here (scripts/test installs them)");
        return;
    }
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let driver = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/drivers/dashboard.py");
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard.png");
    let out = std::process::Command::new(&python)
        .arg(&driver)
        .args([&d.base, &d.token, env!("CARGO_BIN_EXE_tend")])
        .arg(&shot)
        .env("TEND_HOME", env.home())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .env("TEND_STORE", env.store())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("ok"),
        "{said}\n{}",
        stderr(&out)
    );
    let live = env.json(&["ps"]);
    assert_eq!(
        live.as_array().map(Vec::len),
        Some(0),
        "the browser's kill left nothing: {live}"
    );
}

/// The daemon prunes on its own every `TEND_PRUNE_EVERY` (issue 14): old
/// finished executions go, a live one stays.
#[test]
fn the_daemon_prunes_on_its_own() {
    let env = TestEnv::new();
    env.ok(&["run", "--", "true"]);
    env.ok(&["run", "--", "true"]);
    // Older than the retention; the live one is younger, and once killed
    // it has only just ended, so neither goes.
    std::thread::sleep(Duration::from_millis(1200));
    let live = env.detach(&["sleep", "600"]);
    let d = Daemon::start_with(
        &env,
        &[("TEND_PRUNE_EVERY", "300ms"), ("TEND_RETENTION", "1s")],
    );
    let pruned = eventually(Duration::from_secs(10), || {
        env.json(&["list"]).as_array().unwrap().len() == 1
    });
    assert!(pruned, "{}", d.log(&env));
    assert!(
        d.log(&env).contains("pruned old executions"),
        "{}",
        d.log(&env)
    );
    // Past the retention since it was created, it is still never pruned
    // while it runs.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(env.status(&live), "running");
    let out = env.tend(&["kill", &live]);
    assert!(
        out.status.success(),
        "{}\ndaemon log:\n{}",
        stderr(&out),
        d.log(&env)
    );
    assert_eq!(env.status(&live), "killed", "ended just now: kept");
}
