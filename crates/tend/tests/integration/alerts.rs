//! Alerts end to end: a real daemon, real supervisors, and a webhook
//! receiver on loopback (a `TcpListener` thread that reads each request
//! and answers a status the test sets).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::support::{assert_one_sentence, code, eventually, sigkill, Daemon, TestEnv};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    headers: HashMap<String, String>,
    raw: String,
    body: Value,
    at: Instant,
}

/// A webhook on loopback. `status` 0 means: hold the connection and never
/// answer (a webhook that hangs).
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), status)
    }

    fn on(listener: TcpListener, status: u16) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    serve_one(c, &h, status, &st);
                }
            }
        });
        Receiver {
            addr,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn of_type(&self, kind: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.body["type"] == kind)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (headers, then `content-length` bytes) and answers.
fn serve_one(c: TcpStream, hits: &Mutex<Vec<Hit>>, status: u16, stop: &AtomicBool) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut headers = HashMap::new();
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let hit = Hit {
        headers,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        at: Instant::now(),
    };
    hits.lock().unwrap().push(hit);
    if status == 0 {
        // Hang: hold the connection until the sender gives up (or we stop).
        let _ = eventually(Duration::from_secs(8), || stop.load(Ordering::SeqCst));
        return;
    }
    let mut c = c;
    let _ = write!(
        c,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

/// The Standard Webhooks check a receiver makes.
fn signature_ok(hit: &Hit) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let (id, ts) = (
        &hit.headers["webhook-id"],
        &hit.headers["webhook-timestamp"],
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", hit.raw).as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    hit.headers["webhook-signature"]
        .split(' ')
        .any(|s| s == format!("v1,{want}"))
}

fn daemon(env: &TestEnv, hook: &str, kinds: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut vars = vec![
        ("TEND_ALERT_WEBHOOKS", hook),
        ("TEND_ALERTS", kinds),
        ("TEND_ALERT_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    Daemon::start_with(env, &vars)
}

/// The outbox rows, straight from the ledger (its file, or its database).
fn outbox(env: &TestEnv) -> Vec<(String, String, i64)> {
    if env.is_postgres() {
        let mut c = postgres::Client::connect(&env.store(), postgres::NoTls).unwrap();
        return c
            .query(
                "SELECT kind, state, attempts FROM tend.alerts ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2)))
            .collect();
    }
    let c = rusqlite::Connection::open(env.ledger_path()).unwrap();
    let mut q = c
        .prepare("SELECT kind, state, attempts FROM alerts ORDER BY id")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_signed_lost_alert_arrives_within_two_seconds_of_a_supervisor_sigkill() {
    let env = TestEnv::new();
    let hook = Receiver::start(200);
    let d = daemon(&env, &hook.url(), "lost", &[]);
    let id = env.detach_with(&["--name", "victim"], &["sleep", "30"]);
    let sup = env.show(&id)["supervisor"]["pid"].as_i64().unwrap() as u32;
    let killed = Instant::now();
    sigkill(sup);
    let arrived = eventually(Duration::from_secs(2), || !hook.of_type("lost").is_empty());
    assert!(
        arrived,
        "no lost alert within 2 s; daemon log:\n{}",
        d.log(&env)
    );
    let hit = hook.of_type("lost").remove(0);
    assert!(hit.at - killed < Duration::from_secs(2));
    assert!(signature_ok(&hit), "bad signature: {hit:?}");
    assert_eq!(hit.body["execution"]["id"], id.as_str());
    assert_eq!(hit.body["execution"]["name"], "victim");
    assert_eq!(hit.body["execution"]["reason"], "supervisor died");
    assert!(hit.headers["webhook-id"].starts_with("tend_"));
    assert!(eventually(Duration::from_secs(5), || {
        env.event_kinds(&id).iter().any(|k| k == "alert-sent")
    }));
    let (_, metrics) = d.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains("tend_alerts_sent_total 1"), "{metrics}");
    assert!(metrics.contains("tend_alerts_queued 0"), "{metrics}");
    assert_eq!(hook.of_type("lost").len(), 1, "sent once");
}

#[test]
fn long_running_alerts_when_the_count_rises_above_the_threshold_and_falls_back() {
    let env = TestEnv::new();
    let hook = Receiver::start(200);
    let vars = [
        ("TEND_ALERT_LONG_RUNNING_AFTER", "1s"),
        ("TEND_ALERT_LONG_RUNNING_COUNT", "0"),
    ];
    let d = daemon(&env, &hook.url(), "long_running", &vars);
    let started = Instant::now();
    let id = env.detach(&["sleep", "30"]);
    let rose = eventually(Duration::from_secs(5), || {
        !hook.of_type("long_running").is_empty()
    });
    assert!(rose, "no long_running alert; daemon log:\n{}", d.log(&env));
    let hit = hook.of_type("long_running").remove(0);
    assert!(hit.at - started >= Duration::from_secs(1), "too early");
    assert_eq!(hit.body["details"]["level"], "above");
    assert_eq!(hit.body["details"]["count"], 1);
    assert_eq!(hit.body["details"]["executions"][0], id.as_str());
    env.ok(&["kill", &id, "--grace", "0s"]);
    let fell = eventually(Duration::from_secs(5), || {
        hook.of_type("long_running").len() == 2
    });
    assert!(fell, "no alert when it fell back: {:?}", hook.hits());
    assert_eq!(
        hook.of_type("long_running")[1].body["details"]["level"],
        "normal"
    );
}

#[test]
fn an_alert_queued_while_nothing_listened_arrives_when_the_webhook_comes_back() {
    let env = TestEnv::new();
    // A port with nobody on it, taken again later for the receiver.
    let port = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port.local_addr().unwrap();
    drop(port);
    // Queued with no daemon running at all.
    assert_eq!(
        code(&env.tend(&["run", "--name", "broken", "--", "false"])),
        1
    );
    assert_eq!(outbox(&env), [("failed".into(), "queued".into(), 0)]);
    let d = daemon(&env, &format!("http://{addr}/hook"), "failed", &[]);
    let tried = eventually(Duration::from_secs(10), || outbox(&env)[0].2 >= 2);
    assert!(tried, "no retries: {:?}\n{}", outbox(&env), d.log(&env));
    assert_eq!(outbox(&env)[0].1, "queued");
    let hook = Receiver::on(TcpListener::bind(addr).unwrap(), 200);
    let came = eventually(Duration::from_secs(10), || {
        !hook.of_type("failed").is_empty()
    });
    assert!(came, "never delivered: {:?}\n{}", outbox(&env), d.log(&env));
    let hit = hook.of_type("failed").remove(0);
    assert!(signature_ok(&hit));
    assert_eq!(hit.body["execution"]["name"], "broken");
    assert_eq!(hit.body["execution"]["exit_code"], 1);
    assert!(eventually(Duration::from_secs(5), || outbox(&env)[0].1 == "delivered"));
}

#[test]
fn a_webhook_that_answers_500_forever_is_given_up_and_health_says_degraded() {
    let env = TestEnv::new();
    let hook = Receiver::start(500);
    let d = daemon(
        &env,
        &hook.url(),
        "failed",
        &[("TEND_ALERT_RETRY_FOR", "3s")],
    );
    let out = env.tend(&["run", "-d", "--", "false"]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let gave_up = eventually(Duration::from_secs(15), || {
        outbox(&env).first().is_some_and(|a| a.1 == "failed")
    });
    assert!(gave_up, "{:?}\n{}", outbox(&env), d.log(&env));
    assert!(hook.hits().len() >= 2, "retried: {}", hook.hits().len());
    assert!(env.event_kinds(&id).iter().any(|k| k == "alert-failed"));
    let health = env.tend(&["health"]);
    let text = String::from_utf8_lossy(&health.stdout).into_owned();
    assert_eq!(code(&health), 1, "{text}");
    assert!(text.contains("could not be delivered"), "{text}");
    let (_, metrics) = d.get("/metrics");
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("tend_alerts_failed_total 1"));
}

#[test]
fn alert_test_says_what_each_webhook_answered_and_gives_up_on_one_that_hangs() {
    let env = TestEnv::new();
    let (ok, hangs) = (Receiver::start(204), Receiver::start(0));
    let hooks = format!("{},{}", ok.url(), hangs.url());
    let started = Instant::now();
    let out = env
        .cmd()
        .env("TEND_ALERT_WEBHOOKS", &hooks)
        .env("TEND_ALERT_SECRET", SECRET)
        .args(["alert", "test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 1, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the timeout is bounded"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ok    answered 204"), "{text}");
    assert!(lines[1].contains("no answer within 5"), "{text}");
    let hit = ok.of_type("test").remove(0);
    assert!(signature_ok(&hit));
    let none = env.tend(&["alert", "test"]);
    assert!(assert_one_sentence(&none, 2).contains("TEND_ALERT_WEBHOOKS"));
}

#[test]
fn a_webhook_that_is_not_http_is_refused_by_serve_and_doctor_in_one_sentence() {
    let env = TestEnv::new();
    let out = env
        .cmd()
        .env("TEND_ALERT_WEBHOOKS", "ftp://files.example.com/drop")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = assert_one_sentence(&out, 2);
    assert!(
        err.contains("TEND_ALERT_WEBHOOKS") && err.contains("only http and https"),
        "{err}"
    );
    let out = env
        .cmd()
        .env("TEND_ALERT_WEBHOOKS", "https://ok.example.com/x,not a url")
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("ok    alert webhook 1 of 2"), "{text}");
    assert!(text.contains("warn  alert webhook 2 of 2"), "{text}");
    let out = env
        .cmd()
        .env("TEND_ALERTS", "lost,sometimes")
        .arg("serve")
        .output()
        .unwrap();
    assert!(assert_one_sentence(&out, 2).contains("unknown alert kind 'sometimes'"));
    // A bad webhook never stops a run.
    let run = env
        .cmd()
        .env("TEND_ALERT_WEBHOOKS", "ftp://x")
        .args(["run", "--", "true"])
        .output();
    assert_eq!(code(&run.unwrap()), 0);
}
