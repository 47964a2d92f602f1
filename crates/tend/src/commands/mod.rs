//! One module per subcommand; each takes the parsed arguments and a
//! [`Context`] and returns the process exit code.

pub mod agent;
pub mod alert;
mod dedup;
pub mod health;
pub mod job;
pub mod kill;
pub mod logs;
mod probe;
pub mod prune;
pub mod query;
pub mod reap;
pub mod run;
pub mod serve;
pub mod show;
pub mod stats;
pub mod top;
pub mod wait;

use std::path::Path;

use anyhow::Result;
use tend_ledger::Ledger;
use tend_supervisor::Home;

use crate::cli::Global;
use crate::config::Config;

/// What every command needs: settings, the home, and the ledger.
pub struct Context {
    pub config: Config,
    pub home: Home,
    pub ledger: Box<dyn Ledger>,
    pub global: GlobalOpts,
    /// Why this command cannot write (a read-only home): it then shows the
    /// ledger as recorded instead of reconciling it.
    pub read_only: Option<String>,
}

/// What a command needs of the home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It records something: the home must be writable.
    Write,
    /// It only shows the ledger: a read-only home will do.
    Read,
}

/// The global flags, without clap's types.
#[derive(Debug, Clone, Copy)]
pub struct GlobalOpts {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

impl Context {
    /// Loads the settings, prepares the home and opens the ledger. A
    /// command that only reads still works on a read-only home.
    pub fn open(global: &Global, access: Access) -> Result<Context> {
        let mut config = Config::load()?;
        config.export_lease();
        if let Some(store) = &global.store {
            // `--store=~/x.db` and `TEND_STORE=~/x.db` reach tend unexpanded.
            config.store = Some(
                match store.strip_prefix('~').is_some() && !store.contains("://") {
                    true => crate::config::expand_tilde(store)
                        .map_err(crate::usage)?
                        .to_string_lossy()
                        .into_owned(),
                    false => store.clone(),
                },
            );
        }
        let home = Home::new(config.home.clone());
        let store = config.store()?;
        let exists = store.sqlite_path().is_none_or(Path::exists);
        // Another user's home is refused even for a read: it is never a
        // read-only home to fall back on.
        home.check_owner()?;
        let (ledger, read_only) = match home.ensure() {
            Ok(()) => (tend_ledger::open(&store)?, None),
            // A shared ledger that was never used says nothing about the
            // home: the home's own trouble is the sentence then.
            Err(e) if access == Access::Read && exists => match tend_ledger::open_read_only(&store)
            {
                Ok(l) => (l, Some(e.to_string())),
                Err(_) if store.sqlite_path().is_none() => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot use {} as tend's home (set TEND_HOME to a writable folder)",
                        config.home.display()
                    )))
                }
                Err(le) => return Err(le.into()),
            },
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot use {} as tend's home (set TEND_HOME to a writable folder)",
                    config.home.display()
                )))
            }
        };
        let ctx = Context {
            config,
            home,
            ledger,
            global: GlobalOpts {
                json: global.json,
                quiet: global.quiet,
                verbose: global.verbose,
            },
            read_only,
        };
        ctx.say_if_copied();
        Ok(ctx)
    }

    /// Says once — to the first tend command that notices — that this home
    /// or ledger is a copy and has taken ids of its own.
    fn say_if_copied(&self) {
        if let Some(old) = self.ledger.copied_from() {
            self.note(format_args!(
                "this ledger is a copy of ledger {old}: it now has an id of its own, and the executions that were live in the original are marked lost here; none of their processes was touched"
            ));
        }
        if self.read_only.is_none() {
            if let Ok(tend_supervisor::Agent {
                id,
                copied_from: Some(old),
            }) = self.home.agent()
            {
                self.note(format_args!(
                    "this home is a copy of another (agent {old}); it now has agent id {id} and never acts on the original's processes"
                ));
            }
        }
    }

    /// On a shared (PostgreSQL) ledger, makes the home's notifier listen
    /// too ([`Home::listening`]), so that waits, follows, kills and the
    /// daemon wake for what other hosts commit. Not for a process that
    /// supervises (a foreground run): listening takes a thread.
    pub fn listen_across_hosts(&mut self) -> Result<()> {
        let store = self.config.store()?;
        self.home = self.home.clone().listening(&store);
        Ok(())
    }

    /// Truth on read: reconciles live executions before anything is shown.
    pub fn reconcile(&self) -> Result<Vec<tend_supervisor::Reconciled>> {
        Ok(tend_supervisor::reconcile(&self.ledger, &self.home)?)
    }

    /// Reconciles before showing, but never lets a ledger that cannot be
    /// written now (a read-only home, a full disk) stop a read: it then
    /// says once that what follows is the ledger as recorded.
    pub fn reconcile_for_read(&self) -> Result<()> {
        if let Some(why) = &self.read_only {
            self.note(format_args!(
                "the home is read-only ({why}); showing the ledger as recorded, not reconciled"
            ));
            return Ok(());
        }
        match tend_supervisor::reconcile(&self.ledger, &self.home) {
            Ok(_) => Ok(()),
            Err(tend_supervisor::Error::Ledger(e)) if e.is_transient() => {
                self.note(format_args!(
                    "cannot reconcile now ({e}); showing the ledger as recorded"
                ));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A note for the person at the terminal, unless `-q`; escaped, since
    /// it may quote names and keys.
    pub fn note(&self, msg: impl std::fmt::Display) {
        if !self.global.quiet {
            note!("{}", crate::output::esc(&msg.to_string()));
        }
    }

    /// Resolves an id or prefix to an execution.
    pub fn resolve(&self, id: &str) -> Result<tend_model::Execution> {
        Ok(self.ledger.resolve(id)?)
    }
}

/// `--name GLOB`, refused (exit 2) when it is not a glob, rather than
/// matching nothing.
pub fn name_glob(pattern: &str) -> Result<tend_model::Glob> {
    tend_model::Glob::parse(pattern).map_err(|e| crate::usage(format!("--name: {e}")))
}

/// The name recorded as the actor of what a person does from this shell.
pub fn actor() -> tend_model::Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", rustix::process::getuid().as_raw()));
    tend_model::Actor::User(Some(user))
}

/// `tend completions SHELL`: the completion script, from the same clap
/// definition the CLI parses with, so it never lags behind a flag.
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tend", &mut out);
    crate::print::text(&String::from_utf8_lossy(&out))?;
    Ok(0)
}

/// `tend man [COMMAND]`: the manual page, in roff, from the clap
/// definition — tend(1), or a command's own tend-COMMAND(1), which tend(1)
/// refers to.
pub fn man(command: Option<&str>) -> Result<i32> {
    use clap::CommandFactory;
    let tend = crate::cli::Cli::command();
    let page = match command {
        None => tend,
        Some(name) => {
            let Some(sub) = tend
                .get_subcommands()
                .find(|c| c.get_name() == name && !c.is_hide_set())
            else {
                return Err(crate::usage(format!(
                    "'{name}' is not a tend command; see tend --help"
                )));
            };
            // Named as its page is referred to: tend-run(1).
            sub.clone().display_name(format!("tend-{name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    crate::print::text(&String::from_utf8_lossy(&out))?;
    Ok(0)
}
