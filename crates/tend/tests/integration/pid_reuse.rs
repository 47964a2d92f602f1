use std::process::Command;

use crate::support::*;

/// A user namespace (so no root is needed) with a PID namespace and its own /proc.
const UNSHARE: [&str; 5] = [
    "--user",
    "--map-root-user",
    "--pid",
    "--fork",
    "--mount-proc",
];

/// Inside a user + PID namespace (no root needed), the test SIGKILLs an
/// execution's supervisor and command, then makes the kernel hand the
/// command's PID to a decoy that logs every signal, and runs `tend reap` and
/// `tend kill`. The decoy must be untouched and alive.
#[test]
fn a_recycled_pid_is_never_signalled() {
    let env = TestEnv::new();
    let probe = Command::new("unshare").args(UNSHARE).arg("true").status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: unprivileged user + PID namespaces are not available here");
        return;
    }
    let log = env.dir.path().join("decoy.log");
    let result = env.dir.path().join("result");
    let script = format!(
        r#"
set -e
T={tend}
export TEND_CONTAINMENT=session
id=$($T run -d -- sleep 1000)
pid=$($T --json show $id | sed -n 's/^  "pid": \([0-9]*\),$/\1/p')
sup=$($T --json show $id | sed -n '/"supervisor"/,/}}/s/^    "pid": \([0-9]*\),$/\1/p')
kill -9 $sup $pid
while kill -0 $pid 2>/dev/null; do :; done
echo $((pid - 1)) > /proc/sys/kernel/ns_last_pid
sh -c 'for s in TERM INT HUP USR1 QUIT CONT; do trap "echo $s >> {log}" $s; done; while :; do sleep 0.05; done' &
decoy=$!
[ "$decoy" = "$pid" ] || {{ echo "decoy got $decoy, not $pid" > {result}; kill -9 $decoy; exit 0; }}
$T reap > /dev/null
$T kill $id > /dev/null || true
sleep 0.3
if kill -0 $decoy 2>/dev/null; then alive=yes; else alive=no; fi
kill -9 $decoy
echo "alive=$alive status=$($T --json show $id | sed -n 's/^  "status": "\(.*\)",$/\1/p') mismatch=$($T --json show $id | grep -c identity-mismatch)" > {result}
"#,
        tend = env!("CARGO_BIN_EXE_tend"),
        log = log.display(),
        result = result.display(),
    );
    let out = Command::new("unshare")
        .args(UNSHARE)
        .args(["sh", "-c", &script])
        .env("TEND_HOME", env.home())
        .env("TEND_STORE", env.store())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .output()
        .unwrap();
    let r = read(&result);
    assert!(
        !r.is_empty(),
        "the scenario did not finish: {}",
        stderr(&out)
    );
    if r.starts_with("decoy got") {
        eprintln!("skipped: {r}");
        return;
    }
    assert_eq!(
        r.trim(),
        "alive=yes status=lost mismatch=1",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(read(&log), "", "the decoy received a signal");
}
