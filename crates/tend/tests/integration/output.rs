//! Foreground output reaches tend's stdout byte for byte, a slow reader is
//! waited for, a reader that goes away closes the command's pipe, and a
//! finished execution's logs are durable; stdout and stderr that are one
//! file keep the order in which the command wrote to them.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// Some bytes that compress badly and repeat nowhere, without a PRNG crate.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn hundreds_of_megabytes_to_a_file_arrive_byte_for_byte() {
    let env = TestEnv::new();
    let src = env.dir.path().join("src.bin");
    let data = noise(200 << 20);
    std::fs::write(&src, &data).unwrap();
    let copy = env.dir.path().join("copy.bin");
    let status = env
        .cmd()
        .env("TEND_LOG_MAX_SIZE", "1G")
        .args(["run", "--", "cat"])
        .arg(&src)
        .stdout(std::fs::File::create(&copy).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&copy).unwrap() == data, "the copy differs");
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "succeeded");
    let log = std::fs::read(e["stdout_path"].as_str().unwrap()).unwrap();
    assert!(log == data, "the log differs");
    assert!(!env
        .event_kinds(e["id"].as_str().unwrap())
        .iter()
        .any(|k| k.contains("dropped")));

    // Many small writes, the original report.
    let out = env.dir.path().join("seq.txt");
    let status = env
        .cmd()
        .args(["run", "--", "seq", "1", "3000000"])
        .stdout(std::fs::File::create(&out).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let want: String = (1..=3_000_000).map(|n| format!("{n}\n")).collect();
    assert!(
        std::fs::read_to_string(&out).unwrap() == want,
        "seq differs"
    );
}

#[test]
fn a_slow_reader_is_waited_for_and_the_command_is_not_idle_meanwhile() {
    let env = TestEnv::new();
    let src = env.dir.path().join("src.bin");
    let data = noise(32 << 20);
    std::fs::write(&src, &data).unwrap();
    let mut child = env
        .cmd()
        .args(["run", "--idle-timeout", "1s", "--", "cat"])
        .arg(&src)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    // Read nothing for 3 s (three idle timeouts), then slowly.
    std::thread::sleep(Duration::from_secs(3));
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = pipe.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the slow reader got other bytes");
    assert_eq!(env.json(&["list"])[0]["status"], "succeeded");
}

#[test]
fn a_reader_that_goes_away_closes_the_commands_pipe_like_a_pipeline() {
    let env = TestEnv::new();
    // `yes | head -1`: without the pipe closing, `yes` would run forever.
    let mut child = env
        .cmd()
        .args(["run", "--timeout", "60s", "--", "yes"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    pipe.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\n");
    drop(pipe);
    let ended = eventually(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "tend run -- yes did not end when its reader left");
    assert_eq!(child.wait().unwrap().code(), Some(141));
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "failed");
    assert_eq!(e["signal"], 13);
    let log = std::fs::read(e["stdout_path"].as_str().unwrap()).unwrap();
    assert!(log.starts_with(b"y\ny\n"), "the log keeps what was written");
}

#[test]
fn output_that_cannot_be_written_is_reported_and_kept_in_the_log() {
    let env = TestEnv::new();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env
        .cmd()
        .args(["run", "--", "sh", "-c", "echo hello; sleep 0.2; echo more"])
        .stdout(full)
        .output()
        .unwrap();
    let err = assert_one_sentence(&out, 1);
    assert!(err.contains("No space left on device"), "{err}");
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "succeeded", "the command itself succeeded");
    assert_eq!(
        read(e["stdout_path"].as_str().unwrap().as_ref()),
        "hello\nmore\n"
    );
    assert!(env
        .event_kinds(e["id"].as_str().unwrap())
        .contains(&"output-undelivered".to_string()));
}

#[test]
fn a_non_blocking_stdout_loses_nothing() {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let env = TestEnv::new();
    let (read_end, write_end) = rustix::pipe::pipe().unwrap();
    // As node or ssh leave a shared pipe behind them.
    let flags = fcntl_getfl(&write_end).unwrap();
    fcntl_setfl(&write_end, flags | OFlags::NONBLOCK).unwrap();
    let mut child = env
        .cmd()
        .args(["run", "--", "seq", "1", "300000"])
        .stdout(Stdio::from(write_end))
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::from(read_end);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        std::thread::sleep(Duration::from_millis(1));
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    let want: String = (1..=300_000).map(|n| format!("{n}\n")).collect();
    assert!(
        got == want.as_bytes(),
        "got {} of {} bytes",
        got.len(),
        want.len()
    );
}

/// The order a plain shell keeps when stdout and stderr are one file
/// (`2>&1`): tend gives the command one pipe for both, as the shell does.
#[test]
fn stdout_and_stderr_to_one_file_keep_the_commands_order() {
    let env = TestEnv::new();
    let script =
        r#"i=0; while [ $i -lt 20000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done"#;
    let want: String = (0..20000).map(|i| format!("out {i}\nerr {i}\n")).collect();

    // `> f 2>&1`: one open file as both.
    let path = env.dir.path().join("both.txt");
    let file = std::fs::File::create(&path).unwrap();
    let status = env
        .cmd()
        .args(["run", "--", "sh", "-c", script])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let got = std::fs::read_to_string(&path).unwrap();
    assert!(
        got == want,
        "the order differs: {}",
        first_difference(&got, &want)
    );
    let e = &env.json(&["list"])[0];
    assert_eq!(e["status"], "succeeded");
    assert!(
        read(e["stdout_path"].as_str().unwrap().as_ref()) == want,
        "the log differs"
    );
    assert_eq!(read(e["stderr_path"].as_str().unwrap().as_ref()), "");
    let id = e["id"].as_str().unwrap();
    assert!(env.event_kinds(id).contains(&"streams-merged".to_string()));

    // `2>&1 | cat`: one pipe as both.
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut cmd = env.cmd();
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        "echo a; echo b >&2; echo c; echo d >&2",
    ])
    .stdout(writer.try_clone().unwrap())
    .stderr(writer);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got, "a\nb\nc\nd\n");

    // Two files: the streams stay apart, in their logs too.
    let (out, err) = (env.dir.path().join("out"), env.dir.path().join("err"));
    let status = env
        .cmd()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo a; echo b >&2; echo c; echo d >&2",
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!((read(&out), read(&err)), ("a\nc\n".into(), "b\nd\n".into()));
    let e = &env.json(&["list", "--status", "succeeded"])[0];
    assert_ne!(e["id"].as_str().unwrap(), id, "the newest run comes first");
    assert_eq!(read(e["stdout_path"].as_str().unwrap().as_ref()), "a\nc\n");
    assert_eq!(read(e["stderr_path"].as_str().unwrap().as_ref()), "b\nd\n");
    assert!(!env
        .event_kinds(e["id"].as_str().unwrap())
        .contains(&"streams-merged".to_string()));
}

/// Where two texts first part, for a readable failure.
fn first_difference(got: &str, want: &str) -> String {
    let at = got
        .bytes()
        .zip(want.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let from = got[..at].rfind('\n').map_or(0, |i| i + 1);
    format!(
        "at byte {at} of {}: got {:?}, want {:?}",
        got.len(),
        &got[from..(at + 40).min(got.len())],
        &want[from..(at + 40).min(want.len())]
    )
}
