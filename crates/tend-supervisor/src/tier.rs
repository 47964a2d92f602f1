//! Choosing an execution's containment tier.

use std::path::{Path, PathBuf};

use tend_model::Containment;
use tend_proc::cgroup;

use crate::Error;

/// How an execution's process tree is held.
#[derive(Debug, Clone)]
pub enum Tier {
    /// A cgroup v2 of its own under this parent; ended with `cgroup.kill`.
    Cgroup(PathBuf),
    /// A PID namespace of its own under a tiny init (opt-in: the command
    /// sees other PIDs); the namespace's end takes every process with it.
    Pidns,
    /// Own session, subreaper supervisor, descendant walk and marker scan.
    Session,
}

impl Tier {
    /// What is recorded on the row.
    pub fn kind(&self) -> Containment {
        match self {
            Tier::Cgroup(_) => Containment::Cgroup,
            Tier::Pidns => Containment::Pidns,
            Tier::Session => Containment::Session,
        }
    }

    /// The parent folder of execution cgroups, in the cgroup tier.
    pub fn cgroup_parent(&self) -> Option<&Path> {
        match self {
            Tier::Cgroup(p) => Some(p),
            Tier::Pidns | Tier::Session => None,
        }
    }
}

/// What the host offers, for `tend doctor`: each tier with `Ok` or why not.
pub fn offered(ledger: &str) -> Vec<(Containment, Result<String, String>)> {
    vec![
        (
            Containment::Cgroup,
            cgroup::ledger_parent(ledger)
                .map(|p| {
                    // Only a probe: leave no empty folder behind.
                    let _ = std::fs::remove_dir(&p);
                    format!("cgroup v2 at {}", p.display())
                })
                .map_err(|e| e.0),
        ),
        (
            Containment::Pidns,
            tend_proc::pidns::available().map(|_| {
                "a PID namespace per execution (opt-in: TEND_CONTAINMENT=pidns)".to_string()
            }),
        ),
        (
            Containment::Session,
            Ok("own session, child subreaper, PDEATHSIG, marker scan".into()),
        ),
    ]
}

/// The best tier available, or the one `forced` names (an error if this
/// host cannot offer it).
pub fn choose(ledger: &str, forced: Option<Containment>) -> Result<Tier, Error> {
    match forced {
        None => Ok(cgroup::ledger_parent(ledger)
            .map(Tier::Cgroup)
            .unwrap_or(Tier::Session)),
        Some(Containment::Session) => Ok(Tier::Session),
        Some(Containment::Cgroup) => cgroup::ledger_parent(ledger)
            .map(Tier::Cgroup)
            .map_err(|e| Error::Unavailable {
                tier: Containment::Cgroup.as_str().into(),
                why: e.0,
            }),
        Some(Containment::Pidns) => {
            tend_proc::pidns::available()
                .map(|_| Tier::Pidns)
                .map_err(|why| Error::Unavailable {
                    tier: Containment::Pidns.as_str().into(),
                    why,
                })
        }
    }
}
