//! `tend serve`.

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::{LogFormat, ServeArgs};

/// Runs the daemon until SIGTERM or SIGINT.
pub fn serve(ctx: &Context, args: &ServeArgs) -> Result<i32> {
    if args.started_by_tend {
        // Nobody's child: not the launching supervisor's (which treats its
        // descendants as its tree), nor anyone's to reap.
        tend_proc::spawn::fork_away().context("cannot start the agent in the background")?;
    }
    init_logging(args.log_format, ctx.global.verbose, ctx.global.quiet);
    let token = tend_server::load_token(&ctx.home)?;
    let c = &ctx.config;
    let config = tend_server::Config {
        home: ctx.home.clone(),
        store: c.store()?,
        exe: std::env::current_exe().context("cannot find the tend executable")?,
        token,
        allowed_hosts: c.daemon.allowed_hosts.clone(),
        limits: tend_server::Limits {
            header_timeout: c.daemon.header_timeout,
            body_timeout: c.daemon.body_timeout,
            max_connections: c.daemon.max_connections,
        },
        run: c.policy()?,
        reconcile_every: c.reconcile_every,
        prune: Some(tend_server::PruneEvery {
            every: c.prune_every,
            older: c.retention,
            keep_last: c.keep_last,
        }),
        long_running_after: c.alert_long_running_after,
        long_running_alert: c.alert_long_running_count,
        alerts: c.alerts.resolve()?,
        lease: c.lease,
        replace: args.replace,
        started_by_tend: args.started_by_tend,
    };
    let addr = args.listen.unwrap_or(c.listen);
    tend_server::serve(addr, config)?;
    Ok(0)
}

fn init_logging(format: LogFormat, verbose: bool, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "debug"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
