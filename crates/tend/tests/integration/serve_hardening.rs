//! The daemon under attack (issue 8, items 2 and 8): no web page can drive
//! the API (every hostile request gets a JSON 4xx and runs nothing), the
//! commands it launches never see its token, idle, slow, oversized and
//! surplus connections are bounded, and a home has one daemon.
//!
//! Raw requests go over `std::net::TcpStream`, so that each test controls
//! every header and the timing of every byte.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tend_ledger::Ledger;

use crate::support::*;

/// A token long enough to be accepted.
const TOKEN: &str = "hardening-test-token-0123456789";

/// One reply: the status, the head (lowercased) and the body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A 4xx whose body is `{"error": "…"}`.
    fn assert_json_4xx(&self, what: &str) {
        assert!(
            (400..500).contains(&self.status),
            "{what}: got {} {}",
            self.status,
            self.body
        );
        assert!(
            self.json()["error"].is_string(),
            "{what}: the refusal is not a JSON error: {}\n{}",
            self.head,
            self.body
        );
    }
}

/// A request with exactly these headers (plus a Content-Length for a body).
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        r += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        r += &format!("Content-Length: {}\r\n", body.len());
    }
    r += "Connection: close\r\n\r\n";
    r += body;
    r.into_bytes()
}

/// Sends `request` as is and reads one reply; `None` if none came in 20 s.
fn try_exchange(addr: &str, request: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    // A refusal may come before the whole request is written.
    let _ = s.write_all(request);
    read_reply(&mut s)
}

fn exchange(addr: &str, request: &[u8]) -> Reply {
    try_exchange(addr, request).unwrap_or_else(|| {
        panic!(
            "no reply within 20 s to {}",
            String::from_utf8_lossy(&request[..request.len().min(300)])
        )
    })
}

/// Reads until a whole reply (by its Content-Length) has arrived.
fn read_reply(s: &mut TcpStream) -> Option<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(r) = parse_reply(&buf) {
            return Some(r);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return parse_reply(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse_reply(buf: &[u8]) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (body.len() >= len).then(|| Reply {
        status,
        head: head.clone(),
        body: String::from_utf8_lossy(&body[..len]).into_owned(),
    })
}

/// A launch that leaves `file` behind if it ever runs.
fn launch_body(file: &Path) -> String {
    json!({"command": ["sh", "-c", format!("echo ran > {}", file.display())]}).to_string()
}

fn executions(env: &TestEnv) -> usize {
    env.ledger().list(&Default::default()).unwrap().len()
}

#[test]
fn a_web_page_cannot_drive_the_api() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let host = d.addr();
    let auth = format!("Bearer {}", d.token);
    let auth = auth.as_str();
    let own = format!("http://{host}");
    let mark = |n: usize| env.dir.path().join(format!("ran-{n}"));
    let evil = "http://evil.example";
    let json = "application/json";
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "the verified exploit: text/plain from a foreign page",
            vec![
                ("Host", host),
                ("Origin", evil),
                ("Content-Type", "text/plain"),
            ],
        ),
        (
            "text/plain from a foreign page, with the token",
            vec![
                ("Host", host),
                ("Origin", evil),
                ("Content-Type", "text/plain"),
                ("Authorization", auth),
            ],
        ),
        (
            "text/plain with the token",
            vec![
                ("Host", host),
                ("Content-Type", "text/plain;charset=UTF-8"),
                ("Authorization", auth),
            ],
        ),
        (
            "a form post with the token",
            vec![
                ("Host", host),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", auth),
            ],
        ),
        (
            "a body without a Content-Type",
            vec![("Host", host), ("Authorization", auth)],
        ),
        (
            "JSON from a foreign page, with the token",
            vec![
                ("Host", host),
                ("Origin", evil),
                ("Content-Type", json),
                ("Authorization", auth),
            ],
        ),
        (
            "JSON from an opaque origin (a sandboxed frame, a file)",
            vec![
                ("Host", host),
                ("Origin", "null"),
                ("Content-Type", json),
                ("Authorization", auth),
            ],
        ),
        (
            "JSON from another port of the same address",
            vec![
                ("Host", host),
                ("Origin", "http://127.0.0.1:1"),
                ("Content-Type", json),
                ("Authorization", auth),
            ],
        ),
    ];
    for (n, (what, headers)) in cases.iter().enumerate() {
        let r = exchange(
            host,
            &request(
                "POST",
                "/api/v1/executions",
                headers,
                &launch_body(&mark(n)),
            ),
        );
        r.assert_json_4xx(what);
    }
    // A preflight is never granted.
    let r = exchange(
        host,
        &request(
            "OPTIONS",
            "/api/v1/executions",
            &[
                ("Host", host),
                ("Origin", evil),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,content-type",
                ),
            ],
            "",
        ),
    );
    r.assert_json_4xx("a CORS preflight");
    assert!(!r.head.contains("access-control-allow"), "{}", r.head);
    // The same launch, sent the way the API asks, runs: the refusals were
    // about the requests, not the command.
    let ok = exchange(
        host,
        &request(
            "POST",
            "/api/v1/executions",
            &[
                ("Host", host),
                ("Origin", &own),
                ("Content-Type", json),
                ("Authorization", auth),
            ],
            &launch_body(&mark(99)),
        ),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let id = ok.json()["id"].as_str().unwrap().to_string();
    let (st, _) = d.get(&format!("/api/v1/executions/{id}/wait?timeout=20s"));
    assert_eq!(st, 200);
    assert!(mark(99).exists());
    for (n, (what, _)) in cases.iter().enumerate() {
        assert!(!mark(n).exists(), "{what}: the command ran");
    }
    assert_eq!(executions(&env), 1, "only the proper launch is recorded");
}

#[test]
fn a_rebound_host_name_is_refused_and_configured_names_are_served() {
    let env = TestEnv::new();
    let d = Daemon::start_with(&env, &[("TEND_ALLOWED_HOSTS", "tend.test, other.test:9")]);
    let host = d.addr().to_string();
    let port = host.rsplit(':').next().unwrap().to_string();
    let auth = format!("Bearer {}", d.token);
    let mark = |n: usize| env.dir.path().join(format!("ran-{n}"));
    let refused = [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("tend.test.evil.example:{port}"),
        format!("other.test:{port}"),
        format!("localhost:{}", port.parse::<u16>().unwrap() ^ 1),
    ];
    for (n, name) in refused.iter().enumerate() {
        let r = exchange(
            &host,
            &request(
                "POST",
                "/api/v1/executions",
                &[
                    ("Host", name),
                    ("Content-Type", "application/json"),
                    ("Authorization", &auth),
                ],
                &launch_body(&mark(n)),
            ),
        );
        r.assert_json_4xx(&format!("Host: {name}"));
        assert_eq!(r.status, 421, "Host: {name}: {}", r.body);
    }
    let r = exchange(
        &host,
        &request("GET", "/api/v1/health", &[("Authorization", &auth)], ""),
    );
    r.assert_json_4xx("no Host at all");
    for name in [
        host.clone(),
        format!("localhost:{port}"),
        format!("tend.test:{port}"),
        format!("TEND.Test:{port}"),
        "tend.test".to_string(),
        "other.test:9".to_string(),
    ] {
        let r = exchange(
            &host,
            &request(
                "GET",
                "/api/v1/health",
                &[("Host", &name), ("Authorization", &auth)],
                "",
            ),
        );
        assert_eq!(r.status, 200, "Host: {name}: {}", r.body);
    }
    let origin = format!("http://tend.test:{port}");
    let r = exchange(
        &host,
        &request(
            "POST",
            "/api/v1/executions",
            &[
                ("Host", &format!("tend.test:{port}")),
                ("Origin", &origin),
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &launch_body(&mark(99)),
        ),
    );
    assert_eq!(
        r.status, 201,
        "a configured name and its origin: {}",
        r.body
    );
    let id = r.json()["id"].as_str().unwrap().to_string();
    d.get(&format!("/api/v1/executions/{id}/wait?timeout=20s"));
    for (n, name) in refused.iter().enumerate() {
        assert!(!mark(n).exists(), "Host: {name}: the command ran");
    }
    assert_eq!(executions(&env), 1);
}

#[test]
fn an_empty_or_short_token_is_refused_at_start() {
    let env = TestEnv::new();
    for (what, token, listen) in [
        ("empty", "", "127.0.0.1:0"),
        ("empty, on every address", "", "0.0.0.0:0"),
        ("15 characters", "123456789012345", "127.0.0.1:0"),
    ] {
        let mut cmd = env.cmd();
        cmd.env("TEND_TOKEN", token)
            .args(["serve", "--listen", listen]);
        let out = finish(cmd, Duration::from_secs(15));
        let err = assert_one_sentence(&out, 1);
        assert!(err.contains("TEND_TOKEN"), "{what}: {err}");
        assert!(!env.home().join("daemon.json").exists(), "{what}");
    }
    std::fs::create_dir_all(env.home()).unwrap();
    std::fs::write(env.home().join("token"), "short\n").unwrap();
    let mut cmd = env.cmd();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let err = assert_one_sentence(&finish(cmd, Duration::from_secs(15)), 1);
    assert!(err.contains("token"), "a short token file: {err}");
    // A token file the daemon creates itself is long enough.
    std::fs::remove_file(env.home().join("token")).unwrap();
    drop(Daemon::start(&env));
    assert!(read(&env.home().join("token")).trim().len() >= 16);
}

#[test]
fn launched_commands_never_see_the_daemons_token() {
    let env = TestEnv::new();
    let d = Daemon::start_with(&env, &[("TEND_TOKEN", TOKEN)]);
    let (st, e) = d.post(
        "/api/v1/executions",
        json!({"command": ["sh", "-c", "env; echo end"]}),
    );
    assert_eq!(st, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    d.get(&format!("/api/v1/executions/{id}/wait?timeout=20s"));
    let (_, logs) = d.get(&format!("/api/v1/executions/{id}/logs"));
    let logs = logs.as_str().unwrap();
    assert!(
        logs.contains("TEND_EXECUTION_ID=") && logs.ends_with("end\n"),
        "{logs}"
    );
    assert!(
        !logs.contains("TEND_TOKEN") && !logs.contains(TOKEN),
        "{logs}"
    );
    // Nor does the supervisor in between carry it.
    let (_, e) = d.post("/api/v1/executions", json!({"command": ["sleep", "30"]}));
    let supervisor = e["supervisor"]["pid"].as_i64().unwrap();
    let environ = std::fs::read(format!("/proc/{supervisor}/environ")).unwrap();
    assert!(
        !environ.windows(11).any(|w| w == b"TEND_TOKEN="),
        "the supervisor inherited the token"
    );
    let id = e["id"].as_str().unwrap();
    d.post(
        &format!("/api/v1/executions/{id}/kill"),
        json!({"force": true}),
    );
    // A command started by the CLI from a shell that has it does not see it.
    let out = env
        .cmd()
        .env("TEND_TOKEN", TOKEN)
        .args(["run", "--", "sh", "-c", "printenv TEND_TOKEN; echo end"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "end\n");
}

/// Whether the daemon closed `s` (EOF, reset, or a final reply) within 30 s.
fn closed_by_the_daemon(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_and_trickling_connections_are_closed_by_the_header_timeout() {
    let env = TestEnv::new();
    let d = Daemon::start_with(&env, &[("TEND_HEADER_TIMEOUT", "2s")]);
    let start = Instant::now();
    let mut idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(d.addr()).unwrap())
        .collect();
    // A header sent at five bytes a second.
    let mut trickle = TcpStream::connect(d.addr()).unwrap();
    let head = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
        d.addr()
    );
    trickle.write_all(head.as_bytes()).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cut = loop {
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        if trickle.write_all(b"a").is_err() {
            break true;
        }
        let mut b = [0u8; 512];
        match trickle.read(&mut b) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => break true,
        }
    };
    assert!(cut, "a header trickling in was still being read after 30 s");
    eprintln!("measured: trickled header cut after {:?}", start.elapsed());
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(closed_by_the_daemon(s), "idle connection {i} still open");
    }
    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = TcpStream::connect(d.addr()).unwrap();
    let get = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        d.addr(),
        d.token
    );
    kept.write_all(get.as_bytes()).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(read_reply(&mut kept).map(|r| r.status), Some(200));
    assert!(
        closed_by_the_daemon(&mut kept),
        "a quiet kept-alive connection"
    );
    assert_eq!(d.get("/api/v1/health").0, 200, "the daemon still serves");
}

#[test]
fn bodies_are_bounded_in_size_and_in_time() {
    let env = TestEnv::new();
    let d = Daemon::start_with(&env, &[("TEND_BODY_TIMEOUT", "1s")]);
    let host = d.addr().to_string();
    let head = |length: &str| {
        format!(
            "POST /api/v1/executions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
            d.token
        )
    };
    // A declared length above the limit is refused at once, unread.
    let start = Instant::now();
    let r = exchange(&host, format!("{}{{}}", head("999999999")).as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    r.assert_json_4xx("a declared 1 GB body");
    eprintln!(
        "measured: 413 for a declared 1 GB body in {:?}",
        start.elapsed()
    );
    // A body that stops short of its declared length: 408 after the timeout.
    let r = exchange(&host, format!("{}{{\"command\":", head("100")).as_bytes());
    assert_eq!(r.status, 408, "{}", r.body);
    r.assert_json_4xx("a stalled body");
    // A body really larger than the limit, sent whole: 413, not 400.
    let big = json!({"command": ["echo", "x".repeat(100_000)]});
    let (st, v) = d.post("/api/v1/executions", big);
    assert_eq!(st, 413, "{v}");
    assert!(v["error"].is_string(), "{v}");
    // The same without a declared length (chunked): 413 once past the limit.
    let mut chunked = format!(
        "POST /api/v1/executions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        d.token
    );
    for _ in 0..7 {
        chunked += &format!("2710\r\n{}\r\n", "x".repeat(10_000));
    }
    chunked += "0\r\n\r\n";
    let r = exchange(&host, chunked.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    r.assert_json_4xx("a chunked 70 kB body");
    assert_eq!(executions(&env), 0);
    assert_eq!(d.get("/api/v1/health").0, 200, "the daemon still serves");
}

#[test]
fn connections_beyond_the_cap_are_refused_at_once_until_one_closes() {
    let env = TestEnv::new();
    // A long header timeout: the held connections must not time out here.
    let d = Daemon::start_with(
        &env,
        &[
            ("TEND_MAX_CONNECTIONS", "4"),
            ("TEND_HEADER_TIMEOUT", "120s"),
        ],
    );
    let auth = format!("Bearer {}", d.token);
    let health = request(
        "GET",
        "/api/v1/health",
        &[("Host", d.addr()), ("Authorization", &auth)],
        "",
    );
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(d.addr()).unwrap())
        .collect();
    // The kernel hands connections over in order: the fifth comes after
    // the four and finds every slot taken.
    let r = exchange(d.addr(), &health);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["error"].is_string(), "{}", r.body);
    drop(held);
    let served = eventually(Duration::from_secs(20), || {
        try_exchange(d.addr(), &health).is_some_and(|r| r.status == 200)
    });
    assert!(served, "closed connections did not free their slots");
}

/// The `daemon` check of `tend --json health`, and its exit code.
fn daemon_check(env: &TestEnv) -> (Value, i32) {
    let out = env.tend(&["--json", "health"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("health prints JSON");
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "daemon")
        .expect("a daemon check")
        .clone();
    (check, code(&out))
}

#[test]
fn a_second_daemon_on_the_same_home_refuses_and_the_first_keeps_serving() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let file = env.home().join("daemon.json");
    let before = read(&file);
    let mut second = env.cmd();
    second.args(["serve", "--listen", "127.0.0.1:0"]);
    let out = finish(second, Duration::from_secs(20));
    let err = assert_one_sentence(&out, 1);
    assert!(
        err.contains(&d.pid().to_string()) && err.contains(d.addr()),
        "the refusal names the running daemon: {err}"
    );
    assert_eq!(
        read(&file),
        before,
        "the first daemon's daemon.json is intact"
    );
    let (check, code) = daemon_check(&env);
    assert_eq!(code, 0, "{check}");
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains(d.addr()),
        "{check}"
    );
    assert_eq!(d.get("/api/v1/health").0, 200);
}

#[test]
fn health_asks_the_daemon_instead_of_trusting_daemon_json() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);
    let (check, _) = daemon_check(&env);
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("answered"),
        "{check}"
    );
    drop(d);
    // daemon.json names a live process that serves nothing there (an
    // impostor, or a daemon hung before it listens).
    let mut impostor = Command::new("sleep").arg("60").spawn().unwrap();
    let id = tend_proc::identify(impostor.id() as i32).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let forged = json!({
        "pid": id.pid, "start_time": id.start_time, "boot_id": id.boot_id,
        "pidfd_ino": id.pidfd_ino, "listen": closed.to_string(),
    });
    let file: PathBuf = env.home().join("daemon.json");
    std::fs::write(&file, forged.to_string()).unwrap();
    let (check, code) = daemon_check(&env);
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(check["ok"], false, "{check}");
    assert_eq!(code, 1, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains(&id.pid.to_string()) && detail.contains("answer"),
        "{check}"
    );
}
