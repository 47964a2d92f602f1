//! The supervisor: one single-threaded process per execution, the direct
//! parent of its command.
//!
//! Order of work, and why:
//! 1. become a child subreaper and catch SIGUSR1 — before the execution is
//!    recorded, since from then on others may nudge us;
//! 2. commit the execution as `queued` with our own identity (*before* the
//!    fork, so no process ever runs unrecorded), or hand back the key's
//!    holder; only then install the signal handlers (an attaching run keeps
//!    the default Ctrl-C);
//! 3. spawn the command in its own session with PDEATHSIG, commit `running`
//!    with its identity;
//! 4. wait in one `poll` for the command's pidfd, its output pipes, our
//!    signals, and the deadlines of timeouts and kills — never a sleep loop;
//! 5. once the command has exited, end whatever it left behind (orphans are
//!    re-parented to us, so they are still our descendants);
//! 6. commit the terminal status only when the tree is empty, then announce
//!    it with an exit file.
//!
//! This file holds [`run`] and the event loop; its parts are its child
//! modules, in `supervisor/`: `start` starts the command (step 3), `ending`
//! ends the tree (kills, and what the command left behind), `limits` fires
//! the timeouts and the memory limit, `pipes` keeps the command's output in
//! the logs (`terminal` and `streams` copy it in the foreground), `outbox`
//! holds the events a busy ledger did not take, and `outcome` maps what
//! happened to the outcome committed, as a pure function. `ending`,
//! `limits` and `pipes` are methods on the loop's state (`Supervision`);
//! `outcome` sees only a plain `Happened`.

mod agent;
mod ending;
mod limits;
mod outbox;
mod outcome;
mod pipes;
mod start;
pub use start::find_program;
mod streams;
mod terminal;
mod tty;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{wait, WaitOptions, WaitStatus};
use serde_json::json;
use tend_ledger::{Created, Ledger, NewExecution, Outcome, Transition, Usage};
use tend_model::{Actor, EventKind};
use tend_model::{Execution, Status, MARKER_AGENT, MARKER_EXECUTION, MARKER_LEDGER};
use tend_proc::cgroup::Cgroup;
use tend_proc::{procfs, spawn, tree, Pidfd, Sig};

pub use outcome::signal_name;

use ending::{Cause, Kill};
use limits::MEMORY_SAMPLE;
use outbox::Outbox;
use outcome::{outcome, Happened};
use start::{
    failed_to_start, kill_tree_now, launch, nonblocking, open_logs, persist, remove_cgroup,
    Launched,
};
use terminal::{Terminal, Wrote};

use crate::logs::LogFile;
use crate::signals::Signals;
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
    /// `--on-duplicate replace`: this holder of the key is being killed so
    /// that the run can start (it is reported before the kill).
    Replacing(&'a Execution),
    /// `--retries`: the attempt `ended` is retried as `next`, which starts
    /// at its `start_after`.
    Retrying {
        /// The attempt that ended.
        ended: &'a Execution,
        /// The attempt that follows it, `queued`.
        next: &'a Execution,
    },
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

/// Runs one execution to its end. Blocks until the command and every
/// process it started are gone and the outcome is committed.
///
/// The calling process becomes the supervisor: it turns into a child
/// subreaper, installs handlers for SIGCHLD, SIGINT, SIGTERM, SIGHUP,
/// SIGUSR1, SIGQUIT, SIGTSTP, SIGCONT and SIGWINCH, reaps any child with
/// `waitpid(-1)`, and treats every descendant
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
    let me = Me::become_supervisor(ledger, home, spec)?;
    // `tend run` and the API refuse a workspace that cannot be made before
    // they launch; a job's fire finds out here, and records why.
    let checked = crate::workspace::check(spec);
    let mut new = new_execution(spec, home, &me.tier, me.identity.clone(), &me.agent);
    new.workspace = spec.workspace.map(|kind| tend_ledger::NewWorkspace {
        kind,
        dir: home.workspaces_dir(),
        repository: checked.clone().ok().flatten(),
    });
    let exec = match create(ledger, home, &new, spec, report)? {
        Ok(e) => e,
        Err(e) => {
            report(Report::Existing(&e, spec.on_duplicate));
            return Ok(RunResult::Existing(e, spec.on_duplicate));
        }
    };
    // Only now: a run that attaches to a key's holder, skips or fails
    // keeps the default signals (Ctrl-C ends the attaching tend, never
    // the holder).
    let signals = Signals::install().map_err(Error::io("installing signal handlers"))?;
    if let Err(why) = checked {
        return failed_to_start(ledger, home, exec, 1, why, report);
    }
    let run = Run {
        ledger,
        home,
        spec,
        mode,
        me: &me,
        signals: &signals,
    };
    let first = attempt(&run, exec, report)?;
    crate::retry::follow_attempts(&run, first, report)
}

/// What every attempt of one run is supervised with.
pub(crate) struct Run<'a, L: Ledger + ?Sized> {
    pub(crate) ledger: &'a L,
    pub(crate) home: &'a Home,
    pub(crate) spec: &'a RunSpec,
    pub(crate) mode: Mode,
    pub(crate) me: &'a Me,
    pub(crate) signals: &'a Signals,
}

/// The supervisor's own facts, found once and kept for every attempt.
pub(crate) struct Me {
    /// Its pid.
    pub(crate) pid: i32,
    /// Its identity, as the ledger records it.
    pub(crate) identity: tend_model::ProcessIdentity,
    /// The containment tier its executions get.
    pub(crate) tier: crate::Tier,
    /// The home's agent id.
    pub(crate) agent: String,
}

impl Me {
    /// Turns the calling process into a supervisor (a child subreaper that
    /// survives a nudge) and finds its facts.
    pub(crate) fn become_supervisor<L: Ledger + ?Sized>(
        ledger: &L,
        home: &Home,
        spec: &RunSpec,
    ) -> Result<Me, Error> {
        spawn::become_subreaper().map_err(Error::io("becoming a child subreaper"))?;
        crate::signals::shield_nudge().map_err(Error::io("installing signal handlers"))?;
        let pid = std::process::id() as i32;
        let identity =
            tend_proc::identify(pid).map_err(Error::io("reading the supervisor's identity"))?;
        let tier = crate::tier::choose(ledger.ledger_id(), spec.containment)?;
        let agent = home
            .agent()
            .map_err(Error::io("reading the home's agent id"))?
            .id;
        Ok(Me {
            pid,
            identity,
            tier,
            agent,
        })
    }
}

/// Runs one recorded, `queued` execution (a first attempt or a retry) to
/// its end: logs and cgroup, the command, the supervision, the outcome.
pub(crate) fn attempt<L: Ledger + ?Sized>(
    run: &Run<'_, L>,
    exec: Execution,
    report: &mut dyn FnMut(Report<'_>),
) -> Result<RunResult, Error> {
    let Run {
        ledger,
        home,
        spec,
        mode,
        me,
        signals,
    } = *run;
    home.notifier().announce(&exec.id, exec.status);
    failpoint("after-queued-commit");
    let (mut out, mut err, cgroup) = match prepare(&exec, spec, &me.tier) {
        Ok(made) => made,
        Err(why) => return failed_to_start(ledger, home, exec, 1, why, report),
    };
    // `--workspace`: the command works there, not in the cwd.
    let in_workspace;
    let spec = match crate::workspace::make(&exec, spec) {
        Ok(None) => spec,
        Ok(Some(dir)) => {
            in_workspace = RunSpec {
                cwd: dir,
                ..spec.clone()
            };
            &in_workspace
        }
        Err(why) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            return failed_to_start(ledger, home, exec, 1, why, report);
        }
    };
    let markers = [
        (MARKER_EXECUTION, exec.id.as_str()),
        (MARKER_LEDGER, ledger.ledger_id()),
        (MARKER_AGENT, me.agent.as_str()),
    ];
    let boot_id = &me.identity.boot_id;
    let launched = match launch(spec, mode, &me.tier, cgroup.as_ref(), &markers, boot_id)? {
        Ok(l) => l,
        Err((code, why)) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            return failed_to_start(ledger, home, exec, code, why, report);
        }
    };
    failpoint("after-spawn");
    let exec = match commit_start(ledger, mode, &exec, &launched, me.pid, cgroup.as_ref())? {
        Transition::Won(e) => e,
        Transition::Lost(current) => return Ok(RunResult::Finished(current)),
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
        ledger, exec, me.pid, mode, signals, launched, logs, cgroup, spec,
    )?;
    sup.agent = agent::for_ledger(ledger, home, &sup.exec)?;
    if sup.exec.kill_request.is_some() {
        sup.on_nudge()?;
    }
    sup.finish(home)
}

/// Hands `--max-memory` to the kernel (`memory.max`) when the execution's
/// cgroup has the memory controller; returns whether it did.
fn kernel_enforces(cgroup: Option<&Cgroup>, limit: Option<u64>) -> bool {
    match (cgroup, limit) {
        (Some(cg), Some(bytes)) => cg.limit_memory(bytes).unwrap_or(false),
        _ => false,
    }
}

/// Records the new execution; `Ok(Err(e))` when the key names `e` instead
/// (a live holder, or a result to reuse). With `replace`, a live holder is
/// killed first (and reported) and the record tried again.
fn create<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    new: &NewExecution,
    spec: &RunSpec,
    report: &mut dyn FnMut(Report<'_>),
) -> Result<Result<Execution, Execution>, Error> {
    loop {
        match ledger.create(new)? {
            Created::New(e) => return Ok(Ok(e)),
            Created::Existing(holder)
                if spec.on_duplicate == OnDuplicate::Replace && !holder.status.is_terminal() =>
            {
                report(Report::Replacing(&holder));
                replace(ledger, home, &holder, spec)?;
            }
            Created::Existing(e) => return Ok(Err(e)),
        }
    }
}

/// `--on-duplicate replace`: kills the live holder of the key (audited as
/// asked by whoever asked for this run, graceful then certain) and returns
/// once its tree is gone, so that the new run can take the key.
fn replace<L: Ledger + ?Sized>(
    ledger: &L,
    home: &Home,
    holder: &Execution,
    spec: &RunSpec,
) -> Result<(), Error> {
    let actor = spec
        .requested_by
        .as_deref()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Actor::Supervisor);
    let req = tend_ledger::KillRequest {
        actor,
        reason: Some(format!(
            "replaced by a new run with the key '{}' (--on-duplicate replace)",
            holder.key.as_deref().unwrap_or_default()
        )),
        force: false,
        grace_ms: None,
    };
    crate::kill(ledger, home, std::slice::from_ref(holder), &req)?;
    Ok(())
}

/// The command's log files and, in the cgroup tier, its cgroup: what must
/// exist before it starts. Or why they cannot be made, for the `failed`
/// outcome.
fn prepare(
    exec: &Execution,
    spec: &RunSpec,
    tier: &crate::Tier,
) -> Result<(LogFile, LogFile, Option<Cgroup>), String> {
    let (out, err) = open_logs(exec, spec.log_max_bytes)
        .map_err(|e| format!("cannot create its log files: {e}"))?;
    let cgroup = match tier.cgroup_parent() {
        Some(parent) => Some(
            Cgroup::create(parent, exec.id.as_str())
                .map_err(|e| format!("cannot create its cgroup in {}: {e}", parent.display()))?,
        ),
        None => None,
    };
    Ok((out, err, cgroup))
}

/// Commits `running` with the command's identity, retried while the ledger
/// is busy. When somebody ended the execution while it was queued (a
/// cancel), honours that: ends everything the command may have forked
/// meanwhile, and hands back the row as it is.
fn commit_start<L: Ledger + ?Sized>(
    ledger: &L,
    mode: Mode,
    exec: &Execution,
    launched: &Launched,
    me: i32,
    cgroup: Option<&Cgroup>,
) -> Result<Transition, Error> {
    let t = persist(mode, &exec.id, "the start", || {
        ledger.start(&exec.id, &launched.identity)
    })?;
    if let Transition::Lost(_) = &t {
        let _ = launched.child.signal(Sig::Kill);
        kill_tree_now(me, cgroup);
        while let Ok(Some(_)) = wait(WaitOptions::NOHANG) {}
        if let Some(cg) = cgroup {
            remove_cgroup(cg);
        }
    }
    Ok(t)
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
        reuse_finished_ms: spec.reuse_finished_ms,
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
        job: spec.job.clone(),
        job_slot: spec.fire,
        workspace: None,
        retries: spec.retries,
        retry_backoff_ms: (spec.retries > 0).then_some(spec.retry_backoff_ms),
        retry_max_backoff_ms: (spec.retries > 0).then_some(spec.retry_max_backoff_ms),
        run_spec: (spec.retries > 0).then(|| {
            // What a daemon needs to start a pending attempt whose supervisor
            // is gone: it has no terminal to give it.
            let detached = RunSpec {
                tty: false,
                ..spec.clone()
            };
            serde_json::to_string(&detached).expect("a run spec serialises")
        }),
    }
}

/// What one `poll` reported.
struct Ready {
    signals: bool,
    child: bool,
    pipes: [bool; 2],
    term: [Option<PollFlags>; 2],
    watch: bool,
    /// `-t`: tend's stdin has keys; the command's terminal has room.
    typed: bool,
    room: bool,
    /// The home's agent exited.
    agent: bool,
}

struct Supervision<'a, L: Ledger + ?Sized> {
    ledger: &'a L,
    exec: Execution,
    me: i32,
    mode: Mode,
    signals: &'a Signals,
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
    /// When the first Ctrl-C was passed on to the command.
    interrupted: Option<Instant>,
    /// `-t`: the command's pseudo-terminal, typed into from tend's stdin.
    tty: Option<tty::TtyInput>,
    /// The kernel enforces `--max-memory` (the cgroup's `memory.max`).
    kernel_memory_limit: bool,
    /// On a shared ledger: the home's agent, whose lease covers this run.
    agent: Option<agent::AgentWatch>,
}

impl<'a, L: Ledger + ?Sized> Supervision<'a, L> {
    /// The supervision of a started command.
    #[allow(clippy::too_many_arguments)]
    fn new(
        ledger: &'a L,
        exec: Execution,
        me: i32,
        mode: Mode,
        signals: &'a Signals,
        launched: Launched,
        logs: [&'a mut LogFile; 2],
        cgroup: Option<Cgroup>,
        spec: &RunSpec,
    ) -> Result<Self, Error> {
        let now = Instant::now();
        let after = |ms: Option<u64>| ms.map(|ms| now + Duration::from_millis(ms));
        let (exec_id, stdout_path) = (exec.id.clone(), exec.stdout_path.clone());
        let kernel_memory_limit = kernel_enforces(cgroup.as_ref(), spec.max_memory_bytes);
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
            // Sampled only where the kernel cannot enforce it.
            next_sample: spec
                .max_memory_bytes
                .filter(|_| !kernel_memory_limit)
                .map(|_| now + MEMORY_SAMPLE),
            peak_rss: 0,
            sampled_cpu_ms: 0,
            cgroup,
            leftovers: launched.leftovers,
            term: Terminal::new(),
            rescan: false,
            outbox: Outbox::new(exec_id, mode, &stdout_path),
            nudge_missed: false,
            interrupted: None,
            tty: launched.tty,
            kernel_memory_limit,
            agent: None,
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
        let retry = self.retry();
        let t = self.outbox.commit("record the outcome", || match &retry {
            Some(r) => ledger
                .transition_retrying(&id, Status::Running, &outcome, r)
                .map(|(t, _)| t),
            None => ledger.transition(&id, Status::Running, &outcome),
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

    /// The retry to ask for with the outcome, if the run has retries: not
    /// after a Ctrl-C (whatever the command then did, the person at the
    /// terminal wants it to stop). The ledger decides whether the outcome
    /// is one that is retried and whether attempts are left.
    fn retry(&self) -> Option<tend_ledger::Retry> {
        if self.exec.retries == 0 || self.interrupted.is_some() {
            return None;
        }
        Some(tend_ledger::Retry {
            delay_ms: crate::retry::delay_ms(&self.exec),
            supervisor: self.exec.supervisor.clone(),
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
        Ok(outcome(self.happened()))
    }

    /// What happened, for [`outcome`]: how the command ended, the kill's
    /// cause and facts, and what the tree used (the reaped children's usage,
    /// or what was sampled from live processes when that is more).
    fn happened(&self) -> Happened {
        let st = self
            .status
            .expect("the loop ends only after the command is reaped");
        let request = self.exec.kill_request.as_ref();
        let kill = self
            .kill
            .as_ref()
            .map(|k| (k.cause.clone(), k.report(request)));
        let (cpu_ms, max_rss) = tend_proc::children_usage();
        Happened {
            exit_code: st.exit_status(),
            signal: st.terminating_signal(),
            pid: self.exec.pid,
            interrupted: self.interrupted.is_some(),
            oom_kills: match (&self.cgroup, self.kernel_memory_limit) {
                (Some(cg), true) => cg.oom_kills(),
                _ => 0,
            },
            memory_limit: self.exec.max_memory_bytes,
            kill,
            usage: Usage {
                cpu_ms: cpu_ms.max(self.sampled_cpu_ms),
                max_rss_bytes: max_rss.max(self.peak_rss),
            },
        }
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

    /// Someone asked for a kill (SIGUSR1): read the request from the row
    /// and carry it out. A busy ledger only postpones the reading.
    fn on_nudge(&mut self) -> Result<(), Error> {
        // The agent's fence comes first: it is sent when the ledger is out
        // of reach.
        if let Some(f) = self
            .agent
            .as_ref()
            .and_then(|a| a.take_fence(self.exec.id.as_str()))
        {
            self.fence(f);
            return Ok(());
        }
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
        self.on_request(req);
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
        // Nothing is held open while we wait: on PostgreSQL, no connection
        // per idle execution.
        self.ledger.idle();
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
        if let Some(t) = self.tty.as_mut() {
            if ready.typed {
                t.on_stdin();
            }
            if ready.room {
                t.flush();
            }
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
        self.check_agent(ready.agent, now);
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
        let look = self.agent.as_ref().and_then(agent::AgentWatch::deadline);
        due.into_iter()
            .chain(self.outbox.retry_at())
            .chain(look)
            .min()
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
                let interrupt = self
                    .interrupted
                    .map(|at| at + Duration::from_millis(self.exec.kill_grace_ms));
                [
                    self.deadline,
                    self.heartbeat_due,
                    self.next_sample,
                    idle,
                    interrupt,
                ]
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
        fds.push(PollFd::new(self.signals, PollFlags::IN));
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
        let (mut typed_at, mut room_at) = (None, None);
        if let Some(t) = &self.tty {
            if t.wants_stdin() {
                fds.push(PollFd::from_borrowed_fd(
                    rustix::stdio::stdin(),
                    PollFlags::IN,
                ));
                typed_at = Some(fds.len() - 1);
            }
            if t.wants_room() {
                fds.push(PollFd::from_borrowed_fd(t.fd(), PollFlags::OUT));
                room_at = Some(fds.len() - 1);
            }
        }
        let agent_at = self.agent.as_ref().and_then(|a| a.fd()).map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::IN));
            fds.len() - 1
        });
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
            typed: typed_at.is_some_and(ready),
            room: room_at.is_some_and(ready),
            agent: agent_at.is_some_and(ready),
        })
    }

    /// Acts on the signals that arrived.
    fn on_signals(&mut self) -> Result<(), Error> {
        let p = self.signals.take();
        if p.child {
            self.reap();
        }
        if p.interrupt && self.mode == Mode::Foreground {
            self.on_interrupt();
        }
        let stop = p
            .stop
            .or((p.interrupt && self.mode != Mode::Foreground).then_some("SIGINT"));
        if let Some(name) = stop {
            self.on_stop(name);
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
        if let Some(t) = self.tty.as_ref().filter(|_| p.winch) {
            t.resize();
        }
        Ok(())
    }

    /// SIGTERM or SIGHUP to the supervisor (SIGINT too when detached): end
    /// the tree, or hurry a kill under way.
    fn on_stop(&mut self, name: &'static str) {
        match &self.kill {
            Some(_) => self.hurry(),
            None if self.status.is_some() => {}
            None => {
                let grace = Duration::from_millis(self.exec.kill_grace_ms);
                self.begin_kill(Cause::Signal(name), grace, false);
            }
        }
    }

    /// Ctrl-C in the foreground, as a shell passes it: the first goes to
    /// the command (its process group) as SIGINT; a second, or the command
    /// still running a kill grace later, ends the tree like a kill.
    fn on_interrupt(&mut self) {
        match (&self.kill, self.interrupted, &self.child) {
            (Some(_), _, _) => self.hurry(),
            _ if self.status.is_some() => {}
            (None, None, Some(child)) => {
                // Not reaped yet (status is None): the group id is still its.
                let _ = child.signal_group_as_parent(Sig::Int);
                self.interrupted = Some(Instant::now());
            }
            (None, _, _) => self.on_stop("SIGINT"),
        }
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
}
