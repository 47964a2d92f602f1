//! Name globs (`tend list --name`, `tend kill --name`), with the syntax of
//! SQLite's `GLOB`, which the ledger uses to filter lists: `*` any run of
//! characters, `?` one character, `[abc]`, `[a-z]` and `[^a-z]` one
//! character of (or not of) a set; a `]` first in a set is literal. Matching
//! is case-sensitive. Parsing first means a malformed pattern — an
//! unclosed `[` — is an error the user sees, instead of a filter that
//! silently matches nothing.
//!
//! ```
//! use tend_model::Glob;
//! let g = Glob::parse("backup-[0-9]*").unwrap();
//! assert!(g.matches("backup-3-daily"));
//! assert!(!g.matches("backup-x"));
//! assert!(Glob::parse("[").is_err());
//! ```

/// A name glob that is known to be well formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(Vec<Token>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A pattern that is not a glob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a valid glob: a '[' is not closed by ']' (write '[[]' for a literal '[')")]
pub struct GlobError(pub String);

impl Glob {
    /// Parses `pattern`, refusing an unclosed `[`.
    pub fn parse(pattern: &str) -> Result<Glob, GlobError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '[' => {
                    let (set, next) =
                        parse_set(&chars, i + 1).ok_or_else(|| GlobError(pattern.to_string()))?;
                    tokens.push(set);
                    i = next;
                    continue;
                }
                c => tokens.push(Token::Char(c)),
            }
            i += 1;
        }
        Ok(Glob(tokens))
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        let p = &self.0;
        // Two cursors, backtracking only to the last `*`: linear in practice
        // and never exponential.
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(Token::Star) => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(t) if one(t, s[si]) => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|t| *t == Token::Star)
    }
}

/// The set starting after a `[` at `start`: the token and the index after
/// its `]`, or `None` when no `]` closes it.
fn parse_set(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Set { negated, ranges }, i + 1));
        }
        first = false;
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((c, hi));
                i += 3;
            }
            _ => {
                ranges.push((c, c));
                i += 1;
            }
        }
    }
}

fn one(t: &Token, c: char) -> bool {
    match t {
        Token::Char(p) => *p == c,
        Token::Any => true,
        Token::Set { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
        Token::Star => unreachable!("stars are handled by the matcher"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::parse(p).unwrap().matches(s)
    }

    #[test]
    fn stars_and_questions_match_like_sqlite_glob() {
        assert!(m("*", ""));
        assert!(m("a*c", "abbbc"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*b*", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("A*", "abc"), "case-sensitive");
        assert!(m("é?", "éß"));
    }

    #[test]
    fn sets_ranges_and_negation() {
        assert!(m("x[0-9]", "x7"));
        assert!(!m("x[0-9]", "xa"));
        assert!(m("x[^0-9]", "xa"));
        assert!(m("[]]", "]"));
        assert!(m("[[]", "["));
        assert!(m("[a-]", "-"));
    }

    #[test]
    fn an_unclosed_bracket_is_an_error() {
        for p in ["[", "a[b", "[^", "[]"] {
            assert_eq!(Glob::parse(p), Err(GlobError(p.to_string())), "{p}");
        }
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let p = "*a".repeat(30);
        assert!(!m(&p, &"a".repeat(29)));
    }
}
