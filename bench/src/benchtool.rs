//! benchtool: the timing and process helpers of `bench/run`.
//!
//! Standalone (std only), compiled by the harness with `rustc -O` into
//! `bench/target-bench/benchtool`. Every command it runs is started and
//! reaped the same way (`std::process::Command`, stdin/stdout/stderr on
//! /dev/null unless asked otherwise), so the bare `/bin/true` floor and
//! `tend run -- true` are measured with identical spawn costs.
//!
//! Subcommands:
//!   spawn N P [--out FILE] [--gap-ms G] -- CMD ARGS...
//!       runs CMD N times, P at a time (P worker threads, each spawning and
//!       reaping one child after another); prints one line of key=value:
//!       n, par, wall_s, rate (completions/s), lat_med_us, lat_min_us,
//!       lat_max_us, lat_p90_us, failures. With --out, each child's stdout is
//!       appended to FILE (e.g. the ids printed by `tend run -d`). With
//!       --gap-ms, each worker sleeps G ms between children (for costs that
//!       only show when the machine is otherwise quiet, like RCU grace
//!       periods; the gap is not part of any latency, but of wall_s).
//!   stamp -- CMD ARGS...
//!       runs CMD once (stdout and stderr to /dev/null); prints start and end
//!       CLOCK_REALTIME in ns and the exit code: `start_ns end_ns code`.
//!   now
//!       prints CLOCK_REALTIME in ns.
//!   stats [SCALE]
//!       reads numbers (one per line) from stdin; prints `median min max n`
//!       (each divided by SCALE, default 1), or `- - - 0` when empty.
//!   scan KEY=VALUE... | scan KEY=
//!       prints `pid comm` of every process (not this one) whose initial
//!       environment holds one of the given KEY=VALUE entries (a trailing
//!       `=` matches any value of KEY).
//!   ctxt PID...
//!       prints the total voluntary+nonvoluntary context switches over all
//!       threads of the given processes (missing ones count 0), and how many
//!       of them exist: `switches alive`.
//!   threads PID
//!       prints one line per thread of PID: `tid switches` (voluntary +
//!       nonvoluntary context switches of that thread so far), so a caller
//!       can take per-thread deltas (threads that come and go are visible).
//!   pss PID...
//!       prints the sum of Pss, Rss and Private_* (kB) from smaps_rollup:
//!       `pss_kb rss_kb private_kb alive`.
//!   noop | inotify-probe DIR
//!       a kernel floor: exits at once, or after creating an inotify
//!       instance with one watch on DIR (which the kernel tears down at
//!       exit, before the parent is told). `spawn` both and compare.

use std::fs;
use std::io::{self, BufRead, Write};
use std::process::{exit, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn usage() -> ! {
    eprintln!("usage: benchtool spawn N P [--out FILE] -- CMD... | stamp -- CMD... | now | stats [SCALE] | scan KEY=VALUE... | ctxt PID... | threads PID | pss PID...");
    exit(2)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

fn after_dashes(args: &[String]) -> Vec<String> {
    match args.iter().position(|a| a == "--") {
        Some(i) if i + 1 < args.len() => args[i + 1..].to_vec(),
        _ => usage(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn spawn(args: &[String]) {
    if args.len() < 2 {
        usage();
    }
    let n: usize = args[0].parse().unwrap_or_else(|_| usage());
    let par: usize = args[1].parse().unwrap_or_else(|_| usage());
    let mut out_file: Option<String> = None;
    let mut gap = std::time::Duration::ZERO;
    let mut i = 2;
    while i < args.len() && args[i] != "--" {
        if args[i] == "--out" && i + 1 < args.len() {
            out_file = Some(args[i + 1].clone());
            i += 2;
        } else if args[i] == "--gap-ms" && i + 1 < args.len() {
            gap = std::time::Duration::from_millis(args[i + 1].parse().unwrap_or_else(|_| usage()));
            i += 2;
        } else {
            usage();
        }
    }
    let cmd = after_dashes(&args[i..]);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let lats = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let outs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let capture = out_file.is_some();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..par.max(1))
        .map(|_| {
            let (next, failures, lats, outs, cmd) = (
                next.clone(),
                failures.clone(),
                lats.clone(),
                outs.clone(),
                cmd.clone(),
            );
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    if !gap.is_zero() {
                        std::thread::sleep(gap);
                    }
                    let mut c = Command::new(&cmd[0]);
                    c.args(&cmd[1..]).stdin(Stdio::null()).stderr(Stdio::null());
                    let start = Instant::now();
                    let ok = if capture {
                        c.stdout(Stdio::piped());
                        match c.output() {
                            Ok(o) => {
                                outs.lock().unwrap().extend_from_slice(&o.stdout);
                                o.status.success()
                            }
                            Err(_) => false,
                        }
                    } else {
                        c.stdout(Stdio::null());
                        matches!(c.status(), Ok(s) if s.success())
                    };
                    mine.push(start.elapsed().as_secs_f64() * 1e6);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lats.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker thread panicked");
    }
    let wall = t0.elapsed().as_secs_f64();
    if let Some(f) = out_file {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&f)
            .unwrap_or_else(|e| {
                eprintln!("benchtool: cannot open {f}: {e}");
                exit(1)
            });
        file.write_all(&outs.lock().unwrap()).expect("writing --out");
    }
    let mut l = lats.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "n={} par={} wall_s={:.4} rate={:.2} lat_med_us={:.1} lat_min_us={:.1} lat_max_us={:.1} lat_p90_us={:.1} failures={}",
        n,
        par,
        wall,
        n as f64 / wall,
        percentile(&l, 0.5),
        l.first().copied().unwrap_or(f64::NAN),
        l.last().copied().unwrap_or(f64::NAN),
        percentile(&l, 0.9),
        failures.load(Ordering::Relaxed)
    );
}

fn stamp(args: &[String]) {
    let cmd = after_dashes(args);
    let start = now_ns();
    let st = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let end = now_ns();
    let code = st.ok().and_then(|s| s.code()).unwrap_or(-1);
    println!("{start} {end} {code}");
}

fn stats(args: &[String]) {
    let scale: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let mut v: Vec<f64> = io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .filter(|x| x.is_finite())
        .map(|x| x / scale)
        .collect();
    if v.is_empty() {
        println!("- - - 0");
        return;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let fmt = |x: f64| {
        if x.abs() >= 100.0 {
            format!("{x:.0}")
        } else if x.abs() >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    println!(
        "{} {} {} {}",
        fmt(percentile(&v, 0.5)),
        fmt(v[0]),
        fmt(v[v.len() - 1]),
        v.len()
    );
}

fn pids() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                out.push(p);
            }
        }
    }
    out.sort_unstable();
    out
}

fn scan(args: &[String]) {
    if args.is_empty() {
        usage();
    }
    let me = std::process::id() as i32;
    let wanted: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    for pid in pids() {
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let hit = env.split(|b| *b == 0).any(|entry| {
            wanted.iter().any(|w| {
                if w.ends_with(b"=") {
                    entry.starts_with(w)
                } else {
                    entry == *w
                }
            })
        });
        if !hit {
            continue;
        }
        // A zombie is already dead; only its parent can remove it.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .unwrap_or('?');
        if state == 'Z' || state == 'X' {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        println!("{pid} {}", comm.trim());
    }
}

fn field_kb(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn ctxt(args: &[String]) {
    let (mut total, mut alive) = (0u64, 0u64);
    for a in args {
        let Ok(rd) = fs::read_dir(format!("/proc/{a}/task")) else {
            continue;
        };
        alive += 1;
        for t in rd.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("status")) {
                total += field_kb(&s, "voluntary_ctxt_switches:")
                    + field_kb(&s, "nonvoluntary_ctxt_switches:");
            }
        }
    }
    println!("{total} {alive}");
}

fn threads(args: &[String]) {
    let Some(pid) = args.first() else { usage() };
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in rd.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("status")) {
            let n = field_kb(&s, "voluntary_ctxt_switches:")
                + field_kb(&s, "nonvoluntary_ctxt_switches:");
            println!("{} {n}", t.file_name().to_string_lossy());
        }
    }
}

fn pss(args: &[String]) {
    let (mut pss, mut rss, mut private, mut alive) = (0u64, 0u64, 0u64, 0u64);
    for a in args {
        let Ok(s) = fs::read_to_string(format!("/proc/{a}/smaps_rollup")) else {
            continue;
        };
        alive += 1;
        pss += field_kb(&s, "Pss:");
        rss += field_kb(&s, "Rss:");
        private += field_kb(&s, "Private_Clean:") + field_kb(&s, "Private_Dirty:");
    }
    println!("{pss} {rss} {private} {alive}");
}

extern "C" {
    fn inotify_init1(flags: i32) -> i32;
    fn inotify_add_watch(fd: i32, path: *const std::os::raw::c_char, mask: u32) -> i32;
}

fn inotify_probe(args: &[String]) {
    let dir = std::ffi::CString::new(args.first().cloned().unwrap_or_else(|| "/tmp".into()))
        .expect("a path without NUL");
    // SAFETY: plain syscalls wrappers with a valid NUL-terminated path.
    let ok = unsafe {
        let fd = inotify_init1(0o2000000); // IN_CLOEXEC
        fd >= 0 && inotify_add_watch(fd, dir.as_ptr(), 0x100 | 0x80 | 0x8 | 0x2) >= 0
    };
    exit(if ok { 0 } else { 1 });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(sub) = args.first() else { usage() };
    let rest = &args[1..];
    match sub.as_str() {
        "spawn" => spawn(rest),
        "stamp" => stamp(rest),
        "now" => println!("{}", now_ns()),
        "stats" => stats(rest),
        "scan" => scan(rest),
        "ctxt" => ctxt(rest),
        "pss" => pss(rest),
        "threads" => threads(rest),
        "noop" => {}
        "inotify-probe" => inotify_probe(rest),
        _ => usage(),
    }
}
