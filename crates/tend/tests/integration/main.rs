//! Integration tests: the real `tend` binary, a real SQLite ledger in a
//! temporary `TEND_HOME`, and real process trees. One test binary, one
//! module per feature; `support` holds the fixture.
//!
//! Every test cleans up what it started: `TestEnv`'s `Drop` ends every
//! process carrying its ledger's marker and every live supervisor, by
//! verified pidfd — never by name.

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
// Supervisors SIGKILLed at every commit boundary and at random.
mod crash;
// The daemon and its HTTP API, driven by a real HTTP client.
mod serve;
// The daemon under attack: no web page drives it, abuse is bounded.
mod serve_hardening;
// Heartbeats, idle output, memory limits, Ctrl-C.
mod limits;
