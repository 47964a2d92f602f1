//! The supervisor: one single-threaded process per execution, the direct
//! parent of its command.
//!
//! Order of work, and why:
//! 1. install signal handlers and become a child subreaper — before the
//!    execution is recorded, since from then on others may nudge us;
//! 2. commit the execution as `queued` with our own identity (*before* the
//!    fork, so no process ever runs unrecorded);
//! 3. spawn the command in its own session with PDEATHSIG, commit `running`
//!    with its identity;
//! 4. wait in one `poll` for the command's pidfd, its output pipes, our
//!    signals, and the deadlines of timeouts and kills — never a sleep loop;
//! 5. once the command has exited, end whatever it left behind (orphans are
//!    re-parented to us, so they are still our descendants);
//! 6. commit the terminal status only when the tree is empty, then announce
//!    it with an exit file.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{wait, WaitOptions, WaitStatus};
use serde_json::json;
use tend_ledger::{Created, KillReport, Ledger, NewExecution, Outcome, Transition};
use tend_model::{Actor, EventKind};
use tend_model::{Execution, KillMethod, Status, MARKER_AGENT, MARKER_EXECUTION, MARKER_LEDGER};
use tend_proc::cgroup::Cgroup;
use tend_proc::{procfs, spawn, tree, Pidfd, Sig};

use crate::logs::LogFile;
use crate::outbox::Outbox;
use crate::signals::Signals;
use crate::start::{
    failed_to_start, kill_tree_now, launch, nonblocking, open_logs, persist, remove_cgroup,
    Launched,
};
use crate::terminal::{self, Terminal, Wrote};
use crate::{failpoint, Error, Home, OnDuplicate, RunSpec};

/// Where the supervisor's own output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `tend run`: the command's output is also copied to our stdout and
    /// stderr, and it reads our stdin.
    Foreground,
    /// `tend run -d`: the supervisor runs in the background; output goes to
    /// the log files only and stdin is `/dev/null`.
    Detached,
}

/// What the supervisor tells its caller as soon as the start is decided,
/// before the command ends (a detached supervisor's parent prints it).
#[derive(Debug)]
pub enum Report<'a> {
    /// The command is running.
    Started(&'a Execution),
    /// The key already stands for this execution; nothing was started.
    Existing(&'a Execution, OnDuplicate),
    /// The command could not be started; the execution is recorded `failed`.
    FailedToStart(&'a Execution),
}

/// How a supervised run ended.
#[derive(Debug)]
pub enum RunResult {
    /// The execution reached this terminal row.
    Finished(Execution),
    /// Nothing was started: the key belongs to this execution.
    Existing(Execution, OnDuplicate),
    /// The execution reached this terminal row, but some of its output
    /// could not be written to tend's own stdout or stderr (why: the
    /// stream and the error); all of it is in the log.
    Undelivered(Execution, String),
}

/// How long a tree may resist SIGKILL (uninterruptible sleep) before the
/// supervisor records that it is stuck. It keeps waiting afterwards.
const STUCK_REPORT_AFTER: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 64 * 1024;
/// How often the tree's memory is sampled, only when `--max-memory` is set
/// (the cgroup's memory controller is not delegated on every host).
const MEMORY_SAMPLE: Duration = Duration::from_millis(250);

/// Runs one execution to its end. Blocks until the command and every
/// process it started are gone and the outcome is committed.
///
/// The calling process becomes the supervisor: it turns into a child
/// subreaper, installs handlers for SIGCHLD, SIGINT, SIGTERM, SIGHUP and
/// SIGUSR1, reaps any child with `waitpid(-1)`, and treats every descendant
/// as part of the execution. Call it from a process that has no other
/// children and no other use for those signals — `tend run`, or the
/// background supervisor that [`crate::detach::launch`] starts — never from
/// inside a larger application.
pub fn run<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    spec: &RunSpec,
    mode: Mode,
    report: &mut dyn FnMut(Report<'_>),
) -> Result<RunResult, Error> {
    let signals = Signals::install().map_err(Error::io("installing signal handlers"))?;
    spawn::become_subreaper().map_err(Error::io("becoming a child subreaper"))?;
    let me = std::process::id() as i32;
    let supervisor =
        tend_proc::identify(me).map_err(Error::io("reading the supervisor's identity"))?;
    let tier = crate::tier::choose(ledger.ledger_id(), spec.containment)?;
    let agent = home
        .agent()
        .map_err(Error::io("reading the home's agent id"))?
        .id;
    let boot_id = supervisor.boot_id.clone();
    let new = new_execution(spec, home, &tier, supervisor, &agent);
    let exec = match ledger.create(&new)? {
        Created::New(e) => e,
        Created::Existing(e) => {
            report(Report::Existing(&e, spec.on_duplicate));
            return Ok(RunResult::Existing(e, spec.on_duplicate));
        }
    };
    home.notifier().announce(&exec.id, exec.status);
    failpoint("after-queued-commit");
    let (mut out, mut err) = match open_logs(&exec, spec.log_max_bytes) {
        Ok(l) => l,
        Err(e) => {
            let why = format!("cannot create its log files: {e}");
            return failed_to_start(ledger, home, exec, 1, why, report);
        }
    };
    let cgroup = match tier.cgroup_parent() {
        Some(parent) => match Cgroup::create(parent, exec.id.as_str()) {
            Ok(cg) => Some(cg),
            Err(e) => {
                let why = format!("cannot create its cgroup in {}: {e}", parent.display());
                return failed_to_start(ledger, home, exec, 1, why, report);
            }
        },
        None => None,
    };
    let markers = [
        (MARKER_EXECUTION, exec.id.as_str()),
        (MARKER_LEDGER, ledger.ledger_id()),
        (MARKER_AGENT, agent.as_str()),
    ];
    let launched = match launch(spec, mode, &tier, cgroup.as_ref(), &markers, &boot_id)? {
        Ok(l) => l,
        Err((code, why)) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            return failed_to_start(ledger, home, exec, code, why, report);
        }
    };
    failpoint("after-spawn");
    let exec = match persist(mode, &exec.id, "the start", || {
        ledger.start(&exec.id, &launched.identity)
    })? {
        Transition::Won(e) => e,
        Transition::Lost(current) => {
            // Somebody ended it while it was queued (a cancel): honour that,
            // and take everything the command may have forked meanwhile.
            let _ = launched.child.signal(Sig::Kill);
            kill_tree_now(me, cgroup.as_ref());
            while let Ok(Some(_)) = wait(WaitOptions::NOHANG) {}
            if let Some(cg) = &cgroup {
                remove_cgroup(cg);
            }
            return Ok(RunResult::Finished(current));
        }
    };
    home.notifier().announce(&exec.id, exec.status);
    if launched.stderr.is_none() {
        let _ = ledger.record(
            &exec.id,
            EventKind::StreamsMerged,
            &Actor::Supervisor,
            json!({ "note": "tend's stdout and stderr are one file: the command got one pipe for both, its order is kept, and its whole output is in the stdout log" }),
        );
    }
    report(Report::Started(&exec));
    let logs = [&mut out, &mut err];
    let mut sup = Supervision::new(
        ledger, exec, me, mode, signals, launched, logs, cgroup, spec,
    )?;
    if sup.exec.kill_request.is_some() {
        sup.on_nudge()?;
    }
    sup.finish(home)
}

/// What the execution records, from what was asked and where it runs.
fn new_execution(
    spec: &RunSpec,
    home: &Home,
    tier: &crate::Tier,
    supervisor: tend_model::ProcessIdentity,
    agent: &str,
) -> NewExecution {
    NewExecution {
        name: spec.display_name(),
        command: spec.command.clone(),
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        labels: spec.labels.clone(),
        key: spec.key.clone(),
        dedup: spec.on_duplicate != OnDuplicate::Run,
        host: procfs::hostname(),
        tier: tier.kind(),
        agent_id: Some(agent.to_string()),
        supervisor,
        timeout_ms: spec.timeout_ms,
        kill_grace_ms: spec.kill_grace_ms,
        log_dir: home.logs_dir(),
        cgroup: tier.cgroup_parent().map(Path::to_path_buf),
        heartbeat_timeout_ms: spec.heartbeat_timeout_ms,
        idle_timeout_ms: spec.idle_timeout_ms,
        max_memory_bytes: spec.max_memory_bytes,
    }
}

/// Why the supervisor is ending the tree.
#[derive(Debug, Clone)]
enum Cause {
    Timeout(u64),
    Heartbeat(u64),
    Idle(u64),
    Memory {
        used: u64,
        limit: u64,
    },
    Request {
        by: Actor,
        reason: Option<String>,
    },
    Signal(&'static str),
    /// The command exited and left processes behind.
    Cleanup,
}

#[derive(Debug)]
struct Kill {
    cause: Cause,
    started: Instant,
    grace_deadline: Instant,
    forced: bool,
    sigkilled: bool,
    signalled: HashSet<i32>,
    sigkill_sent: HashSet<i32>,
    watch: Vec<Pidfd>,
    stuck_reported: bool,
    /// When this process was last continued after being stopped: a stopped
    /// supervisor saw nothing die, so the tree is not stuck until
    /// [`STUCK_REPORT_AFTER`] after both the SIGKILL and this.
    resumed_at: Instant,
}

impl Kill {
    /// When the tree counts as stuck, if it is still there then.
    fn stuck_at(&self) -> Instant {
        self.started.max(self.grace_deadline).max(self.resumed_at) + STUCK_REPORT_AFTER
    }
}

/// What one `poll` reported.
struct Ready {
    signals: bool,
    child: bool,
    pipes: [bool; 2],
    term: [Option<PollFlags>; 2],
    watch: bool,
}

struct Supervision<'a, L: Ledger + ?Sized> {
    ledger: &'a L,
    exec: Execution,
    me: i32,
    mode: Mode,
    signals: Signals,
    child: Option<Pidfd>,
    /// The supervisor's own child: the command, or in the pidns tier the
    /// relay whose exit status is the command's.
    direct: i32,
    status: Option<WaitStatus>,
    pipes: [Option<OwnedFd>; 2],
    logs: [&'a mut LogFile; 2],
    kill: Option<Kill>,
    deadline: Option<Instant>,
    heartbeat_due: Option<Instant>,
    last_output: Instant,
    next_sample: Option<Instant>,
    peak_rss: u64,
    /// pidns: CPU read from `/proc` just before a forced kill.
    sampled_cpu_ms: u64,
    cgroup: Option<Cgroup>,
    /// pidns tier: tells whether the kernel SIGKILLed processes the command
    /// left in its namespace when it exited.
    leftovers: Option<tend_proc::pidns::Leftovers>,
    /// Foreground: output queued for our stdout and stderr.
    term: Terminal,
    rescan: bool,
    /// Events the ledger has not taken yet, and the retry schedule.
    outbox: Outbox,
    /// A kill request could not be read (the ledger was busy): read it
    /// again when the outbox retries.
    nudge_missed: bool,
}

impl<'a, L: Ledger + ?Sized> Supervision<'a, L> {
    /// The supervision of a started command.
    #[allow(clippy::too_many_arguments)]
    fn new(
        ledger: &'a L,
        exec: Execution,
        me: i32,
        mode: Mode,
        signals: Signals,
        launched: Launched,
        logs: [&'a mut LogFile; 2],
        cgroup: Option<Cgroup>,
        spec: &RunSpec,
    ) -> Result<Self, Error> {
        let now = Instant::now();
        let after = |ms: Option<u64>| ms.map(|ms| now + Duration::from_millis(ms));
        let (exec_id, stdout_path) = (exec.id.clone(), exec.stdout_path.clone());
        Ok(Supervision {
            ledger,
            exec,
            me,
            mode,
            signals,
            child: Some(launched.child),
            direct: launched.direct,
            status: None,
            pipes: [
                Some(nonblocking(launched.stdout)?),
                launched.stderr.map(nonblocking).transpose()?,
            ],
            logs,
            kill: None,
            deadline: after(spec.timeout_ms),
            heartbeat_due: after(spec.heartbeat_timeout_ms),
            last_output: now,
            next_sample: spec.max_memory_bytes.map(|_| now + MEMORY_SAMPLE),
            peak_rss: 0,
            sampled_cpu_ms: 0,
            cgroup,
            leftovers: launched.leftovers,
            term: Terminal::new(),
            rescan: false,
            outbox: Outbox::new(exec_id, mode, &stdout_path),
            nudge_missed: false,
        })
    }

    /// Supervises to the end, then makes the logs durable, commits the
    /// outcome (however long the ledger refuses) and hands the terminal
    /// what is left. On an error the tree is ended first.
    fn finish(mut self, home: &Home) -> Result<RunResult, Error> {
        let outcome = match self.supervise() {
            Ok(o) => o,
            Err(e) => {
                // The supervisor cannot go on (the ledger failed): never
                // leave the tree behind. The row stays live, and the next
                // reader reconciles it to `lost`.
                self.abandon();
                return Err(e);
            }
        };
        if let Some(cg) = &self.cgroup {
            remove_cgroup(cg);
        }
        self.make_logs_durable(home);
        self.outbox.flush_all(self.ledger);
        failpoint("before-terminal-commit");
        let (ledger, id) = (self.ledger, self.exec.id.clone());
        let t = self.outbox.commit("record the outcome", || {
            ledger.transition(&id, Status::Running, &outcome)
        })?;
        home.notifier().announce(&id, t.execution().status);
        self.term.flush();
        failpoint("after-terminal-commit");
        let e = match t {
            Transition::Won(e) | Transition::Lost(e) => e,
        };
        Ok(match self.term.failure() {
            Some((stream, err)) => RunResult::Undelivered(e, format!("{stream}: {err}")),
            None => RunResult::Finished(e),
        })
    }

    /// The event loop. Returns the outcome once the command has exited and
    /// no descendant is left.
    fn supervise(&mut self) -> Result<Outcome, Error> {
        loop {
            if self.rescan {
                self.rescan = false;
                if self.step_tree()? {
                    break;
                }
            }
            self.wait_once()?;
        }
        self.drain_pipes();
        if self
            .leftovers
            .as_ref()
            .is_some_and(|l| l.left_processes_behind())
        {
            // Honest accounting: whatever was left got SIGKILL, not a grace.
            if let Some(k) = self.kill.as_mut() {
                k.sigkilled = true;
            }
            self.outbox.record(
                self.ledger,
                EventKind::SignalSent,
                Actor::Kernel,
                json!({ "signal": "SIGKILL", "note": "the command exited; the kernel ended the rest of its PID namespace" }),
            );
        }
        Ok(self.outcome())
    }

    /// Looks at the tree and pushes the kill (if any) forward. Returns true
    /// when the execution is over: command reaped and no descendant left.
    fn step_tree(&mut self) -> Result<bool, Error> {
        // In the cgroup tier the cgroup is the tree: exact, and far cheaper
        // than walking every process of the host. Otherwise walk /proc from
        // the supervisor, which every orphan of the command re-parents to.
        let tree = self.tree();
        let populated = self.cgroup.as_ref().is_some_and(Cgroup::populated);
        if self.status.is_some() && tree.is_empty() && !populated && !spawn::has_children() {
            return Ok(true);
        }
        if self.status.is_some() && self.kill.is_none() {
            self.begin_kill(
                Cause::Cleanup,
                Duration::from_millis(self.exec.kill_grace_ms),
                false,
            );
        }
        let Some(kill) = self.kill.as_mut() else {
            return Ok(false);
        };
        if !kill.forced && Instant::now() >= kill.grace_deadline {
            kill.forced = true;
        }
        let sig = if kill.forced { Sig::Kill } else { Sig::Term };
        if kill.forced && self.leftovers.is_some() {
            // pidns: what SIGKILL takes now is reaped by the kernel, and
            // its usage would reach no one; read it while it is there.
            let pids: Vec<i32> = tree.iter().map(Pidfd::pid).collect();
            let (cpu, peak) = tend_proc::live_usage(&pids);
            self.sampled_cpu_ms = self.sampled_cpu_ms.max(cpu);
            self.peak_rss = self.peak_rss.max(peak);
        }
        let mut sent = 0u32;
        let mut newly: Vec<i32> = Vec::new();
        let mut refused: Vec<(i32, String)> = Vec::new();
        for fd in &tree {
            // Each process gets each signal once: a rescan (every exit in a
            // dying tree causes one) re-signals only processes it has not seen.
            let seen = if kill.forced {
                &mut kill.sigkill_sent
            } else {
                &mut kill.signalled
            };
            if seen.contains(&fd.pid()) {
                continue;
            }
            match fd.signal(sig) {
                Ok(true) => {
                    if sig == Sig::Term {
                        let _ = fd.signal(Sig::Cont);
                    }
                    seen.insert(fd.pid());
                    kill.signalled.insert(fd.pid());
                    newly.push(fd.pid());
                    sent += 1;
                }
                Ok(false) => {}
                // Not ours to signal (another user's process, e.g. under
                // sudo): say so instead of waiting on it in silence.
                Err(e) => {
                    seen.insert(fd.pid());
                    refused.push((fd.pid(), e.to_string()));
                }
            }
        }
        if !refused.is_empty() {
            self.outbox.record(
                self.ledger,
                EventKind::SignalRefused,
                Actor::Supervisor,
                json!({ "signal": if kill.forced { "SIGKILL" } else { "SIGTERM" }, "refused": refused,
                        "note": "tend may not signal these processes; the execution ends when they do" }),
            );
        }
        if kill.forced {
            if let Some(cg) = &self.cgroup {
                // Also takes whatever forked after the walk above.
                if populated && cg.kill().is_ok() && sent == 0 {
                    kill.sigkilled = true;
                }
            }
        }
        if sent > 0 {
            if kill.forced {
                kill.sigkilled = true;
            }
            let name = if kill.forced { "SIGKILL" } else { "SIGTERM" };
            // Audit events are best-effort here: failing to write one must
            // never stop the kill half-way.
            self.outbox.record(
                self.ledger,
                EventKind::SignalSent,
                Actor::Supervisor,
                json!({ "signal": name, "processes": sent, "pids": newly }),
            );
        }
        let kill = self.kill.as_mut().expect("checked above");
        kill.watch = tree;
        Ok(false)
    }

    /// Ends the whole tree at once (SIGKILL, and `cgroup.kill`), for a
    /// supervisor that has to stop on an error.
    fn abandon(&mut self) {
        kill_tree_now(self.me, self.cgroup.as_ref());
        self.reap();
        if let Some(cg) = &self.cgroup {
            remove_cgroup(cg);
        }
    }

    fn begin_kill(&mut self, cause: Cause, grace: Duration, force: bool) {
        let now = Instant::now();
        self.kill = Some(Kill {
            cause,
            started: now,
            grace_deadline: if force { now } else { now + grace },
            forced: false,
            sigkilled: false,
            signalled: HashSet::new(),
            sigkill_sent: HashSet::new(),
            watch: Vec::new(),
            stuck_reported: false,
            resumed_at: now,
        });
        self.rescan = true;
    }

    /// Ctrl-Z: stops the whole execution like a shell job — its tree, then
    /// this process — and continues the tree once this process is
    /// continued (`fg`). Deadlines are on the monotonic clock, so timeouts
    /// keep counting while stopped and fire at once on return; a kill
    /// asked for meanwhile is carried out by the asker (see `kill`).
    fn suspend(&mut self) {
        let tree = self.tree();
        tree::signal_all(&tree, Sig::Stop);
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
        // Continued: SIGSTOP is delivered before kill(2) returns.
        tree::signal_all(&tree, Sig::Cont);
        self.rescan = true;
    }

    /// The processes of the execution: the cgroup's members in the cgroup
    /// tier (plus, should one have been moved out of it, every descendant
    /// of the supervisor), else every descendant.
    fn tree(&self) -> Vec<Pidfd> {
        match &self.cgroup {
            Some(cg) => {
                let members = cg.open_members();
                if members.is_empty() && spawn::has_children() {
                    tree::open_descendants(self.me)
                } else {
                    members
                }
            }
            None => tree::open_descendants(self.me),
        }
    }

    /// Escalates a kill in progress: a second Ctrl-C or a `--force` request.
    fn hurry(&mut self) {
        if let Some(k) = self.kill.as_mut() {
            k.grace_deadline = Instant::now();
            self.rescan = true;
        }
    }

    fn on_nudge(&mut self) -> Result<(), Error> {
        let row = match self.ledger.get(&self.exec.id) {
            Ok(row) => row,
            Err(e) if e.is_transient() => {
                self.nudge_missed = true;
                self.outbox.defer("read the kill request", &e);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.nudge_missed = false;
        let Some(req) = row.kill_request.clone() else {
            return Ok(());
        };
        self.exec = row;
        match &self.kill {
            // The command already exited (Cleanup) or a kill is under way:
            // keep its cause and counts; a forced request only hurries it.
            Some(k) if matches!(k.cause, Cause::Cleanup) => self.hurry(),
            Some(_) => {
                if req.force {
                    self.hurry();
                } else if let Some(ms) = req.grace_ms {
                    // A later, shorter grace shortens the kill under way
                    // (a longer one never lengthens it).
                    let k = self.kill.as_mut().expect("matched above");
                    k.grace_deadline = k
                        .grace_deadline
                        .min(Instant::now() + Duration::from_millis(ms));
                    self.rescan = true;
                }
            }
            _ => {
                let grace = Duration::from_millis(req.grace_ms.unwrap_or(self.exec.kill_grace_ms));
                self.begin_kill(
                    Cause::Request {
                        by: req.by.parse().unwrap_or(Actor::User(Some(req.by))),
                        reason: req.reason,
                    },
                    grace,
                    req.force,
                );
            }
        }
        Ok(())
    }

    /// One `poll` over every source of news, then handles what it reported.
    fn wait_once(&mut self) -> Result<(), Error> {
        let timeout = self.next_deadline().map(|u| {
            let d = u.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as i64,
            }
        });
        let ready = self.poll_once(timeout.as_ref())?;
        for (i, revents) in ready.term.into_iter().enumerate() {
            let Some(r) = revents else { continue };
            match self.term.on_ready(i, r) {
                // The command is making progress, however slowly.
                Wrote::Some => self.last_output = Instant::now(),
                Wrote::ReaderGone => self.close_stream(i),
                Wrote::Failed => self.record_undelivered(),
            }
        }
        if ready.signals {
            self.on_signals()?;
        }
        for (i, ready) in ready.pipes.into_iter().enumerate() {
            if ready {
                self.read_pipe(i, false);
            }
        }
        if ready.child {
            self.reap();
        }
        if ready.watch {
            self.rescan = true;
        }
        let now = Instant::now();
        if self.outbox.retry_at().is_some_and(|t| now >= t) {
            self.retry_ledger()?;
        }
        // Limits apply to a running command only: one that already exited
        // keeps its own outcome even if a deadline passed in the same tick.
        if self.kill.is_none() && self.status.is_none() {
            self.check_limits(now)?;
        }
        self.check_kill(now);
        Ok(())
    }

    /// The earliest moment something is due: a limit of a running command,
    /// or the end of a kill's grace, or the moment a killed tree is stuck;
    /// or a retry of what the ledger did not take.
    fn next_deadline(&self) -> Option<Instant> {
        let due = self.limit_deadline();
        due.into_iter().chain(self.outbox.retry_at()).min()
    }

    /// The earliest limit or kill step due.
    fn limit_deadline(&self) -> Option<Instant> {
        match &self.kill {
            None => {
                // Output waiting for a slow reader may be what blocks the
                // command: that is not the command being idle.
                let idle = self
                    .exec
                    .idle_timeout_ms
                    .filter(|_| !self.term.behind_reader())
                    .map(|ms| self.last_output + Duration::from_millis(ms));
                [self.deadline, self.heartbeat_due, self.next_sample, idle]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Some(k) if !k.forced => Some(k.grace_deadline),
            Some(k) if !k.stuck_reported => Some(k.stuck_at()),
            Some(_) => None,
        }
    }

    /// Waits in one `poll` for the signal pipe, the command's pidfd, its
    /// pipes (not a stream whose reader is behind: back-pressure), tend's
    /// own stdout and stderr when output waits for them, and the pidfds of
    /// the tree being killed.
    fn poll_once(&self, timeout: Option<&Timespec>) -> Result<Ready, Error> {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(8);
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        let child_at = self.child.as_ref().map(|c| {
            fds.push(PollFd::new(c, PollFlags::IN));
            fds.len() - 1
        });
        let mut pipe_at = [None, None];
        for (i, p) in self.pipes.iter().enumerate() {
            if let Some(p) = p.as_ref().filter(|_| self.term.has_room(i)) {
                fds.push(PollFd::new(p, PollFlags::IN));
                pipe_at[i] = Some(fds.len() - 1);
            }
        }
        let mut term_at = [None, None];
        for (i, at) in term_at.iter_mut().enumerate() {
            if self.term.pending(i) {
                fds.push(PollFd::from_borrowed_fd(terminal::fd(i), PollFlags::OUT));
                *at = Some(fds.len() - 1);
            }
        }
        let watch_from = fds.len();
        for w in self.kill.iter().flat_map(|k| &k.watch) {
            fds.push(PollFd::new(w, PollFlags::IN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("waiting for events")(e.into())),
        }
        let ready = |i: usize| !fds[i].revents().is_empty();
        Ok(Ready {
            signals: ready(0),
            child: child_at.is_some_and(ready),
            pipes: pipe_at.map(|p| p.is_some_and(ready)),
            term: term_at.map(|t| t.map(|i| fds[i].revents())),
            watch: (watch_from..fds.len()).any(ready),
        })
    }

    /// Acts on the signals that arrived.
    fn on_signals(&mut self) -> Result<(), Error> {
        let p = self.signals.take();
        if p.child {
            self.reap();
        }
        if let Some(name) = p.stop {
            match &self.kill {
                Some(_) => self.hurry(),
                None if self.status.is_some() => {}
                None => {
                    let grace = Duration::from_millis(self.exec.kill_grace_ms);
                    self.begin_kill(Cause::Signal(name), grace, false);
                }
            }
        }
        if p.nudge {
            self.on_nudge()?;
        }
        // Ctrl-\ at tend's terminal is meant for the command, as in a
        // shell; a detached supervisor has no terminal and drops it.
        if p.quit && self.mode == Mode::Foreground {
            if let Some(c) = &self.child {
                let _ = c.signal(Sig::Quit);
            }
        }
        if p.suspend && self.mode == Mode::Foreground {
            self.suspend();
        }
        if p.resumed {
            if let Some(k) = self.kill.as_mut() {
                k.resumed_at = Instant::now();
            }
        }
        Ok(())
    }

    /// Pushes a kill on when its grace is over, and records a tree that is
    /// still there well after SIGKILL (uninterruptible sleep).
    fn check_kill(&mut self, now: Instant) {
        let Some(k) = self.kill.as_mut() else { return };
        if !k.forced && now >= k.grace_deadline {
            self.rescan = true;
            return;
        }
        if !k.forced || k.stuck_reported || now < k.stuck_at() {
            return;
        }
        k.stuck_reported = true;
        let pids: Vec<i32> = k.watch.iter().map(Pidfd::pid).collect();
        let states: Vec<String> = pids
            .iter()
            .map(|p| {
                procfs::stat(*p)
                    .map(|s| format!("{p}:{}", s.state))
                    .unwrap_or_default()
            })
            .collect();
        self.outbox.record(
            self.ledger,
            EventKind::Unkillable,
            Actor::Supervisor,
            json!({ "pids": pids, "states": states,
                    "note": "still present after SIGKILL (uninterruptible sleep?); still waiting" }),
        );
    }

    /// The ledger was busy: record what waits, and read a kill request
    /// that could not be read.
    fn retry_ledger(&mut self) -> Result<(), Error> {
        if self.outbox.flush(self.ledger) && self.nudge_missed {
            self.on_nudge()?;
        }
        if !self.nudge_missed {
            self.outbox.caught_up();
        }
        Ok(())
    }

    /// Fires the timeouts and limits whose time has come.
    fn check_limits(&mut self, now: Instant) -> Result<(), Error> {
        let grace = Duration::from_millis(self.exec.kill_grace_ms);
        if self.deadline.is_some_and(|d| now >= d) {
            self.begin_kill(
                Cause::Timeout(self.exec.timeout_ms.unwrap_or(0)),
                grace,
                false,
            );
            return Ok(());
        }
        if let Some(ms) = self
            .exec
            .idle_timeout_ms
            .filter(|_| !self.term.behind_reader())
        {
            if now >= self.last_output + Duration::from_millis(ms) {
                self.begin_kill(Cause::Idle(ms), grace, false);
                return Ok(());
            }
        }
        if let (Some(due), Some(ms)) = (self.heartbeat_due, self.exec.heartbeat_timeout_ms) {
            if now >= due {
                // The heartbeat is in the ledger; look only when it is due.
                let row = match self.ledger.get(&self.exec.id) {
                    Ok(row) => row,
                    Err(e) if e.is_transient() => {
                        // Not knowing is no reason to end it: look again.
                        self.outbox.defer("read the last heartbeat", &e);
                        self.heartbeat_due = Some(now + self.outbox.pause());
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                let last = row
                    .last_heartbeat_at
                    .or(row.started_at)
                    .unwrap_or(row.created_at);
                let left = last + ms as i64 - tend_ledger::now_ms();
                if left > 0 {
                    self.heartbeat_due = Some(now + Duration::from_millis(left as u64));
                } else {
                    self.heartbeat_due = None;
                    self.outbox.record(
                        self.ledger,
                        EventKind::HeartbeatMissed,
                        Actor::Supervisor,
                        json!({ "timeout_ms": ms, "last_heartbeat_at": row.last_heartbeat_at }),
                    );
                    self.begin_kill(Cause::Heartbeat(ms), grace, false);
                    return Ok(());
                }
            }
        }
        if let (Some(at), Some(limit)) = (self.next_sample, self.exec.max_memory_bytes) {
            if now >= at {
                let used = self.tree_rss();
                self.peak_rss = self.peak_rss.max(used);
                self.next_sample = Some(now + MEMORY_SAMPLE);
                if used > limit {
                    self.begin_kill(Cause::Memory { used, limit }, grace, false);
                }
            }
        }
        Ok(())
    }

    fn tree_rss(&self) -> u64 {
        let page = procfs::page_size();
        tree::descendants(self.me)
            .into_iter()
            .filter_map(|p| procfs::stat(p).ok())
            .map(|s| s.rss_pages * page)
            .sum()
    }

    /// Reaps every child that has exited: the command (whose status we
    /// keep) and any orphan re-parented to us.
    fn reap(&mut self) {
        while let Ok(Some((pid, st))) = wait(WaitOptions::NOHANG) {
            if pid.as_raw_nonzero().get() == self.direct {
                self.status = Some(st);
                self.child = None;
            }
            self.rescan = true;
        }
    }

    fn read_pipe(&mut self, i: usize, to_end: bool) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let Some(fd) = self.pipes[i].as_ref() else {
                return;
            };
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    self.pipes[i] = None;
                    return;
                }
                Ok(n) => {
                    self.copy_out(i, &buf[..n]);
                    if !to_end {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    // EAGAIN: nothing more now. When draining at the end
                    // the whole tree is gone, so no writer is left.
                    if to_end {
                        self.pipes[i] = None;
                    }
                    return;
                }
            }
        }
    }

    fn copy_out(&mut self, i: usize, data: &[u8]) {
        self.last_output = Instant::now();
        if self.mode == Mode::Foreground {
            self.term.push(i, data);
        }
        if let Some(e) = self.logs[i].write(data) {
            let stream = if i == 0 { "stdout" } else { "stderr" };
            self.outbox.record(
                self.ledger,
                EventKind::LogWriteFailed,
                Actor::Supervisor,
                json!({ "stream": stream, "error": e.to_string(),
                        "note": "output is no longer saved; the command keeps running" }),
            );
        }
    }

    /// Makes the logs durable before the status that points at them is
    /// committed (an fsync per stream that has new output, and one of the
    /// folder). A failure is recorded, not fatal: the outcome still counts.
    fn make_logs_durable(&mut self, home: &Home) {
        let mut synced = false;
        for i in 0..2 {
            match self.logs[i].make_durable() {
                Ok(s) => synced |= s,
                Err(e) => {
                    self.outbox.record(
                        self.ledger,
                        EventKind::LogSyncFailed,
                        Actor::Supervisor,
                        json!({ "stream": if i == 0 { "stdout" } else { "stderr" }, "error": e.to_string() }),
                    );
                }
            }
        }
        if synced {
            let _ = crate::logs::sync_dir(&home.logs_dir());
        }
    }

    /// Audits (once per stream) that output could not be written to tend's
    /// own stdout or stderr; the command runs on, its output kept in the log.
    fn record_undelivered(&mut self) {
        if let Some((stream, e)) = self.term.failure() {
            self.outbox.record(
                self.ledger,
                EventKind::OutputUndelivered,
                Actor::Supervisor,
                json!({ "stream": stream, "error": e.to_string(),
                        "note": "the rest of this stream is only in the log" }),
            );
        }
    }

    /// The reader of our stream `i` went away: keep in the log what the
    /// command already wrote, then close its pipe, as a plain pipeline
    /// would (its next write gets SIGPIPE or EPIPE).
    fn close_stream(&mut self, i: usize) {
        self.read_pipe(i, true);
        self.pipes[i] = None;
    }

    fn drain_pipes(&mut self) {
        for i in 0..2 {
            self.read_pipe(i, true);
        }
    }

    fn outcome(&self) -> Outcome {
        let st = self
            .status
            .expect("the loop ends only after the command is reaped");
        let (exit_code, signal) = (st.exit_status(), st.terminating_signal());
        let exited = match (exit_code, signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("killed by signal {s} ({})", signal_name(s)),
            _ => "ended".to_string(),
        };
        let kill = self.kill.as_ref().map(|k| KillReport {
            method: if k.sigkilled {
                KillMethod::Forced
            } else {
                KillMethod::Graceful
            },
            duration_ms: match (&k.cause, &self.exec.kill_request) {
                // From the moment it was asked for: a supervisor that was
                // stopped or busy must not make the kill look quick.
                (Cause::Request { .. }, Some(r)) => (tend_ledger::now_ms() - r.at).max(0) as u64,
                _ => k.started.elapsed().as_millis() as u64,
            },
            processes_signalled: k.signalled.len() as u32,
        });
        let mut details = json!({ "pid": self.exec.pid });
        let (status, reason, event, actor) = match self.kill.as_ref().map(|k| &k.cause) {
            Some(Cause::Timeout(ms)) => timed_out("timed out after", *ms),
            Some(Cause::Heartbeat(ms)) => timed_out("no heartbeat within", *ms),
            Some(Cause::Idle(ms)) => timed_out("no output for", *ms),
            Some(Cause::Memory { used, limit }) => (
                Status::Killed,
                format!("memory limit exceeded ({} > {})", mib(*used), mib(*limit)),
                EventKind::Killed,
                Actor::Supervisor,
            ),
            Some(Cause::Request { by, reason }) => (
                Status::Killed,
                match reason {
                    Some(r) => format!("killed by {by}: {r}"),
                    None => format!("killed by {by}"),
                },
                EventKind::Killed,
                by.clone(),
            ),
            Some(Cause::Signal(name)) => (
                Status::Killed,
                format!("interrupted ({name} to the supervisor)"),
                EventKind::Killed,
                Actor::User(None),
            ),
            Some(Cause::Cleanup) | None => {
                if let Some(k) = self.kill.as_ref() {
                    details["stragglers_ended"] = json!(k.signalled.len());
                }
                let status = if exit_code == Some(0) {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
                (status, exited, EventKind::Exited, Actor::Supervisor)
            }
        };
        let (cpu_ms, max_rss) = tend_proc::children_usage();
        let usage = Some(tend_ledger::Usage {
            cpu_ms: cpu_ms.max(self.sampled_cpu_ms),
            max_rss_bytes: max_rss.max(self.peak_rss),
        });
        Outcome {
            status,
            reason,
            exit_code,
            signal,
            kill,
            usage,
            event,
            actor,
            details,
        }
    }
}

/// The outcome parts of a timeout of any kind.
fn timed_out(what: &str, ms: u64) -> (Status, String, EventKind, Actor) {
    let after = tend_model::format_duration(Duration::from_millis(ms));
    (
        Status::TimedOut,
        format!("{what} {after}"),
        EventKind::TimedOut,
        Actor::Supervisor,
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1}M", bytes as f64 / 1_048_576.0)
}

/// `SIGTERM` for 15, and so on, for reasons people read.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}
