//! Agent leases on a shared ledger: what an agent's renewal sends and gets
//! back, the rows peers read, and what a reaper's claim on an expired agent
//! came to. On one host with SQLite none of this is written: liveness comes
//! from the kernel there, so the [`crate::Ledger`] methods that take these
//! do nothing.

use tend_model::Execution;

/// The agent a lease is for, and where it can be reached: peers read the
/// address to ask the agent for what only its host has (logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The agent's id (its home's `agent.json`).
    pub agent_id: String,
    /// The host it runs on, as executions record it.
    pub host: String,
    /// Its API's address (`ip:port`), when it serves one.
    pub api: Option<String>,
}

/// What one renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The lease's epoch: it grows whenever the lease is taken anew.
    pub epoch: i64,
    /// Taken anew by this renewal: the first time, or after it had expired
    /// (the executions of the epoch before may have been judged `lost`).
    pub fresh: bool,
    /// Renewals ever written for this agent (one per interval).
    pub renewals: i64,
}

/// One agent's lease as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentLease {
    /// The agent.
    pub agent_id: String,
    /// Its host.
    pub host: String,
    /// Its published API address, if any.
    pub api: Option<String>,
    /// The current epoch.
    pub epoch: i64,
    /// The TTL the agent renews for (ms), by which peers judge it.
    pub ttl_ms: i64,
    /// Renewals written so far.
    pub renewals: i64,
    /// Whether the lease has lapsed, by the database's clock.
    pub expired: bool,
    /// The epoch whose executions a reaper marked `lost`, and which agent's
    /// reaper that was.
    pub claimed: Option<(i64, String)>,
}

/// What a reaper's claim on one expired agent came to.
#[derive(Clone, Debug)]
pub enum ExpiredClaim {
    /// This reaper made the verdict: these executions are `lost` now.
    Claimed {
        /// The expired agent.
        agent_id: String,
        /// Its host.
        host: String,
        /// The epoch that expired.
        epoch: i64,
        /// The rows as they are after the verdict.
        lost: Vec<Execution>,
    },
    /// Another reaper was claiming it, or had claimed it already (or the
    /// agent renewed meanwhile): nothing was written.
    AlreadyClaimed {
        /// The expired agent.
        agent_id: String,
        /// The epoch seen expired.
        epoch: i64,
        /// The reaper's agent that holds the claim, when it is known.
        by: Option<String>,
    },
}

/// The reason a `lost` verdict by lease gives.
pub fn expired_reason(agent_id: &str, host: &str) -> String {
    format!("agent {agent_id} ({host}) lease expired")
}
