//! Durations as the format writes them: `"30s"`, `"5m"`, `"1h"`, also `"500ms"` and
//! compounds such as `"1m30s"`.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as text (`"30s"`, `"5m"`, `"1h"`, `"250ms"`, `"1h30m"`).
///
/// ```
/// use flowloom_engine::yaml::DurationStr;
/// let d: DurationStr = "1m30s".parse().unwrap();
/// assert_eq!(d.as_duration().as_secs(), 90);
/// assert!("5 minutes".parse::<DurationStr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationStr(pub Duration);

impl DurationStr {
    /// The duration.
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{found}`: {reason}; write a number followed by a unit (ms, s, m, h), e.g. \"30s\", \"5m\", \"1h\""
)]
pub struct DurationError {
    /// The text found.
    pub found: String,
    /// What was wrong with it.
    pub reason: String,
}

impl std::str::FromStr for DurationStr {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(DurationStr)
    }
}

/// Parses `"30s"`, `"5m"`, `"1h"`, `"250ms"`, `"1.5h"`, `"1h30m"`. A duration must be > 0.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        found: text.to_owned(),
        reason: reason.to_owned(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(err("expected a number"));
        }
        let number: f64 = s[start..i]
            .parse()
            .map_err(|_| err("the number is not valid"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor = match &s[ustart..i] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(err("the unit is missing")),
            _ => return Err(err("the unit is not one of ms, s, m, h")),
        };
        total += number * factor;
    }
    if !(total.is_finite()) || total <= 0.0 {
        return Err(err("it must be longer than zero"));
    }
    if total > 365.0 * 24.0 * 3600.0 {
        return Err(err("it is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

impl fmt::Display for DurationStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for DurationStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or \"1h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationStr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for DurationStr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: a number followed by a unit (ms, s, m, h), e.g. \"30s\", \"5m\", \"1h\", \"1m30s\".",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn rejects_bad_text_with_a_fix() {
        for bad in ["", "30", "s", "5 minutes", "0s", "3d", "-1s", "1e9h"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("e.g. \"30s\""), "{bad}: {e}");
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["30s", "5m", "1h", "250ms"] {
            assert_eq!(s.parse::<DurationStr>().unwrap().to_string(), s);
        }
    }
}
