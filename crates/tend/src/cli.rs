//! The command line, declared with clap. Every value that has a format
//! (durations, sizes, labels, statuses) is parsed here, so a malformed one
//! is a usage error (exit 2) before anything touches the ledger.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tend_model::Status;

/// Run commands as tracked executions, with a ledger that never lies.
#[derive(Debug, Parser)]
#[command(
    name = "tend",
    version,
    about,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Examples:\n  tend run -- ./train.sh\n  tend run -d --name train --timeout 2h -- ./train.sh\n  tend ps\n  tend logs -f <id>\n  tend wait <id>; echo $?\n  tend kill <id>\n\nSee 'tend <command> --help' for each command's options and examples."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Ledger to use: a SQLite file path, sqlite:// URL, or postgres:// URL (shared by several hosts) [default: $TEND_HOME/tend.db]
    #[arg(
        long,
        global = true,
        env = "TEND_STORE",
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub store: Option<String>,
    /// Print machine-readable JSON (one stable schema; see README)
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Print less: no notes on stderr
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// Print more detail
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a command as an execution (in the foreground, or detached with -d)
    #[command(after_help = "Examples:
  tend run -- ./train.sh                      run in the foreground, exit with its code
  tend run -d --name train -- ./train.sh      detached: prints the id
  tend run -t -- python3                      on a terminal of its own
  tend run --timeout 2h --kill-grace 30s -- ./backup.sh
  tend run --key nightly-report -- ./report.sh   at most one live execution per key
  tend --json run -- make test                JSON on stdout, the command's output on stderr")]
    Run(RunArgs),
    /// Show the executions that are queued or running
    #[command(after_help = "Examples:
  tend ps
  tend --json ps | jq '.[].id'")]
    Ps,
    /// A live terminal monitor: select, filter, detail, logs, kill
    #[command(after_help = "Examples:
  tend top
  NO_COLOR=1 tend top                         without colours (so does TERM=dumb)

Keys: up/down or j/k move, / filter by name, Enter detail with events,
l follow the logs, K kill (asks y/N and shows the grace), Esc back, q quit.
It is updated by events; CPU, RSS and age refresh at most once a second
while something runs, and nothing wakes it while nothing does.")]
    Top,
    /// List recent executions
    #[command(after_help = "Examples:
  tend list
  tend list --status failed,lost --since 1d
  tend list --name 'backup-*' --label team=infra --limit 100")]
    List(ListArgs),
    /// Show every field of one execution and its events
    #[command(after_help = "Examples:
  tend show k3x9          any unique prefix of 4+ characters
  tend --json show k3x9q2ab")]
    Show(ShowArgs),
    /// Print an execution's output
    #[command(after_help = "Examples:
  tend logs k3x9           both streams, in the order written
  tend logs -f k3x9        follow until it ends
  tend logs -n 20 -t       the last 20 lines of the latest execution, with times
  tend logs --stderr --since 10m k3x9")]
    Logs(LogsArgs),
    /// Block until executions end; exit with the execution's code
    #[command(after_help = "Examples:
  tend wait k3x9; echo $?          exits with the execution's code
  tend wait --timeout 10m a1b2 c3d4   exit 75 if they are not all done by then
  tend wait --key nightly-report")]
    Wait(WaitArgs),
    /// Kill executions: SIGTERM to the whole tree, a grace period, then SIGKILL
    #[command(after_help = "Examples:
  tend kill k3x9 --reason \"wrong data\"
  tend kill --label team=ml          lists what it would kill ...
  tend kill --label team=ml --yes    ... and kills with --yes
  tend kill --older-than 12h --yes --grace 1m")]
    Kill(KillArgs),
    /// Reconcile now: mark executions whose supervisor is gone lost, end stray processes
    #[command(after_help = "Examples:
  tend reap --dry-run
  tend reap")]
    Reap(ReapArgs),
    /// Run the daemon: HTTP API, event stream, metrics, and the host's reaper
    #[command(after_help = "Examples:
  tend serve
  tend serve --listen 7763
  TEND_LISTEN=0.0.0.0:7757 TEND_ALLOWED_HOSTS=tend.example.com tend serve   (behind TLS; see docs/serve.md)")]
    Serve(ServeArgs),
    /// Check health: exit 0 healthy, 1 degraded, 2 unhealthy
    #[command(after_help = "Examples:
  tend health && echo ok
  tend --json health")]
    Health,
    /// Tell tend the execution this runs in is alive (for --heartbeat-timeout)
    #[command(after_help = "Examples:
  tend heartbeat                          inside a command run with --heartbeat-timeout
  tend heartbeat --progress \"epoch 3/10\"")]
    Heartbeat(HeartbeatArgs),
    /// Check this host: kernel features, containment tiers, the ledger
    #[command(after_help = "Examples:
  tend doctor")]
    Doctor,
    /// Delete old finished executions, their events and logs (never a live one)
    #[command(
        after_help = "Examples:\n  tend prune --dry-run                what would go, and the bytes it frees\n  tend prune                          older than TEND_RETENTION (7d)\n  tend prune --older-than 1d"
    )]
    Prune(PruneArgs),
    /// Counts, failure rate and run times of recent executions
    #[command(
        after_help = "Examples:\n  tend stats\n  tend stats --since 7d --name 'backup-*'\n  tend --json stats"
    )]
    Stats(StatsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  tend completions bash > ~/.local/share/bash-completion/completions/tend\n  tend completions zsh > ~/.zfunc/_tend\n  tend completions fish > ~/.config/fish/completions/tend.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), for man(1)
    #[command(
        after_help = "Examples:\n  tend man > ~/.local/share/man/man1/tend.1\n  tend man run > ~/.local/share/man/man1/tend-run.1"
    )]
    Man(ManArgs),
    /// Stored jobs: a named command with its run options and a schedule
    #[command(
        subcommand,
        after_help = "Examples:
  tend job add backup --schedule '0 3 * * *' --timeout 2h -- ./backup.sh
  tend job add tick --schedule '@every 30s' --concurrency forbid -- ./tick.sh
  tend job list
  tend job show backup        the definition, the next fires, the last runs
  tend job run backup         now, in the foreground (-d: detached)
  tend list --job backup"
    )]
    Job(JobCmd),
    /// Alerts to webhooks (TEND_ALERT_WEBHOOKS): try them out
    #[command(
        subcommand,
        after_help = "Examples:
  TEND_ALERT_WEBHOOKS=https://hooks.example.com/tend tend alert test
  tend --json alert test

tend serve sends alerts (lost, timed_out, failed, long_running, fire_missed,
health; TEND_ALERTS chooses) from the ledger's outbox; see README."
    )]
    Alert(AlertCmd),
    /// Supervise one execution described on stdin (used by `run -d`)
    #[command(name = tend_supervisor::detach::SUPERVISE_ARG, hide = true)]
    Supervise,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Leave it running under a background supervisor and print its id
    #[arg(short, long)]
    pub detach: bool,
    /// Run it on a terminal of its own (vi, REPLs, colours, progress bars); keys go to it as typed
    #[arg(short, long, conflicts_with = "detach")]
    pub tty: bool,
    #[command(flatten)]
    pub options: RunOptionArgs,
    /// The command and its arguments (after --)
    ///
    /// Everything from the first word that is not a tend option belongs to
    /// the command, its options too. An unknown option before that is a
    /// usage error, never part of the command: `tend run --bogus -- true`
    /// is refused.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The options of one run, shared by `tend run` and `tend job add` (which
/// stores them): declared once, so the two never drift apart.
#[derive(Debug, Args)]
pub struct RunOptionArgs {
    /// Name to show and filter by [default: the program's file name]
    #[arg(long)]
    pub name: Option<String>,
    /// A label, as key=value (repeatable)
    #[arg(long = "label", value_name = "K=V", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Working directory [default: the current one]
    #[arg(long)]
    pub cwd: Option<std::path::PathBuf>,
    /// An environment variable for the command, as KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "K=V", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// End it after this long (e.g. 90s, 5m, 2h); exits 124
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when it is ended [default: 5s, or TEND_KILL_GRACE]
    #[arg(long, value_parser = parse_duration)]
    pub kill_grace: Option<Duration>,
    /// The command must run `tend heartbeat` within each such period, or it is ended
    #[arg(long, value_parser = parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// End it when it prints nothing for this long
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// End it when its processes together use more memory than this (e.g. 512M, 2G): the kernel enforces it where the cgroup memory controller is delegated, else it is sampled every 250 ms (see tend doctor)
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Deduplication key: at most one live execution per key
    #[arg(long)]
    pub key: Option<String>,
    /// When a live execution holds the key: attach to it (wait), skip, fail, or kill it and start (replace) [default: wait]
    #[arg(long, value_enum, requires = "key")]
    pub on_duplicate: Option<OnDuplicate>,
    /// Also stand for a succeeded execution with the key that ended less than this long ago (reuse its result)
    #[arg(long, value_name = "DUR", value_parser = parse_duration, requires = "key")]
    pub reuse_finished: Option<Duration>,
    /// Run it in a fresh private directory (tmp) or in a new git worktree of the repository at --cwd on branch exec-ID (worktree), kept until tend prune
    #[arg(long, value_name = "KIND", value_parser = parse_workspace)]
    pub workspace: Option<tend_model::WorkspaceKind>,
    /// Run it again, up to N times, when it fails, times out or is lost (never when killed); each attempt is an execution of its own
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Wait before the first retry, doubled before each next one, ±10 % jitter [default: 1s]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub retry_backoff: Option<Duration>,
    /// Longest wait between two attempts [default: 5m]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub retry_max_backoff: Option<Duration>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnDuplicate {
    Wait,
    Skip,
    Fail,
    Replace,
}

#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// Send a test alert to every configured webhook and say what each answered (exit 1 if one did not take it)
    Test,
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Store a job: every `run` option, plus a schedule and its policies
    Add(Box<JobAddArgs>),
    /// List the stored jobs with their next fire
    List,
    /// Show a job: its definition, its next fires and its last runs
    Show(JobName),
    /// Run a job now, like `tend run` (its concurrency policy applies)
    Run(JobRunArgs),
    /// Pause a job's schedule (`job run` still runs it)
    Pause(JobName),
    /// Resume a paused job; fires it missed while paused are not owed
    Resume(JobName),
    /// Remove a job; its running executions are left alone unless --kill
    Rm(JobRmArgs),
}

#[derive(Debug, Args)]
pub struct JobName {
    /// The job's name
    #[arg(value_name = "NAME")]
    pub job: String,
}

#[derive(Debug, Args)]
pub struct JobAddArgs {
    /// The job's name: letters, digits, '.', '_', '-'
    #[arg(value_name = "NAME")]
    pub job: String,
    #[command(flatten)]
    pub options: RunOptionArgs,
    /// When it fires: 'min hour day month weekday' (optional leading seconds), @hourly, @daily, @weekly, @monthly, @yearly, or '@every DUR' [default: only on demand]
    #[arg(long, value_name = "SPEC")]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule [default: this host's]
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// While a run is live: start another (allow), skip (forbid), or kill it first (replace) [default: allow]
    #[arg(long, value_name = "POLICY", value_parser = parse_concurrency)]
    pub concurrency: Option<tend_model::Concurrency>,
    /// Fires missed while no daemon ran: run the latest once (latest) or record them (skip) [default: latest]
    #[arg(long, value_name = "POLICY", value_parser = parse_catch_up)]
    pub catch_up: Option<tend_model::CatchUp>,
    /// Redefine the job if it exists (its numbering continues)
    #[arg(long)]
    pub replace: bool,
    /// The command and its arguments (after --)
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// The job's name
    #[arg(value_name = "NAME")]
    pub job: String,
    /// Leave it running under a background supervisor and print its id
    #[arg(short, long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct JobRmArgs {
    /// The job's name
    #[arg(value_name = "NAME")]
    pub job: String,
    /// Also kill its running executions
    #[arg(long)]
    pub kill: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these statuses (repeatable, or comma-separated)
    #[arg(long, value_delimiter = ',', value_parser = parse_status)]
    pub status: Vec<Status>,
    /// Only names matching this glob (e.g. 'backup-*')
    #[arg(long)]
    pub name: Option<String>,
    /// Only executions with this label, as key=value (repeatable: all must match)
    #[arg(long = "label", value_name = "K=V", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Only executions created within this long (e.g. 1h, 7d)
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Only the runs of this stored job
    #[arg(long)]
    pub job: Option<String>,
    /// At most this many
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Execution id or a unique prefix of at least 4 characters
    pub id: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Execution id or a unique prefix [default: the most recent execution]
    pub id: Option<String>,
    /// Keep printing as it writes, until it ends
    #[arg(short, long)]
    pub follow: bool,
    /// Standard output only [default: both streams, in the order written]
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Standard error only
    #[arg(long)]
    pub stderr: bool,
    /// Only the last N lines
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,
    /// Only what was written within this long (e.g. 10m)
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Begin each line with the time it was written
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Execution ids or unique prefixes
    #[arg(required_unless_present = "key", conflicts_with = "key")]
    pub ids: Vec<String>,
    /// Wait for the execution that holds this key
    #[arg(long)]
    pub key: Option<String>,
    /// Give up after this long (exit 75)
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Execution ids or unique prefixes
    pub ids: Vec<String>,
    /// SIGKILL at once, without a grace period
    #[arg(long)]
    pub force: bool,
    /// Time between SIGTERM and SIGKILL [default: the execution's --kill-grace]
    #[arg(long, value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Why, for the audit log
    #[arg(long)]
    pub reason: Option<String>,
    /// Every live execution whose name matches this glob
    #[arg(long)]
    pub name: Option<String>,
    /// Every live execution with this label, as key=value
    #[arg(long = "label", value_name = "K=V", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Every live execution older than this (e.g. 2h)
    #[arg(long, value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Every live execution
    #[arg(long)]
    pub all: bool,
    /// Act on a bulk selection (without it, bulk kills only list their targets)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 127.0.0.1:7757, localhost:7762 or a port [default: 127.0.0.1:7757, or TEND_LISTEN]
    #[arg(long, value_name = "ADDR", value_parser = crate::config::parse_listen)]
    pub listen: Option<std::net::SocketAddr>,
    /// Log format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Replace the daemon that serves this home now (stopped with SIGTERM
    /// once this one is ready to take its place); one that tend started by
    /// itself is always replaced
    #[arg(long)]
    pub replace: bool,
    /// Internal: tend starts this home's agent for a launch on a shared
    /// ledger (it forks away, and a later `tend serve` replaces it)
    #[arg(long, hide = true)]
    pub started_by_tend: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// What it is doing, shown by `tend ps` and `tend show`
    #[arg(long)]
    pub progress: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only executions that ended longer ago than this [default: TEND_RETENTION, 7d]
    #[arg(long, value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// List what would go and how much it frees; delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove worktrees with changes that were never committed
    #[arg(long)]
    pub force: bool,
    /// Also delete exec-ID branches that are not merged into their repository's current branch
    #[arg(long)]
    pub force_branches: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only executions created within this long [default: 1d]
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Only names matching this glob
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command's own page (`tend man run` is tend-run(1)) [default: tend(1)]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Say what would be done, and do nothing
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tend_model::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    tend_model::parse_size(s).map_err(|e| e.to_string())
}

fn parse_workspace(s: &str) -> Result<tend_model::WorkspaceKind, String> {
    s.parse()
}

fn parse_concurrency(s: &str) -> Result<tend_model::Concurrency, String> {
    s.parse()
}

fn parse_catch_up(s: &str) -> Result<tend_model::CatchUp, String> {
    s.parse()
}

fn parse_status(s: &str) -> Result<Status, String> {
    s.parse()
        .map_err(|e: tend_model::UnknownStatus| e.to_string())
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}
