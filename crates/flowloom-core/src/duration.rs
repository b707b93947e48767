//! Durations written as text (`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`), read the same
//! way by the workflow format, the mock provider's scripts, the configuration loader and the
//! command line.
//!
//! The accepted forms: one or more `<number><unit>` parts, summed. The number is digits with
//! an optional decimal part (`30`, `1.5`); the unit is `us` (or `µs`), `ms`, `s`, `m` or `h`,
//! in any letter case, and may be separated from its number by spaces (`"30 s"`). Negative
//! numbers, exponents and bare numbers without a unit are refused, as is anything over a
//! year (almost surely a typo).
//!
//! ```
//! use std::time::Duration;
//! use flowloom_core::duration;
//! assert_eq!(duration::parse("1m30s").unwrap(), Duration::from_secs(90));
//! assert_eq!(duration::parse("0s").unwrap(), Duration::ZERO);
//! let err = duration::parse_positive("5 minutes").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "invalid duration `5 minutes`: the unit `minutes` is not one of us, ms, s, m, h; \
//!      write a number followed by a unit (us, ms, s, m, h), e.g. \"30s\", \"5m\", \"1h\", \"500ms\", \"1m30s\""
//! );
//! ```

use std::time::Duration;

/// The longest duration accepted: 365 days.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a duration could not be read: the text found and what was wrong with it. The message
/// also lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{found}`: {reason}; write a number followed by a unit (us, ms, s, m, h), e.g. \"30s\", \"5m\", \"1h\", \"500ms\", \"1m30s\""
)]
pub struct DurationError {
    /// The text found.
    pub found: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Parses a duration in the forms the module lists; zero (`"0s"`) is allowed.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = |reason: String| DurationError {
        found: text.to_owned(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty".into()));
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(err("expected a number".into()));
        }
        let well_formed = match num.split_once('.') {
            None => true,
            Some((i, f)) => !i.is_empty() && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()),
        };
        let number: f64 = match num.parse() {
            Ok(n) if well_formed => n,
            _ => return Err(err(format!("the number `{num}` is not valid"))),
        };
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let factor = match unit.to_lowercase().as_str() {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(err(format!("the unit is missing after `{num}`"))),
            _ => {
                return Err(err(format!(
                    "the unit `{unit}` is not one of us, ms, s, m, h"
                )));
            }
        };
        total += number * factor;
        rest = tail.trim_start();
    }
    if !total.is_finite() || total > MAX.as_secs_f64() {
        return Err(err("it is longer than a year".into()));
    }
    Duration::try_from_secs_f64(total).map_err(|_| err("it is longer than a year".into()))
}

/// Like [`parse`], but zero is refused (timeouts, intervals).
pub fn parse_positive(text: &str) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(DurationError {
            found: text.to_owned(),
            reason: "it must be longer than zero".into(),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_form() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            (" 30 s ", Duration::from_secs(30)),
            ("1m 30s", Duration::from_secs(90)),
            ("30S", Duration::from_secs(30)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn refuses_bad_text_naming_the_value_and_the_forms() {
        for bad in [
            "",
            "30",
            "s",
            "ms",
            "5 minutes",
            "3d",
            "-1s",
            "1e9h",
            "1.s",
            ".5s",
            "1..2s",
            "1 parsec",
            "99999999999999999999999h",
            "400d",
            "9000h",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.found, bad);
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
            assert!(
                msg.contains("e.g. \"30s\", \"5m\", \"1h\", \"500ms\""),
                "{msg}"
            );
        }
    }

    #[test]
    fn reasons_say_what_was_wrong() {
        assert_eq!(
            parse("30").unwrap_err().reason,
            "the unit is missing after `30`"
        );
        assert_eq!(
            parse("3d").unwrap_err().reason,
            "the unit `d` is not one of us, ms, s, m, h"
        );
        assert_eq!(
            parse("9000h").unwrap_err().reason,
            "it is longer than a year"
        );
    }

    #[test]
    fn positive_refuses_zero_only() {
        assert_eq!(
            parse_positive("0s").unwrap_err().reason,
            "it must be longer than zero"
        );
        assert_eq!(parse_positive("1ms").unwrap(), Duration::from_millis(1));
    }
}
