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

/// Why a duration could not be read (the text found and what was wrong with it): the shared
/// [`flowloom_core::duration::DurationError`].
pub use flowloom_core::duration::DurationError;

impl std::str::FromStr for DurationStr {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(DurationStr)
    }
}

/// Parses `"30s"`, `"5m"`, `"1h"`, `"250ms"`, `"1.5h"`, `"1h30m"` (also `us`, and spaces
/// between a number and its unit). A duration must be > 0 and at most a year. This is
/// [`flowloom_core::duration::parse_positive`], the rule the mock's scripts, the configuration
/// loader and the command line share.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    flowloom_core::duration::parse_positive(text)
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
