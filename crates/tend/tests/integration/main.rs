//! Integration tests: the real `tend` binary, a real SQLite ledger in a
//! temporary `TEND_HOME`, and real process trees. One test binary, one
//! module per feature; `support` holds the fixture.
//!
//! Every test cleans up what it started: `TestEnv`'s `Drop` ends every
//! process carrying its ledger's marker and every live supervisor, by
//! verified pidfd — never by name.

// Only tend-proc may use `unsafe` (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

mod support;

// The core lifecycle of `tend run` in the foreground.
mod run;
// Detached runs, waiting, and following logs.
mod detach;
// Keys and concurrency on one ledger.
mod ledger;
// Truth on read: dead supervisors become `lost`.
mod lost;
// JSON output shapes.
mod json;
// Bad input: one sentence, the right exit code, nothing half-written.
mod bad_input;
// Escapers, kill escalation, stragglers: process control per tier.
mod process;
// A recycled PID is never signalled.
mod pid_reuse;
// A copied home takes ids of its own and leaves the original alone.
mod copies;
// Supervisors SIGKILLed at every commit boundary and at random.
mod crash;
// The daemon and its HTTP API, driven by a real HTTP client.
mod serve;
// Agent leases and fencing on a shared (PostgreSQL) ledger.
mod shared_leases;
// Foreground output: exact bytes, back-pressure, closed readers, durable logs.
mod output;
// The ledger under pressure: locks, full disks, read-only homes, durability.
mod pressure;
// Kills are certain whatever state the supervisor is in.
mod unkillable;
// The daemon under attack: no web page drives it, abuse is bounded.
mod serve_hardening;
// Heartbeats, idle output, memory limits, Ctrl-C.
mod limits;
// A closed stdout: exit 141, never a panic.
mod pipes;
// Hostile names, labels, reasons, progress and paths.
mod hostile;
// A home is its owner's: other users' homes and tokens, hostile small files.
mod home_owner;
// Configuration: paths, `~`, the file and its errors.
mod config;
// What ps, list and show say about executions.
mod views;

// Stored jobs: add, list, show, run, numbering, refusals, the scheduler.
mod jobs;
// Retries: attempts, backoff, the chain's id, pending attempts.
mod retries;
// Workspaces: tmp directories and git worktrees, and their pruning.
mod workspaces;
// The terminal monitor, driven through tmux.
mod top;
// Alerts to a real webhook receiver on loopback: signed, retried, given up.
mod alerts;
// Two homes on one PostgreSQL ledger (issue 12).
mod shared;
// Wake-ups and kills across hosts: LISTEN/NOTIFY, a kill carried out by
// the owning agent's daemon, the sweep of requests it missed.
mod shared_wakeups;
