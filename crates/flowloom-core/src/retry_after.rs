//! HTTP `Retry-After` values, read the same way by every layer and provider.
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use flowloom_core::retry_after;
//! let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
//! assert_eq!(retry_after::parse("2", now), Some(Duration::from_secs(2)));
//! assert_eq!(retry_after::parse("1.5", now), Some(Duration::from_millis(1500)));
//! assert_eq!(retry_after::parse("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
//! assert_eq!(retry_after::parse("soon", now), None);
//! ```

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value: a number of seconds or an HTTP date, the latter measured
/// from `now` (a date in the past gives zero). Surrounding whitespace is ignored.
///
/// Seconds are ASCII digits with an optional decimal part (`"2"`, `"1.5"`; the decimal part
/// is an extension that some providers send). Signs, exponents, `inf`/`NaN` and anything
/// else give `None`: RFC 9110 defines `delay-seconds` as digits only, so a value such as
/// `"-3"` or `"1e3"` is malformed rather than a wait to honour.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Some(secs) = parse_seconds(v) {
        return secs;
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Some(result)` when `v` has the shape of a number of seconds, `None` when it does not
/// (then it may be a date).
fn parse_seconds(v: &str) -> Option<Option<Duration>> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    Some(match frac {
        None => int.parse::<u64>().ok().map(Duration::from_secs),
        Some(_) => v
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_445_412_470)
    }

    #[test]
    fn seconds_integer_and_decimal() {
        assert_eq!(parse("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(parse("1.5", now()), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn http_dates_from_now_and_past_is_zero() {
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT", now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn malformed_values_are_none() {
        for bad in [
            "",
            "  ",
            "-3",
            "+3",
            "1e3",
            "NaN",
            "inf",
            "1.",
            ".5",
            "1..2",
            "1.2.3",
            "soon",
            "99999999999999999999999",
        ] {
            assert_eq!(parse(bad, now()), None, "{bad:?}");
        }
    }
}
