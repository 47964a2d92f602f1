//! `tend logs`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::LogsArgs;
use crate::print::Stdout;

/// `tend logs ID [-f] [--stderr]`. A reader that goes away (`| head`) ends
/// it quietly with exit 141, like `cat` killed by SIGPIPE.
pub fn logs(ctx: &Context, args: &LogsArgs) -> Result<i32> {
    ctx.reconcile_for_read()?;
    let e = ctx.resolve(&args.id)?;
    let path = PathBuf::from(if args.stderr {
        &e.stderr_path
    } else {
        &e.stdout_path
    });
    let mut out = Stdout::lock();
    // The rotated part first, so the output reads in order.
    let mut old = path.clone().into_os_string();
    old.push(".1");
    if let Ok(mut f) = std::fs::File::open(&old) {
        let r = std::io::copy(&mut f, &mut out);
        out.check(r)?;
    }
    if args.follow {
        let r = tend_supervisor::follow(&ctx.ledger, &ctx.home, &e, &path, &mut out);
        out.check(r)?;
    } else {
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                let r = std::io::copy(&mut f, &mut out)
                    .with_context(|| format!("cannot read {}", path.display()));
                out.check(r)?;
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
    let r = out.flush();
    out.check(r)?;
    Ok(0)
}
