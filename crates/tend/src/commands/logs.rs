//! `tend logs`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::LogsArgs;

/// `tend logs ID [-f] [--stderr]`.
pub fn logs(ctx: &Context, args: &LogsArgs) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let e = ctx.resolve(&args.id)?;
    let path = PathBuf::from(if args.stderr {
        &e.stderr_path
    } else {
        &e.stdout_path
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // The rotated part first, so the output reads in order.
    let mut old = path.clone().into_os_string();
    old.push(".1");
    if let Ok(mut f) = std::fs::File::open(&old) {
        std::io::copy(&mut f, &mut out)?;
    }
    if args.follow {
        tend_supervisor::follow(&ctx.ledger, &ctx.home, &e, &path, &mut out)?;
    } else {
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                std::io::copy(&mut f, &mut out)
                    .with_context(|| format!("cannot read {}", path.display()))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                ctx.note(format_args!(
                    "execution {} has no saved output (its log file is gone)",
                    e.id
                ));
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    out.flush()?;
    Ok(0)
}
