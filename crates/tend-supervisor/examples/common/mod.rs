//! What the examples share: a throw-away tend home, and a way to launch
//! an execution in it under a background supervisor, as `tend run -d` does.
//!
//! Every example is its own supervisor program: `detach::launch` starts
//! the executable it is given with the one argument
//! [`detach::SUPERVISE_ARG`], and [`be_the_supervisor_if_asked`], the first
//! call in each example's `main`, answers it the way the `tend` binary's
//! hidden `tend __supervise` does. So the examples need nothing but this
//! crate: no `tend` binary, no daemon.

use std::error::Error;

use tend_ledger::{KillRequest, Ledger, Store};
use tend_model::run::{Policy, RunOptions};
use tend_model::{Actor, Execution, ExecutionId};
use tend_supervisor::detach::{self, Answer};
use tend_supervisor::Home;

/// The examples' result: any error ends the example with exit code 1.
pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// When this process was started as a background supervisor (by
/// `detach::launch` in another run of the same example), supervises the
/// execution it is handed on stdin and exits; otherwise returns at once.
pub fn be_the_supervisor_if_asked() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == detach::SUPERVISE_ARG)
    {
        std::process::exit(detach::supervise_from_stdin());
    }
}

/// A tend home in a temporary folder, with its SQLite ledger open. Dropping
/// it ends whatever it still runs (through tend's own kill), then removes
/// the folder.
pub struct Sandbox {
    /// The home: logs, notifications, the agent id.
    pub home: Home,
    /// Where the ledger is (`<home>/tend.db`).
    pub store: Store,
    /// The ledger itself.
    pub ledger: Box<dyn Ledger>,
    // Declared last, so it is removed after the ledger is closed.
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Makes the folder and opens (creating) its ledger.
    pub fn new() -> Result<Sandbox> {
        let dir = tempfile::Builder::new().prefix("tend-example-").tempdir()?;
        let home = Home::new(dir.path());
        // Creates logs/ and notify/ (mode 0700) and checks they are ours.
        home.ensure()?;
        let store = Store::Sqlite(home.default_db());
        let ledger = tend_ledger::open(&store)?;
        Ok(Sandbox {
            home,
            store,
            ledger,
            dir,
        })
    }

    /// Launches `opts` under a background supervisor (this same program,
    /// see [`be_the_supervisor_if_asked`]) and returns its row, `running`.
    /// Returns as soon as the command has started; the supervisor is
    /// nobody's child and would outlive this process.
    pub fn launch(&self, opts: RunOptions) -> Result<Execution> {
        // The one validator every door calls (CLI, API, jobs): defaults
        // filled in, limits checked.
        let policy = Policy {
            store: Some(self.store.to_string()),
            ..Policy::default()
        };
        let spec = opts.resolve(&policy)?;
        let me = std::env::current_exe()?;
        match detach::launch(&me, &self.home, &self.store, &spec)? {
            Answer::Started { id } => Ok(self.ledger.get(&ExecutionId::parse(&id)?)?),
            other => Err(format!("the command did not start: {other:?}").into()),
        }
    }
}

impl Drop for Sandbox {
    /// An example that failed half-way may leave an execution running: it
    /// is killed at once (no grace) and waited for, so that no process of
    /// it is left when the folder goes.
    fn drop(&mut self) {
        let live = self.ledger.live().unwrap_or_default();
        if !live.is_empty() {
            let req = KillRequest {
                actor: Actor::User(None),
                reason: Some("the example is over".into()),
                force: true,
                grace_ms: None,
            };
            if let Err(e) = tend_supervisor::kill(&self.ledger, &self.home, &live, &req) {
                eprintln!("could not end what the example left running: {e}");
            }
        }
        println!("removing {}", self.dir.path().display());
    }
}

/// The command line `argv` as run options, with everything else defaulted.
pub fn command(argv: &[&str]) -> RunOptions {
    RunOptions {
        command: argv.iter().map(|a| a.to_string()).collect(),
        ..RunOptions::default()
    }
}
