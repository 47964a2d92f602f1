//! One module per subcommand; each takes the parsed arguments and a
//! [`Context`] and returns the process exit code.

pub mod health;
pub mod kill;
pub mod logs;
mod probe;
pub mod query;
pub mod reap;
pub mod run;
pub mod serve;
pub mod wait;

use anyhow::{Context as _, Result};
use tend_ledger::{Ledger, SqliteLedger};
use tend_supervisor::Home;

use crate::cli::Global;
use crate::config::Config;

/// What every command needs: settings, the home, and the ledger.
pub struct Context {
    pub config: Config,
    pub home: Home,
    pub ledger: SqliteLedger,
    pub global: GlobalOpts,
}

/// The global flags, without clap's types.
#[derive(Debug, Clone, Copy)]
pub struct GlobalOpts {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

impl Context {
    /// Loads the settings, prepares the home and opens the ledger.
    pub fn open(global: &Global) -> Result<Context> {
        let mut config = Config::load()?;
        if global.store.is_some() {
            config.store = global.store.clone();
        }
        let home = Home::new(config.home.clone());
        home.ensure().with_context(|| {
            format!(
                "cannot use {} as tend's home (set TEND_HOME to a writable folder)",
                config.home.display()
            )
        })?;
        let path = config.sqlite_path()?;
        let ledger = SqliteLedger::open(&path)?;
        Ok(Context {
            config,
            home,
            ledger,
            global: GlobalOpts {
                json: global.json,
                quiet: global.quiet,
                verbose: global.verbose,
            },
        })
    }

    /// Truth on read: reconciles live executions before anything is shown.
    pub fn reconcile(&self) -> Result<Vec<tend_supervisor::Reconciled>> {
        Ok(tend_supervisor::reconcile(&self.ledger, &self.home)?)
    }

    /// A note for the person at the terminal, unless `-q`.
    pub fn note(&self, msg: impl std::fmt::Display) {
        if !self.global.quiet {
            eprintln!("tend: {msg}");
        }
    }

    /// Resolves an id or prefix to an execution.
    pub fn resolve(&self, id: &str) -> Result<tend_model::Execution> {
        Ok(self.ledger.resolve(id)?)
    }
}

/// The name recorded as the actor of what a person does from this shell.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", rustix::process::getuid().as_raw()));
    format!("user:{user}")
}
