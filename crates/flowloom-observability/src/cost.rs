//! Cost: a [`PriceTable`] in YAML (USD per million input, output and cached-input tokens per
//! model) and exact money arithmetic ([`Money`], integer pico-dollars).
//!
//! A default table for common OpenAI models is committed at `fixtures/prices/openai.yaml` and
//! embedded here ([`PriceTable::openai_default`]). Its `as_of` date says when the prices were
//! taken: prices change, so check the provider's pricing page and load your own table with
//! [`PriceTable::from_yaml`] when it matters.
//!
//! A model that is not in the table is *unpriced*: it is reported as such
//! ([`Cost::Unpriced`], [`CostReport::unpriced_models`]), never as $0.
//!
//! ```
//! use flowloom_observability::cost::{Cost, PriceTable};
//! let table = PriceTable::openai_default();
//! // Dated snapshots are priced as their base model.
//! let cost = table.cost_of("gpt-4o-mini-2024-07-18", 1_000_000, 0, 1_000_000);
//! let Cost::Priced(m) = cost else { panic!() };
//! assert_eq!(m.to_string(), "$0.75"); // 0.15 input + 0.60 output
//! assert!(matches!(table.cost_of("my-local-llama", 10, 0, 10), Cost::Unpriced { .. }));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default OpenAI price table's YAML, as committed in `fixtures/prices/openai.yaml`.
pub const OPENAI_PRICES_YAML: &str = include_str!("../../../fixtures/prices/openai.yaml");

/// Pico-dollars (10⁻¹² USD) in one dollar.
const PICO_PER_USD: u128 = 1_000_000_000_000;
/// Decimal places a price per million tokens may have and stay exact in pico-dollars per token.
pub const MAX_PRICE_DECIMALS: usize = 6;

/// An amount of US dollars, exact: an integer number of pico-dollars (10⁻¹² USD).
///
/// Sums of any number of calls are exact; `Money`'s `Display` prints the exact decimal.
///
/// ```
/// use flowloom_observability::cost::Money;
/// let m: Money = "0.15".parse().unwrap();
/// assert_eq!(m + m, "0.30".parse().unwrap());
/// assert_eq!((m + m).to_string(), "$0.30");
/// assert!("-1".parse::<Money>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(u128);

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);

    /// From pico-dollars (10⁻¹² USD).
    pub const fn from_picos(picos: u128) -> Self {
        Money(picos)
    }
    /// From micro-dollars (10⁻⁶ USD).
    pub const fn from_micros(micros: u64) -> Self {
        Money(micros as u128 * 1_000_000)
    }
    /// From whole cents.
    pub const fn from_cents(cents: u64) -> Self {
        Money(cents as u128 * 10_000_000_000)
    }
    /// The amount in pico-dollars.
    pub const fn picos(self) -> u128 {
        self.0
    }
    /// The amount in micro-dollars, rounded down.
    pub const fn micros(self) -> u128 {
        self.0 / 1_000_000
    }
    /// The amount as an `f64` of dollars, for display and metrics only (inexact).
    pub fn as_usd_f64(self) -> f64 {
        self.0 as f64 / PICO_PER_USD as f64
    }
    /// Adds, saturating at the largest amount.
    #[must_use]
    pub const fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }
    /// Subtracts, stopping at zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        self.saturating_add(other)
    }
}
impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        *self = self.saturating_add(other);
    }
}
impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Money::saturating_add)
    }
}

impl fmt::Display for Money {
    /// `$1.5`, `$0.000123`: the exact decimal, at least two decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / PICO_PER_USD;
        let frac = self.0 % PICO_PER_USD;
        let mut digits = format!("{frac:012}");
        while digits.len() > 2 && digits.ends_with('0') {
            digits.pop();
        }
        write!(f, "${whole}.{digits}")
    }
}

/// A dollar amount that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid amount {found:?}: {reason}; write a non-negative decimal number of US dollars such as \"0.15\""
)]
pub struct MoneyParseError {
    /// The text found.
    pub found: String,
    /// What was wrong.
    pub reason: String,
}

fn parse_decimal(s: &str, scale_digits: usize) -> Result<u128, MoneyParseError> {
    let err = |reason: &str| MoneyParseError {
        found: s.to_owned(),
        reason: reason.to_owned(),
    };
    let t = s.trim().trim_start_matches('$');
    if t.is_empty() {
        return Err(err("it is empty"));
    }
    if t.starts_with('-') {
        return Err(err("it is negative"));
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(err("it has no digits"));
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(err("it is not a plain decimal number"));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale_digits {
        return Err(err(&format!(
            "it has more than {scale_digits} decimal places"
        )));
    }
    let w: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err("it is too large"))?
    };
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| err("it is too large"))?
    };
    let scale = 10u128.pow(scale_digits as u32);
    let frac_scaled = f * 10u128.pow((scale_digits - frac.len()) as u32);
    w.checked_mul(scale)
        .and_then(|v| v.checked_add(frac_scaled))
        .ok_or_else(|| err("it is too large"))
}

impl FromStr for Money {
    type Err = MoneyParseError;
    /// Parses a dollar amount such as `"0.15"` or `"$12"`, up to 12 decimals.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_decimal(s, 12).map(Money)
    }
}

impl Serialize for Money {
    /// Serialized as the exact decimal string of dollars, e.g. `"0.000123"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.to_string();
        s.serialize_str(text.trim_start_matches('$'))
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = PriceNumber::deserialize(d)?;
        v.to_text().parse().map_err(serde::de::Error::custom)
    }
}

/// A price as written in YAML: a number (`0.15`) or a string (`"0.15"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PriceNumber {
    Int(u64),
    Float(f64),
    Text(String),
}

impl PriceNumber {
    fn to_text(&self) -> String {
        match self {
            PriceNumber::Int(i) => i.to_string(),
            // `Display` of f64 prints the shortest text that reads back as the same number,
            // which is the decimal the author wrote.
            PriceNumber::Float(f) => f.to_string(),
            PriceNumber::Text(s) => s.clone(),
        }
    }
}

/// A price per million tokens, kept exactly as pico-dollars per token
/// (USD 1 per million tokens = 1,000,000 pico-dollars per token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PricePerMillion(u128);

impl PricePerMillion {
    /// Parses a USD price per million tokens such as `"0.15"` (at most 6 decimals).
    pub fn parse_usd(s: &str) -> Result<Self, MoneyParseError> {
        parse_decimal(s, MAX_PRICE_DECIMALS).map(PricePerMillion)
    }
    /// The cost of `tokens` tokens at this price.
    pub fn cost(self, tokens: u64) -> Money {
        Money(self.0.saturating_mul(u128::from(tokens)))
    }
    /// The price of one token.
    pub fn per_token(self) -> Money {
        Money(self.0)
    }
}

impl fmt::Display for PricePerMillion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pico per token × 10⁶ tokens = price per million in pico-dollars.
        let m = Money(self.0.saturating_mul(1_000_000));
        write!(f, "{m}/1M tokens")
    }
}

impl Serialize for PricePerMillion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = Money(self.0.saturating_mul(1_000_000)).to_string();
        s.serialize_str(m.trim_start_matches('$'))
    }
}

impl<'de> Deserialize<'de> for PricePerMillion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = PriceNumber::deserialize(d)?;
        PricePerMillion::parse_usd(&v.to_text()).map_err(serde::de::Error::custom)
    }
}

/// The prices of one model, in USD per million tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Input (prompt) tokens.
    pub input: PricePerMillion,
    /// Output (completion) tokens; `0` for embedding models.
    pub output: PricePerMillion,
    /// Input tokens served from the provider's prompt cache; when absent, cached input costs
    /// the full input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<PricePerMillion>,
    /// Other names of the same model (e.g. `chatgpt-4o-latest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl ModelPrice {
    /// The cost of one call: uncached input at `input`, cached input at `cached_input`,
    /// completion at `output`. `cached_prompt_tokens` is capped at `prompt_tokens`.
    pub fn cost(&self, prompt_tokens: u64, cached_prompt_tokens: u64, completion: u64) -> Money {
        let cached = cached_prompt_tokens.min(prompt_tokens);
        let uncached = prompt_tokens - cached;
        self.input.cost(uncached)
            + self.cached_input.unwrap_or(self.input).cost(cached)
            + self.output.cost(completion)
    }
}

/// What a call, a step, a run or a ledger cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cost {
    /// Priced exactly.
    Priced(Money),
    /// The model is not in the price table: the cost is unknown (not zero).
    Unpriced {
        /// The model's name.
        model: String,
    },
    /// The provider did not report usage: the cost is unknown (not zero).
    UsageUnknown,
    /// Answered from a cache without calling the provider: no provider spend.
    CacheHit,
}

/// A price table that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PriceTableError {
    /// The YAML did not parse or a field was wrong.
    #[error(
        "invalid price table: {0}; expected `as_of: YYYY-MM-DD`, `currency: USD` and \
         `models: {{ <name>: {{ input: <USD per 1M>, output: <USD per 1M>, cached_input: <optional> }} }}`"
    )]
    Yaml(#[from] serde_yaml::Error),
    /// The currency is not USD.
    #[error("unsupported currency {0:?} in the price table; only USD is supported")]
    Currency(String),
    /// Two entries claim the same name.
    #[error("model name {0:?} appears twice in the price table (as a model or alias); keep one")]
    Duplicate(String),
    /// The file could not be read.
    #[error("could not read the price table {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn usd() -> String {
    "USD".to_owned()
}

/// Per-model prices, in USD per million tokens, with the date they were taken.
///
/// ```
/// use flowloom_observability::cost::PriceTable;
/// let t = PriceTable::from_yaml(r#"
/// as_of: 2025-01-31
/// models:
///   my-model: { input: 1.5, output: "2", cached_input: 0.75 }
/// "#).unwrap();
/// assert_eq!(t.as_of, "2025-01-31");
/// assert!(t.price("my-model").is_some());
/// let err = PriceTable::from_yaml("models: { m: { input: -1, output: 1 } }").unwrap_err();
/// assert!(err.to_string().contains("negative"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// The date the prices were taken (`YYYY-MM-DD`). Prices change after it.
    #[serde(alias = "date")]
    pub as_of: String,
    /// Always `USD`.
    #[serde(default = "usd")]
    pub currency: String,
    /// Where the prices come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Prices by model name.
    pub models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// Reads a table from YAML.
    pub fn from_yaml(yaml: &str) -> Result<Self, PriceTableError> {
        let t: PriceTable = serde_yaml::from_str(yaml)?;
        if !t.currency.eq_ignore_ascii_case("USD") {
            return Err(PriceTableError::Currency(t.currency));
        }
        let mut names = BTreeSet::new();
        for (name, p) in &t.models {
            for n in std::iter::once(name).chain(p.aliases.iter()) {
                if !names.insert(n.as_str()) {
                    return Err(PriceTableError::Duplicate(n.clone()));
                }
            }
        }
        Ok(t)
    }

    /// Reads a table from a YAML file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, PriceTableError> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|source| PriceTableError::Io {
            path: p.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The default table for common OpenAI models (see [`OPENAI_PRICES_YAML`] and its
    /// `as_of` date).
    pub fn openai_default() -> Self {
        // The embedded table is checked by a unit test, so it always parses; an empty table
        // (everything unpriced) is the safe answer should it not.
        Self::from_yaml(OPENAI_PRICES_YAML).unwrap_or_else(|_| PriceTable {
            as_of: String::new(),
            currency: usd(),
            source: None,
            models: BTreeMap::new(),
        })
    }

    /// An empty table: every model is unpriced.
    pub fn empty(as_of: impl Into<String>) -> Self {
        PriceTable {
            as_of: as_of.into(),
            currency: usd(),
            source: None,
            models: BTreeMap::new(),
        }
    }

    /// Adds or replaces a model's prices.
    #[must_use]
    pub fn with_model(mut self, name: impl Into<String>, price: ModelPrice) -> Self {
        self.models.insert(name.into(), price);
        self
    }

    /// The prices of `model`: an exact name or alias first, then the name without a dated
    /// snapshot suffix (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`, `gpt-4-0613` → `gpt-4`),
    /// and without a `provider/` prefix (`openai/gpt-4o` → `gpt-4o`).
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        let lookup = |name: &str| {
            self.models.get(name).or_else(|| {
                self.models
                    .values()
                    .find(|p| p.aliases.iter().any(|a| a == name))
            })
        };
        let mut candidates = vec![model];
        if let Some((_, rest)) = model.split_once('/') {
            candidates.push(rest);
        }
        for c in candidates {
            if let Some(p) = lookup(c) {
                return Some(p);
            }
            if let Some(base) = strip_snapshot(c)
                && let Some(p) = lookup(base)
            {
                return Some(p);
            }
        }
        None
    }

    /// The cost of one call of `model`.
    pub fn cost_of(&self, model: &str, prompt: u64, cached_prompt: u64, completion: u64) -> Cost {
        match self.price(model) {
            Some(p) => Cost::Priced(p.cost(prompt, cached_prompt, completion)),
            None => Cost::Unpriced {
                model: model.to_owned(),
            },
        }
    }
}

/// `name` without a trailing `-YYYY-MM-DD` or `-MMDD` snapshot date.
fn strip_snapshot(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if b.len() > 11 {
        let tail = &b[b.len() - 11..];
        if tail[0] == b'-'
            && digits(&tail[1..5])
            && tail[5] == b'-'
            && digits(&tail[6..8])
            && tail[8] == b'-'
            && digits(&tail[9..11])
        {
            return Some(&name[..name.len() - 11]);
        }
    }
    if b.len() > 5 {
        let tail = &b[b.len() - 5..];
        if tail[0] == b'-' && digits(&tail[1..]) {
            return Some(&name[..name.len() - 5]);
        }
    }
    None
}

/// The cost of many calls: what could be priced, and what could not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostReport {
    /// The exact sum over priced calls.
    pub total: Money,
    /// Calls priced.
    pub priced_calls: u64,
    /// Calls whose model is not in the table.
    pub unpriced_calls: u64,
    /// The models not in the table.
    pub unpriced_models: BTreeSet<String>,
    /// Calls whose provider reported no usage (their cost is unknown).
    pub calls_without_usage: u64,
    /// Calls answered from a cache (no provider spend).
    pub cache_hits: u64,
    /// The date of the price table used.
    pub prices_as_of: String,
}

impl CostReport {
    /// True when every call was priced (or was a cache hit): `total` is the whole cost.
    pub fn is_complete(&self) -> bool {
        self.unpriced_calls == 0 && self.calls_without_usage == 0
    }

    /// Adds one call's cost.
    pub fn add(&mut self, cost: &Cost) {
        match cost {
            Cost::Priced(m) => {
                self.total += *m;
                self.priced_calls += 1;
            }
            Cost::Unpriced { model } => {
                self.unpriced_calls += 1;
                self.unpriced_models.insert(model.clone());
            }
            Cost::UsageUnknown => self.calls_without_usage += 1,
            Cost::CacheHit => self.cache_hits += 1,
        }
    }
}

impl fmt::Display for CostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} over {} priced calls", self.total, self.priced_calls)?;
        if !self.unpriced_models.is_empty() {
            let names: Vec<&str> = self.unpriced_models.iter().map(String::as_str).collect();
            write!(
                f,
                ", plus {} unpriced calls ({})",
                self.unpriced_calls,
                names.join(", ")
            )?;
        }
        if self.calls_without_usage > 0 {
            write!(
                f,
                ", plus {} calls without reported usage",
                self.calls_without_usage
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_parses_and_is_dated() {
        let t = PriceTable::from_yaml(OPENAI_PRICES_YAML).unwrap();
        assert!(t.as_of.len() == 10 && t.as_of.starts_with("20"));
        for m in ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"] {
            assert!(t.price(m).is_some(), "{m}");
        }
    }

    #[test]
    fn money_prints_exact_decimals() {
        assert_eq!(Money::ZERO.to_string(), "$0.00");
        assert_eq!(Money::from_picos(1).to_string(), "$0.000000000001");
        assert_eq!(Money::from_cents(150).to_string(), "$1.50");
        assert_eq!("12".parse::<Money>().unwrap(), Money::from_cents(1200));
        assert_eq!("$0.5".parse::<Money>().unwrap(), Money::from_cents(50));
    }

    #[test]
    fn money_rejects_bad_text_with_reason() {
        for (s, why) in [
            ("", "empty"),
            ("-0.1", "negative"),
            ("1e-3", "plain decimal"),
            ("0.0000000000001", "12 decimal"),
            ("abc", "plain decimal"),
        ] {
            let e = s.parse::<Money>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn prices_from_floats_are_exact() {
        let p = PricePerMillion::parse_usd("0.075").unwrap();
        assert_eq!(p.cost(1_000_000), "0.075".parse().unwrap());
        assert_eq!(p.per_token(), Money::from_picos(75_000));
        let e = PricePerMillion::parse_usd("0.0000001").unwrap_err();
        assert!(e.to_string().contains("6 decimal"));
    }

    #[test]
    fn snapshot_suffixes() {
        assert_eq!(
            strip_snapshot("gpt-4o-mini-2024-07-18"),
            Some("gpt-4o-mini")
        );
        assert_eq!(strip_snapshot("gpt-4-0613"), Some("gpt-4"));
        assert_eq!(strip_snapshot("gpt-4o-mini"), None);
        assert_eq!(strip_snapshot("o1"), None);
    }

    #[test]
    fn lookup_does_not_guess_prefixes() {
        let t = PriceTable::openai_default();
        assert!(t.price("gpt-4o-mini-audio-preview").is_none());
        assert!(t.price("openai/gpt-4o").is_some());
    }

    #[test]
    fn cached_input_is_priced_apart() {
        let p = ModelPrice {
            input: PricePerMillion::parse_usd("2").unwrap(),
            output: PricePerMillion::parse_usd("8").unwrap(),
            cached_input: Some(PricePerMillion::parse_usd("0.5").unwrap()),
            aliases: vec![],
        };
        // 600k uncached at $2/M = 1.2; 400k cached at $0.5/M = 0.2; 100k out at $8/M = 0.8
        assert_eq!(
            p.cost(1_000_000, 400_000, 100_000),
            "2.2".parse::<Money>().unwrap()
        );
        // cached larger than prompt is capped
        assert_eq!(p.cost(10, 50, 0), "0.000005".parse::<Money>().unwrap());
    }

    #[test]
    fn bad_tables_say_what_is_wrong() {
        let e = PriceTable::from_yaml("as_of: x\ncurrency: EUR\nmodels: {}").unwrap_err();
        assert!(e.to_string().contains("only USD"));
        let e = PriceTable::from_yaml("as_of: x\nmodels: { a: { input: 1 } }").unwrap_err();
        assert!(e.to_string().contains("output"), "{e}");
        let e = PriceTable::from_yaml(
            "as_of: x\nmodels: { a: { input: 1, output: 1 }, b: { input: 1, output: 1, aliases: [a] } }",
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"));
        let e =
            PriceTable::from_yaml("as_of: x\nmodels: { a: { input: 1, outptu: 1 } }").unwrap_err();
        assert!(e.to_string().contains("outptu"), "{e}");
    }
}
