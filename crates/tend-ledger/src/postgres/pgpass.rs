//! The password file libpq users keep their passwords in (`~/.pgpass`, or
//! the file `PGPASSFILE` names): `host:port:database:user:password` lines,
//! `*` matching anything, `\:` and `\\` escaped. As with libpq, a file that
//! others may read is ignored. It is how a command that tend started
//! (which never sees the store's password) can still reach the ledger, for
//! `tend heartbeat`, with credentials of its own.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// What a connection is for, to match against the file's lines.
pub(crate) struct Wanted<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password the file gives for `w`, if any.
pub(crate) fn lookup(file: Option<PathBuf>, w: &Wanted<'_>) -> Option<String> {
    let path = file?;
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let port = w.port.to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(fields)
        .find(|f| {
            f.len() == 5
                && matches(&f[0], w.host)
                && matches(&f[1], &port)
                && matches(&f[2], w.database)
                && matches(&f[3], w.user)
        })
        .map(|mut f| f.swap_remove(4))
}

/// `PGPASSFILE`, else `~/.pgpass`.
pub(crate) fn default_file(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))
}

fn matches(field: &str, value: &str) -> bool {
    field == "*" || field == value
}

/// A line's fields, split at unescaped colons and unescaped.
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_by_field_with_wildcards_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:tend:no\n127.0.0.1:*:ledger:tend:pa\\:ss\\\\word\n*:*:*:*:fallback\n",
        )
        .unwrap();
        let w = Wanted {
            host: "127.0.0.1",
            port: 5433,
            database: "ledger",
            user: "tend",
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            lookup(Some(file.clone()), &w),
            None,
            "a file others may read is ignored"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            lookup(Some(file.clone()), &w).as_deref(),
            Some("pa:ss\\word")
        );
        let w = Wanted { database: "x", ..w };
        assert_eq!(lookup(Some(file), &w).as_deref(), Some("fallback"));
    }
}
