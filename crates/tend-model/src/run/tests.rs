use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::limits::{MAX_ENV_VARS, MAX_LABELS};

fn opts() -> RunOptions {
    RunOptions {
        command: vec!["true".into()],
        ..RunOptions::default()
    }
}

fn with(f: impl FnOnce(&mut RunOptions)) -> RunOptions {
    let mut o = opts();
    f(&mut o);
    o
}

/// Each rule once: the options, the field refused and the sentence. The
/// CLI and the API tests check that both doors show these same words.
#[test]
fn every_rule_refuses_with_its_field_and_sentence() {
    let s = Duration::from_secs;
    let cases: Vec<(RunOptions, &str, &str)> = vec![
        (with(|o| o.command.clear()), "command", "the command is empty: name a program to run"),
        (with(|o| o.command = vec![String::new()]), "command", "the command is empty: name a program to run"),
        (with(|o| o.command.push("a\0b".into())), "command", "an argument of the command holds a NUL byte"),
        (with(|o| o.cwd = Some("rel/dir".into())), "cwd", "the working directory 'rel/dir' is not an absolute path"),
        (with(|o| o.name = Some(String::new())), "name", "the name is empty; leave the option out instead"),
        (with(|o| o.key = Some(String::new())), "key", "the key is empty; leave the option out instead"),
        (with(|o| o.name = Some("n".repeat(257))), "name", "the name is 257 bytes long; at most 256 bytes are allowed"),
        (with(|o| o.key = Some("k".repeat(257))), "key", "the key is 257 bytes long; at most 256 bytes are allowed"),
        (
            with(|o| o.labels = (0..=MAX_LABELS).map(|i| (i.to_string(), String::new())).collect()),
            "labels",
            "65 labels were given; at most 64 are allowed",
        ),
        (
            with(|o| o.env = BTreeMap::from([("A=B".into(), "x".into())])),
            "env",
            "'A=B' is not an environment variable name: it must be non-empty, without '=' or control characters",
        ),
        (
            with(|o| o.env = (0..=MAX_ENV_VARS).map(|i| (format!("V{i}"), String::new())).collect()),
            "env",
            "257 environment variables were given; at most 256 are allowed",
        ),
        (with(|o| o.timeout = Some(Duration::ZERO)), "timeout", "the timeout must be longer than zero; leave it out for no limit"),
        (
            with(|o| o.timeout = Some(s(90_000))),
            "timeout",
            "the timeout of 1d01h is longer than the maximum of 1d00h; raise TEND_MAX_TIMEOUT to allow it",
        ),
        (
            with(|o| o.heartbeat_timeout = Some(Duration::ZERO)),
            "heartbeat_timeout",
            "the heartbeat timeout must be longer than zero; leave it out for no limit",
        ),
        (
            with(|o| o.idle_timeout = Some(Duration::ZERO)),
            "idle_timeout",
            "the idle timeout must be longer than zero; leave it out for no limit",
        ),
        (
            with(|o| o.on_duplicate = Some(OnDuplicate::Skip)),
            "on_duplicate",
            "on_duplicate needs a key: give one, or leave on_duplicate out",
        ),
        (
            with(|o| o.reuse_finished = Some(Duration::from_secs(60))),
            "reuse_finished",
            "reuse_finished needs a key: give one, or leave reuse_finished out",
        ),
        (
            with(|o| {
                o.key = Some("k".into());
                o.reuse_finished = Some(Duration::ZERO);
            }),
            "reuse_finished",
            "the reuse window is empty; leave the option out instead",
        ),
        (with(|o| o.max_memory = Some(0)), "max_memory", "the memory limit must be more than zero; leave it out for no limit"),
        (with(|o| o.kill_grace = Some(s(7200))), "kill_grace", "a kill grace of 2h00m is too long; at most 1h is allowed"),
        (with(|o| o.retries = Some(101)), "retries", "101 retries were asked for; at most 100 are allowed"),
        (
            with(|o| o.retry_backoff = Some(s(1))),
            "retry_backoff",
            "retry_backoff needs --retries: give a number of retries, or leave retry_backoff out",
        ),
        (
            with(|o| o.retry_max_backoff = Some(s(60))),
            "retry_max_backoff",
            "retry_max_backoff needs --retries: give a number of retries, or leave retry_max_backoff out",
        ),
        (
            with(|o| {
                o.retries = Some(2);
                o.retry_max_backoff = Some(Duration::ZERO);
            }),
            "retry_max_backoff",
            "the longest retry backoff must be longer than zero; leave it out for no limit",
        ),
        (
            with(|o| {
                o.retries = Some(2);
                o.retry_backoff = Some(s(600));
                o.retry_max_backoff = Some(s(60));
            }),
            "retry_backoff",
            "a retry backoff of 10m00s is longer than the longest backoff of 1m00s (retry_max_backoff)",
        ),
    ];
    for (o, field, sentence) in cases {
        let e = o.clone().resolve(&Policy::default()).unwrap_err();
        assert_eq!(
            (e.field, e.to_string().as_str()),
            (field, sentence),
            "{o:?}"
        );
    }
}

#[test]
fn a_zero_timeout_under_a_default_points_at_the_default() {
    let policy = Policy {
        default_timeout: Some(Duration::from_secs(60)),
        ..Policy::default()
    };
    let e = with(|o| o.timeout = Some(Duration::ZERO))
        .resolve(&policy)
        .unwrap_err();
    assert_eq!(e.field, "timeout");
    assert!(
        e.to_string()
            .contains("leave it out for the configured default of 1m"),
        "{e}"
    );
}

#[test]
fn defaults_come_from_the_policy_and_given_values_win() {
    let policy = Policy {
        default_timeout: Some(Duration::from_secs(60)),
        kill_grace: Duration::from_secs(2),
        store: Some("/h/ledger.db".into()),
        ..Policy::default()
    };
    let spec = opts().resolve(&policy).unwrap();
    assert_eq!(spec.timeout_ms, Some(60_000));
    assert_eq!(spec.kill_grace_ms, 2000);
    assert_eq!(spec.cwd, PathBuf::from("/"));
    assert_eq!(spec.on_duplicate, OnDuplicate::Wait);
    assert_eq!(spec.store.as_deref(), Some("/h/ledger.db"));
    let given = with(|o| {
        o.timeout = Some(Duration::from_millis(1500));
        o.kill_grace = Some(Duration::ZERO);
        o.command.push(String::new());
    });
    let spec = given.resolve(&policy).unwrap();
    assert_eq!((spec.timeout_ms, spec.kill_grace_ms), (Some(1500), 0));
    assert_eq!(
        spec.command,
        ["true", ""],
        "an empty argument is an argument"
    );
}

#[test]
fn options_travel_as_operators_write_them_and_come_back_equal() {
    let o = with(|o| {
        o.timeout = Some(Duration::from_millis(1500));
        o.max_memory = Some(512 << 20);
        o.on_duplicate = Some(OnDuplicate::Skip);
    });
    let json = serde_json::to_value(&o).unwrap();
    assert_eq!(json["timeout"], "1.5s");
    assert_eq!(json["on_duplicate"], "skip");
    let back: RunOptions = serde_json::from_value(json).unwrap();
    assert_eq!(back, o);
    let bad = serde_json::from_str::<RunOptions>(r#"{"command":["x"],"timeout":"soon"}"#);
    assert!(bad.unwrap_err().to_string().contains("is not a duration"));
    let unknown = serde_json::from_str::<RunOptions>(r#"{"command":["x"],"surprise":1}"#);
    assert!(unknown.unwrap_err().to_string().contains("surprise"));
}

#[test]
fn a_cwd_that_is_not_utf8_survives_the_trip_to_a_detached_supervisor() {
    for raw in [&b"/tmp/x\xffdir"[..], "/tmp/x\u{fffd}dir".as_bytes()] {
        let o = with(|o| o.cwd = Some(std::ffi::OsStr::from_bytes(raw).into()));
        let spec = o.clone().resolve(&Policy::default()).unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let back: RunSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cwd.as_os_str().as_bytes(), raw, "{json}");
        let json = serde_json::to_string(&o).unwrap();
        let back: RunOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o, "{json}");
    }
}

#[test]
fn a_default_name_is_the_program_cut_to_the_cap() {
    let o = with(|o| o.command = vec![format!("/bin/{}", "é".repeat(200))]);
    let name = o.resolve(&Policy::default()).unwrap().display_name();
    assert!(name.len() <= MAX_NAME_BYTES && name.starts_with('é'));
}

#[test]
fn retries_resolve_with_their_defaults() {
    let spec = with(|o| o.retries = Some(3))
        .resolve(&Policy::default())
        .unwrap();
    assert_eq!(
        (
            spec.retries,
            spec.retry_backoff_ms,
            spec.retry_max_backoff_ms
        ),
        (3, 1000, 300_000)
    );
    let none = opts().resolve(&Policy::default()).unwrap();
    assert_eq!(none.retries, 0);
}

#[test]
fn the_retry_delay_doubles_is_capped_and_jittered_within_ten_percent() {
    assert_eq!(retry_delay_ms(1, 1000, 300_000, 1.0), 1000);
    assert_eq!(retry_delay_ms(2, 1000, 300_000, 1.0), 2000);
    assert_eq!(retry_delay_ms(4, 1000, 300_000, 1.0), 8000);
    assert_eq!(retry_delay_ms(20, 1000, 300_000, 1.0), 300_000);
    assert_eq!(retry_delay_ms(1, 1000, 300_000, 0.9), 900);
    assert_eq!(retry_delay_ms(1, 1000, 300_000, 1.1), 1100);
    // Jitter never goes outside ±10 %, nor past the cap.
    assert_eq!(retry_delay_ms(1, 1000, 300_000, 5.0), 1100);
    assert_eq!(retry_delay_ms(30, 1000, 300_000, 1.1), 300_000);
    assert_eq!(retry_delay_ms(u32::MAX, u64::MAX, 5, 1.0), 5);
}
