//! What both backends store the same way: random ids, the JSON string maps,
//! and a working directory's two columns. Kept here so that a row written by
//! one backend's code reads back the same through the other's.

use std::path::{Path, PathBuf};

/// 64 random bits from the kernel (execution and ledger ids).
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the kernel's random source is always available on Linux");
    u64::from_le_bytes(b)
}

/// A new ledger id: 16 hex digits.
pub(crate) fn random_ledger_id() -> String {
    format!("{:016x}", random_u64())
}

/// A stored JSON object of strings (labels, env); empty if unreadable.
pub(crate) fn json_map(s: &str) -> std::collections::BTreeMap<String, String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// A working directory as its two columns hold it: `cwd` its text (escaped
/// when it is not UTF-8, so that SQL readers see something sensible), and
/// `cwd_bytes` its exact bytes only when that text is not exact.
pub(crate) fn path_columns(p: &Path) -> (String, Option<Vec<u8>>) {
    use std::os::unix::ffi::OsStrExt;
    match p.to_str() {
        Some(s) => (s.to_string(), None),
        None => (
            tend_model::text::escape_path(p).into_owned(),
            Some(p.as_os_str().as_bytes().to_vec()),
        ),
    }
}

/// The working directory back from its two columns.
pub(crate) fn path_from_columns(text: String, bytes: Option<Vec<u8>>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    match bytes {
        Some(b) => PathBuf::from(std::ffi::OsString::from_vec(b)),
        None => PathBuf::from(text),
    }
}
