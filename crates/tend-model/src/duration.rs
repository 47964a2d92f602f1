use std::time::Duration;

/// A duration that is not written like `500ms`, `1.5s`, `90s`, `5m`, `2h` or `7d`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a duration: write a number and a unit, like 500ms, 1.5s, 90s, 5m, 2h or 7d")]
pub struct DurationError(pub String);

/// Parses a duration as operators write it: a number and a unit (`ms`, `s`,
/// `m`, `h`, `d`), several of them concatenated (`1h30m`). A number may have
/// a decimal part (`1.5s`, `0.25h`), so everything [`format_duration`]
/// writes is read back (issue 9); what is finer than a nanosecond is
/// dropped. A bare `0` means zero; any other bare number is refused rather
/// than guessed.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let (whole, fraction, after) = split_number(rest).ok_or_else(err)?;
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let unit_ns: u128 = match &after[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(err()),
        };
        rest = &after[unit_len..];
        let part = whole
            .checked_mul(unit_ns)
            .and_then(|ns| ns.checked_add(fraction_of(fraction, unit_ns)))
            .ok_or_else(err)?;
        total_ns = total_ns.checked_add(part).ok_or_else(err)?;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| err())?;
    Ok(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

/// Splits `12.5s…` into its whole part (12), the digits of its decimal
/// part (`"5"`, maybe empty) and what follows. `None` unless it starts with
/// a digit, and unless a `.` has digits on both sides.
fn split_number(s: &str) -> Option<(u128, &str, &str)> {
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(s);
    if n == 0 {
        return None;
    }
    let whole = s[..n].parse().ok()?;
    let Some(after_dot) = s[n..].strip_prefix('.') else {
        return Some((whole, "", &s[n..]));
    };
    let f = digits(after_dot);
    if f == 0 {
        return None;
    }
    Some((whole, &after_dot[..f], &after_dot[f..]))
}

/// `0.fraction` of a unit, in nanoseconds, rounded down. Digits past the
/// 18th are below a nanosecond even for days, so they are ignored (and the
/// arithmetic stays in range).
fn fraction_of(fraction: &str, unit_ns: u128) -> u128 {
    let kept = &fraction[..fraction.len().min(18)];
    let value: u128 = kept.parse().unwrap_or(0);
    value * unit_ns / 10u128.pow(kept.len() as u32)
}

/// Writes a duration the way [`parse_duration`] reads it, cut down to the
/// largest two units that matter (`1h05m`, `42s`, `1.5s`, `350ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        // Tenths cut down like every other unit here, so 9.96s is "9.9s",
        // never a "10.0s" that reads back as another format.
        0..=9 => format!("{s}.{}s", (ms % 1000) / 100),
        10..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A size that is not written like `512K`, `64M` or `2G`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a size: write a number of bytes, or a number and K, M or G, like 512M or 2G")]
pub struct SizeError(pub String);

/// Parses a size in bytes: a number with an optional `K`, `M`, `G` or `T`
/// suffix (powers of 1024; a trailing `B`/`iB` is accepted).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let err = || SizeError(text.to_string());
    let s = text.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(err());
    }
    let n: u64 = s[..digits].parse().map_err(|_| err())?;
    let mult: u64 = match &s[digits..] {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        for bad in ["", "M", "1.5G", "5X", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25h"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1.5m30s"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("2.0005ms"),
            Ok(Duration::from_nanos(2_000_500))
        );
        assert_eq!(
            parse_duration("0.0000000000000000000001d"),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn refuses_what_it_would_have_to_guess() {
        for bad in [
            "",
            "5",
            "5x",
            "m",
            "-5s",
            "1.5",
            ".5s",
            "1.s",
            "1..5s",
            "1.5.5s",
            "5 s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_readably() {
        assert_eq!(format_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(9960)), "9.9s");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(3900)), "1h05m");
        assert_eq!(format_duration(Duration::from_secs(90_000)), "1d01h");
    }

    /// Every millisecond count in `range` and a spread of values up to a
    /// century: what `format_duration` writes, `parse_duration` reads back,
    /// no more than one shown unit below the original, formatting the same.
    #[test]
    fn what_is_formatted_parses_back() {
        let mut values: Vec<u64> = (0..20_000).collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            // xorshift: a fixed, reproducible spread over 0..100 years.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % (100 * 365 * 86_400_000));
        }
        values.extend((0..40).map(|p| 1u64 << p));
        for ms in values {
            let d = Duration::from_millis(ms);
            let shown = format_duration(d);
            let back = parse_duration(&shown)
                .unwrap_or_else(|e| panic!("{ms} ms is shown as {shown:?}, refused: {e}"));
            let step = match d.as_secs() {
                0 => Duration::from_millis(1),
                1..=9 => Duration::from_millis(100),
                10..=3599 => Duration::from_secs(1),
                3600..=86_399 => Duration::from_secs(60),
                _ => Duration::from_secs(3600),
            };
            assert!(
                back <= d && d - back < step,
                "{ms} ms: {shown:?} -> {back:?}"
            );
            assert_eq!(format_duration(back), shown, "{ms} ms");
        }
    }
}
