//! Durations as the configuration writes them: whole numbers with a unit — `ms`, `s`, `m`, `h`
//! or `d` — largest unit first, optionally chained (`1m30s`). Nothing else is accepted: no
//! fractions (`1.5s` is `1500ms`), no spelled-out units (`30sec` is `30s`), no bare numbers, so
//! a value in a file means exactly one thing and reads the same to every operator. The
//! configuration and the policy (`break_glass.max_duration`) share it, so it is its own module.

use std::time::Duration;

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `text`; the error says what to write instead.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let general = || format!("{text:?} is not a duration like 30s, 1500ms or 1m30s");
    let too_long = || format!("{text:?} is too long a duration");
    if text.contains(char::is_whitespace) {
        return Err(format!("{}: no spaces (write 1m30s)", general()));
    }
    if text.contains('.') {
        return Err(format!(
            "{}: fractions are not accepted (write 1500ms, not 1.5s)",
            general()
        ));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    // Each unit at most once, largest first: `30s1m` and `1m1m` are refused.
    let mut smallest_so_far = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let letters = rest[digits..].len()
            - rest[digits..]
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (number, unit) = (&rest[..digits], &rest[digits..digits + letters]);
        let Some(rank) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(match (number.is_empty(), unit.is_empty()) {
                (true, _) => general(),
                (false, true) => {
                    format!("{}: every number needs a unit (ms, s, m, h, d)", general())
                }
                (false, false) => format!(
                    "{}: the units are ms, s, m, h and d (write 30s, not 30sec)",
                    general()
                ),
            });
        };
        if number.is_empty() {
            return Err(general());
        }
        let number: u64 = number.parse().map_err(|_| too_long())?;
        if smallest_so_far.is_some_and(|previous| rank <= previous) {
            return Err(format!(
                "{}: write each unit once, largest first",
                general()
            ));
        }
        smallest_so_far = Some(rank);
        millis = number
            .checked_mul(UNITS[rank].1)
            .and_then(|part| millis.checked_add(part))
            .ok_or_else(too_long)?;
        rest = &rest[digits + letters..];
    }
    if text.is_empty() {
        return Err(general());
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(milliseconds)` or a piece of the error.
    #[track_caller]
    fn check(text: &str, expected: Result<u64, &str>) {
        let actual = parse(text);
        match (&actual, expected) {
            (Ok(parsed), Ok(millis)) => {
                assert_eq!(parsed.as_millis(), u128::from(millis), "{text}")
            }
            (Err(message), Err(piece)) => assert!(message.contains(piece), "{text}: {message}"),
            _ => panic!("{text}: {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn whole_numbers_with_a_unit() {
        check("30s", Ok(30_000));
        check("1500ms", Ok(1500));
        check("15m", Ok(900_000));
        check("1h", Ok(3_600_000));
        check("2d", Ok(172_800_000));
        check("1m30s", Ok(90_000));
        check("1h0m5s250ms", Ok(3_605_250));
        check("0s", Ok(0));
        check("007s", Ok(7000));
    }

    #[test]
    fn everything_else_is_refused_with_what_to_write() {
        check("1.5s", Err("write 1500ms, not 1.5s"));
        check("30sec", Err("write 30s, not 30sec"));
        check("30 s", Err("no spaces"));
        check("1m 30s", Err("no spaces"));
        check("30", Err("every number needs a unit"));
        check("1m30", Err("every number needs a unit"));
        check("30S", Err("write 30s, not 30sec"));
        check("30s1m", Err("largest first"));
        check("1m1m", Err("largest first"));
        check("", Err("not a duration"));
        check("s", Err("not a duration"));
        check("-5s", Err("not a duration"));
        check("soon", Err("not a duration"));
        check("99999999999999999999d", Err("too long"));
        check("5minutes", Err("write 30s, not 30sec"));
        check("999999999999999d", Err("too long"));
    }
}
