//! `--timeout` values: `500ms`, `30s`, `5m`, `1h`, `1.5s`, or a plain number of seconds.

use std::time::Duration;

/// Parses a duration as the workflow format writes them (`30s`, `5m`, `1h`), plus `ms` and
/// plain seconds. The error says what was found and what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad(s))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad(s)),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 365.0 * 86400.0 {
        return Err(format!(
            "invalid duration {s:?}: it must be more than zero and at most a year, e.g. 30s"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn bad(s: &str) -> String {
    format!(
        "invalid duration {s:?}: expected a number with a unit, e.g. 500ms, 30s, 5m or 1h \
         (a plain number is seconds)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_formats_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in ["", "s", "10 parsecs", "-1s", "0s", "1.2.3s", "1e9h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("30s"), "{bad:?}: {e}");
        }
    }
}
