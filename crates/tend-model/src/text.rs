//! Showing text that tend did not write — names, labels, reasons, progress,
//! paths — to a person, without letting it act on their terminal.
//!
//! Anything an execution's author (or a web client of the daemon) chose can
//! hold an escape sequence that recolours the screen, sets the window title
//! or moves the cursor, or a newline that forges a table row. Human output
//! therefore writes such characters the way a Rust string literal would:
//! `\n`, `\r`, `\t`, `\x1b` for the other C0 controls and DEL, `\u{9b}`
//! for C1 controls and for the invisible characters that reorder or break
//! lines (bidirectional overrides and isolates, U+2028/U+2029). Bytes of a
//! path that are not UTF-8 are written `\xNN`. Everything else, a backslash
//! included, is shown as it is, so ordinary text (`C:\dir`, JSON) reads
//! naturally; the price is that a literal `\x1b` typed into a name looks
//! like an escaped ESC — harmless, since it does nothing to the terminal.
//! Text without any of these is returned unchanged, borrowed. JSON output is
//! not escaped here: serde writes it exactly.
//!
//! ```
//! use tend_model::text::{escape, escape_bytes};
//! assert_eq!(escape("evil\x1b[31m\nrow"), r"evil\x1b[31m\nrow");
//! assert_eq!(escape("plain"), "plain");
//! assert_eq!(escape_bytes(b"/tmp/x\xffdir"), r"/tmp/x\xffdir");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

/// Whether `c` must not reach a terminal as it is: a control character, or
/// one that reorders or breaks lines invisibly.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                // Invisible: a name that looks like another.
                | '\u{200b}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
        )
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `s` safe to print to a terminal: controls and line-breaking or
/// reordering characters escaped (see the module docs).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    Cow::Owned(out)
}

/// Like [`escape`], for bytes that may not be UTF-8 (a path): each byte
/// that is not part of a valid UTF-8 sequence is written `\xNN`, so two
/// different paths do not look the same unless one holds a literal `\xNN`.
pub fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(b) {
        return escape(s);
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    Cow::Owned(out)
}

/// A path for a person: [`escape_bytes`] of its bytes.
pub fn escape_path(p: &Path) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(p.as_os_str().as_bytes())
}

/// A path for JSON: the path itself when it is UTF-8 (exact, as JSON is),
/// else its escaped form from [`escape_path`], which is lossless.
pub fn json_path(p: &Path) -> Cow<'_, str> {
    match p.to_str() {
        Some(s) => Cow::Borrowed(s),
        None => escape_path(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_written_as_escapes() {
        assert_eq!(escape("a\x1b]0;title\x07b"), r"a\x1b]0;title\x07b");
        assert_eq!(escape("x\ny\rz\t"), r"x\ny\rz\t");
        assert_eq!(escape("del\x7f nul\0"), r"del\x7f nul\x00");
        assert_eq!(escape("csi\u{9b}31m"), r"csi\u{9b}31m");
        assert_eq!(escape(r"back\slash"), r"back\slash");
    }

    #[test]
    fn reordering_and_line_separators_are_escaped_and_the_rest_kept() {
        assert_eq!(escape("abc\u{202e}fed"), r"abc\u{202e}fed");
        assert_eq!(
            escape("ad\u{200b}min"),
            r"ad\u{200b}min",
            "invisible look-alikes"
        );
        assert_eq!(escape("a\u{2028}b"), r"a\u{2028}b");
        assert_eq!(escape("héllo wörld ✓ 日本"), "héllo wörld ✓ 日本");
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_bytes_differ_from_the_replacement_character() {
        let raw = escape_bytes(b"/tmp/x\xffdir");
        let replacement = escape_bytes("/tmp/x\u{fffd}dir".as_bytes());
        assert_eq!(raw, r"/tmp/x\xffdir");
        assert_eq!(replacement, "/tmp/x\u{fffd}dir");
        assert_eq!(escape_bytes(b"a\n\xc3"), r"a\n\xc3");
    }

    #[test]
    fn json_paths_are_exact_when_they_are_utf8() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(json_path(Path::new("/a\\b\nc")), "/a\\b\nc");
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/x\xff"));
        assert_eq!(json_path(p), r"/x\xff");
    }
}
