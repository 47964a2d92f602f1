//! `tend run`, and the hidden `tend __supervise` that a detached run starts.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use tend_ledger::Ledger;
use tend_model::run::RunOptions;
use tend_model::ExecutionId;
use tend_supervisor::detach::{self, Answer};
use tend_supervisor::{Mode, OnDuplicate, Report, RunResult, RunSpec};

use super::Context;
use crate::cli::{self, RunArgs};
use crate::output;

/// The absolute working directory, byte for byte (it need not be UTF-8).
fn working_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        // `--cwd=~/x` reaches tend unexpanded; mean what the shell would.
        Some(c) => match c.to_str().filter(|t| t.starts_with('~')) {
            Some(t) => crate::config::expand_tilde(t).map_err(crate::usage)?,
            None => c.to_path_buf(),
        },
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let why = match std::fs::canonicalize(&dir) {
        Ok(c) if c.is_dir() => return Ok(c),
        Ok(_) => "is not a directory",
        Err(e) if e.kind() == ErrorKind::NotADirectory => "is not a directory",
        Err(e) if e.kind() == ErrorKind::NotFound => "does not exist",
        Err(e) => {
            return Err(crate::usage(format!(
                "cannot use {} as the working directory: {e}",
                output::path(&dir)
            )))
        }
    };
    Err(crate::usage(format!(
        "the working directory {} {why}",
        output::path(&dir)
    )))
}

/// The flags as [`RunOptions`], the working directory made absolute (and
/// checked) here, where it was given.
pub fn options(args: &cli::RunOptionArgs, command: &[String]) -> Result<RunOptions> {
    Ok(RunOptions {
        command: command.to_vec(),
        name: args.name.clone(),
        cwd: Some(working_dir(args.cwd.as_deref())?),
        env: args.env.iter().cloned().collect(),
        labels: args.labels.iter().cloned().collect(),
        key: args.key.clone(),
        on_duplicate: args.on_duplicate.map(|d| match d {
            cli::OnDuplicate::Wait => OnDuplicate::Wait,
            cli::OnDuplicate::Skip => OnDuplicate::Skip,
            cli::OnDuplicate::Fail => OnDuplicate::Fail,
            cli::OnDuplicate::Replace => OnDuplicate::Replace,
        }),
        reuse_finished: args.reuse_finished,
        timeout: args.timeout,
        kill_grace: args.kill_grace,
        heartbeat_timeout: args.heartbeat_timeout,
        idle_timeout: args.idle_timeout,
        max_memory: args.max_memory,
        retries: args.retries,
        retry_backoff: args.retry_backoff,
        retry_max_backoff: args.retry_max_backoff,
        workspace: args.workspace,
    })
}

/// The flags resolved by the one validator the API and stored jobs use
/// too; a refusal is a usage error in the same words. `-t` is the
/// foreground's own: set after, since no stored job has a terminal.
fn spec(ctx: &Context, args: &RunArgs) -> Result<RunSpec> {
    let mut spec = options(&args.options, &args.command)?
        .resolve(&ctx.config.policy()?)
        .map_err(|e| crate::usage(e.to_string()))?;
    spec.tty = args.tty;
    spec.requested_by = Some(super::actor().to_string());
    // Nothing is recorded for a workspace that cannot be made.
    tend_supervisor::workspace::check(&spec).map_err(crate::usage)?;
    Ok(spec)
}

/// The one sentence for a command that could not be started.
fn cannot_start(e: &tend_model::Execution) {
    let why = e.reason.as_deref().unwrap_or("the command");
    note!(
        "cannot start {} (recorded as execution {})",
        output::esc(why.trim_start_matches("failed to start: ")),
        e.id
    );
}

/// A foreground run is its command's supervisor, and a command can read
/// its parent's initial environment (`/proc/<ppid>/environ`, which
/// removing a variable in-process does not change). So a foreground run
/// given a secret (`TEND_TOKEN`, [`tend_supervisor::SECRET_VARS`])
/// first executes itself again without it, as `run -d` starts its
/// supervisor without it. Same pid, same arguments and descriptors.
pub fn drop_secrets() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let secrets = tend_supervisor::SECRET_VARS;
    if !secrets.iter().any(|v| std::env::var_os(v).is_some()) {
        return Ok(());
    }
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args);
    for v in secrets {
        cmd.env_remove(v);
    }
    let e = cmd.exec();
    Err(anyhow::Error::new(e).context(format!(
        "cannot start tend again without {} in its environment; unset it before tend run",
        secrets.join(", ")
    )))
}

/// `tend run`.
pub fn run(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let spec = spec(ctx, args)?;
    // Launching reads nothing but a key's holder, so only a keyed run pays
    // for reconciling: a holder whose supervisor died must not keep the key.
    if spec.key.is_some() {
        ctx.reconcile()?;
    }
    execute(ctx, spec, args.detach)
}

/// Runs a resolved spec as `tend run` does: in the foreground with its
/// exit code, or detached printing its id. `tend job run` comes here too.
pub fn execute(ctx: &Context, spec: RunSpec, detach: bool) -> Result<i32> {
    super::agent::ensure(ctx)?;
    if detach {
        return detached(ctx, spec);
    }
    let verbose = ctx.global.verbose && !ctx.global.quiet;
    let aside = StdoutAside::new(ctx.global.json)?;
    // `-t`: keys reach the command's terminal as typed (Ctrl-C too) until
    // the run ends; the terminal's mode comes back when this drops.
    let raw = spec
        .tty
        .then(|| tend_proc::pty::RawMode::enter(rustix::stdio::stdin()))
        .flatten();
    let result = tend_supervisor::run(&ctx.ledger, &ctx.home, &spec, Mode::Foreground, &mut |r| {
        match r {
            Report::Started(e) if verbose => {
                note!("execution {} started (pid {})", e.id, e.pid.unwrap_or(0));
            }
            Report::Retrying { ended, next } if !ctx.global.quiet => {
                note!("{}", output::retrying(ended, next));
            }
            Report::Replacing(h) => note!(
                "key '{}' is held by execution {}; ending it to start this run (--on-duplicate replace)",
                output::esc(h.key.as_deref().unwrap_or_default()),
                h.id
            ),
            _ => {}
        }
    })?;
    drop(raw);
    drop(aside);
    let e = match result {
        RunResult::Finished(e) => {
            // A pending retry cancelled before it started was never meant
            // to start yet: its ending line says so, not "cannot start".
            if e.started_at.is_none() && e.status != tend_model::Status::Cancelled {
                cannot_start(&e);
            } else if let Some(line) = output::ending(&e) {
                ctx.note(line);
            }
            e
        }
        RunResult::Undelivered(e, why) => {
            // Like `cat` on a full disk: the output did not all arrive,
            // so this is not a success, whatever the command did.
            let log = if why.starts_with("stderr") {
                &e.stderr_path
            } else {
                &e.stdout_path
            };
            note!(
                "could not write all of execution {}'s output ({why}); all of it is in {log}",
                e.id
            );
            if ctx.global.json {
                output::json(&e)?;
            }
            return Ok(e.shell_code().max(1));
        }
        RunResult::Existing(e, mode) => return super::dedup::existing(ctx, e, mode, false),
    };
    if ctx.global.json {
        output::json(&e)?;
    }
    Ok(e.shell_code())
}

/// With `--json`, tend's stdout carries the JSON and nothing else: while
/// the command runs its stdout goes to tend's stderr (one file then, so
/// the two streams keep the order they were written in), and the real
/// stdout comes back for the JSON when this is dropped.
struct StdoutAside(Option<std::os::fd::OwnedFd>);

impl StdoutAside {
    fn new(json: bool) -> Result<StdoutAside> {
        use std::os::fd::AsFd;
        if !json {
            return Ok(StdoutAside(None));
        }
        let out = std::io::stdout();
        let saved = rustix::io::fcntl_dupfd_cloexec(out.as_fd(), 3)
            .context("cannot set stdout aside for the JSON")?;
        rustix::stdio::dup2_stdout(std::io::stderr().as_fd())
            .context("cannot send the command's stdout to stderr")?;
        Ok(StdoutAside(Some(saved)))
    }
}

impl Drop for StdoutAside {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let _ = rustix::stdio::dup2_stdout(&fd);
        }
    }
}

fn detached(ctx: &Context, spec: RunSpec) -> Result<i32> {
    let spec_mode = spec.on_duplicate;
    let exe =
        std::env::current_exe().context("cannot find the tend executable to start a supervisor")?;
    let answer = detach::launch(&exe, &ctx.home, &ctx.config.store()?, &spec)?;
    let show = |id: &str| -> Result<tend_model::Execution> {
        Ok(ctx.ledger.get(&ExecutionId::parse(id)?)?)
    };
    let (e, code) = match answer {
        Answer::Started { id } => (show(&id)?, 0),
        Answer::Existing { id } => {
            return super::dedup::existing(ctx, show(&id)?, spec_mode, true);
        }
        Answer::FailedToStart { id } => {
            let e = show(&id)?;
            cannot_start(&e);
            let code = e.shell_code();
            (e, code)
        }
        Answer::Error { message } => bail!("{message}"),
    };
    // The execution is recorded and running by now: a reader that went
    // away makes this exit 141, never a panic that looks like a failed
    // launch to a caller that would retry it.
    if ctx.global.json {
        output::json(&e)?;
    } else {
        say!("{}", e.id)?;
    }
    Ok(code)
}
