//! Name globs in PostgreSQL. The SQLite backend filters names with
//! SQLite's `GLOB`, which PostgreSQL lacks: the same pattern becomes an
//! anchored regular expression, passed as a parameter and matched with
//! `~`, every character that is not a letter or digit escaped, so what a
//! user types is matched as SQLite's `GLOB` matches it (`*`, `?`, `[a-z]`,
//! `[^a-z]`, a `]` first in a set literal, case-sensitive) and nothing in
//! it is ever read as SQL or as regular-expression syntax.

/// The regular expression for `glob`, or `None` for a pattern with an
/// unclosed `[`, which (as in SQLite) matches nothing.
pub(crate) fn to_regex(glob: &str) -> Option<String> {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let (set, next) = set(&chars, i + 1)?;
                out.push_str(&set);
                i = next;
                continue;
            }
            c => literal(&mut out, c),
        }
        i += 1;
    }
    out.push('$');
    Some(out)
}

/// A character as itself: letters and digits as they are (a backslash
/// before them would make an escape such as `\d`), everything else behind
/// a backslash, which PostgreSQL's regular expressions read as the
/// character itself, inside a bracket expression too.
fn literal(out: &mut String, c: char) {
    if !c.is_alphanumeric() {
        out.push('\\');
    }
    out.push(c);
}

/// The set that starts after the `[` at `start - 1`, as a bracket
/// expression, and the index after its `]`.
fn set(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut i = start;
    let mut out = String::from("[");
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let first = i;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && i > first {
            out.push(']');
            return Some((out, i + 1));
        }
        literal(&mut out, c);
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|n| *n != ']') {
            out.push('-');
            literal(&mut out, chars[i + 2]);
            i += 3;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_regex;

    #[test]
    fn globs_become_anchored_escaped_expressions() {
        assert_eq!(to_regex("j*").as_deref(), Some("^j.*$"));
        assert_eq!(to_regex("a?c").as_deref(), Some("^a.c$"));
        assert_eq!(to_regex("b-[0-9]*").as_deref(), Some("^b\\-[0-9].*$"));
        assert_eq!(to_regex("[^a-z]").as_deref(), Some("^[^a-z]$"));
        assert_eq!(to_regex("[]x]").as_deref(), Some("^[\\]x]$"));
        assert_eq!(to_regex("x'; DROP").as_deref(), Some("^x\\'\\;\\ DROP$"));
        assert_eq!(to_regex("["), None);
        assert_eq!(to_regex("a[b"), None);
    }
}
