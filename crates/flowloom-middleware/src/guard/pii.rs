//! PII detection and redaction, usable on its own (FR-030).
//!
//! [`detect`] finds personal data and secrets in a text and returns each with its kind and
//! byte span; [`redact`] replaces each with a label such as `[EMAIL]`. [`PiiDetector`] does
//! the same for a chosen set of kinds.
//!
//! ```
//! use flowloom_middleware::guard::pii::{self, PiiKind};
//! let text = "Mail jane.doe@example.com or call +44 20 7946 0958.";
//! let found = pii::detect(text);
//! assert_eq!(found[0].kind, PiiKind::Email);
//! assert_eq!(&text[found[0].span.clone()], "jane.doe@example.com");
//! assert_eq!(pii::redact(text), "Mail [EMAIL] or call [PHONE].");
//! ```
//!
//! # What is found, and what is deliberately not
//!
//! | kind | found | not found (near misses) |
//! | --- | --- | --- |
//! | `email` | `name@domain.tld` | `user@localhost`, `@handle` |
//! | `credit_card` | 13–19 digits, optionally in groups of 3–6 split by spaces or dashes, with a known issuer prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) **and** a valid Luhn checksum | the same digits failing Luhn; unknown prefixes |
//! | `iban` | country code, 2 check digits and the account part (spaces allowed), of the country's length, with a valid ISO 13616 mod-97 checksum | a bad checksum; an unknown country |
//! | `ssn` | US `AAA-GG-SSSS` with dashes, area not 000/666/9xx, group not 00, serial not 0000 | those invalid ranges; 9 digits without dashes (too many ids look like that) |
//! | `ip_address` | IPv4 dotted quads with octets 0–255 and no leading zeros; IPv6 in any form `std::net::Ipv6Addr` parses, containing a digit | dotted quads that are **versions**: preceded by `v`, `@`, `-`, or by a word such as *version*, *build*, *release*, *firmware*, *rev*, *update*, *patch*; longer dotted runs (`1.2.3.4.5`); times like `12:30:45`, MAC addresses, `std::fmt` |
//! | `phone` | `+` and a country code with 8–15 digits in all (spaces, dots, dashes, parentheses between); North-American `(555) 123-4567`, `555-123-4567`, `555.123.4567`; national numbers starting with `0` and a non-zero digit, in 2–5 groups, 9–12 digits | bare digit runs (order numbers, ids); any number right after *order*, *invoice*, *ref*, *ticket*, *tracking*, *account*, *id*, *no.* or `#`, or right after another token holding digits (the tail of a longer code); dates |
//! | `secret` | `sk-…` (OpenAI, Anthropic), `AKIA…`/`ASIA…` (AWS), `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`/`github_pat_` (GitHub), `xox?-` (Slack), `AIza…` (Google), `sk_live_`/`pk_test_`… (Stripe), JWTs, the token after `Bearer`, private-key blocks, the value after `password=`, `api_key:`, `secret=`, `token:` and the like, the password in a URL (`scheme://user:password@host`); and high-entropy tokens: 32+ characters of letters, digits and `+/_-` with upper case, lower case, at least two digits, frequent switches between letter case and digits (≥ 40 % of neighbours), and Shannon entropy ≥ 4 bits per character | hex digests and git SHAs (no upper case), UUIDs, long identifiers in camel case (few switches), placeholders like `********` |
//!
//! Where two findings overlap, the earlier kind in the table's order `secret`, `email`,
//! `credit_card`, `iban`, `ssn`, `ip_address`, `phone` wins.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A kind of personal data or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// API keys, tokens, passwords, private keys.
    Secret,
    /// E-mail addresses.
    Email,
    /// Payment card numbers (Luhn-valid).
    CreditCard,
    /// International bank account numbers (checksum-valid).
    Iban,
    /// US social security numbers.
    Ssn,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// Telephone numbers.
    Phone,
}

impl PiiKind {
    /// Every kind, in precedence order.
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Secret,
        PiiKind::Email,
        PiiKind::CreditCard,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::IpAddress,
        PiiKind::Phone,
    ];

    /// The mask [`redact`] writes, e.g. `[EMAIL]`.
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Secret => "[SECRET]",
            PiiKind::Email => "[EMAIL]",
            PiiKind::CreditCard => "[CREDIT_CARD]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::IpAddress => "[IP_ADDRESS]",
            PiiKind::Phone => "[PHONE]",
        }
    }

    /// The snake_case name, e.g. `credit_card`.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Secret => "secret",
            PiiKind::Email => "email",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::IpAddress => "ip_address",
            PiiKind::Phone => "phone",
        }
    }
}

impl std::fmt::Display for PiiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: its kind, its byte range in the text, and the text found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    /// What was found.
    pub kind: PiiKind,
    /// Where, in bytes.
    pub span: Range<usize>,
    /// The text found (a copy of `text[span]`).
    pub text: String,
}

/// Finds every kind of PII in `text`, in order of position.
pub fn detect(text: &str) -> Vec<PiiMatch> {
    PiiDetector::default().detect(text)
}

/// Replaces every finding of [`detect`] with its kind's label.
pub fn redact(text: &str) -> String {
    PiiDetector::default().redact(text)
}

/// A detector for a chosen set of kinds (all by default).
///
/// ```
/// use flowloom_middleware::guard::pii::{PiiDetector, PiiKind};
/// let d = PiiDetector::only(&[PiiKind::Email]);
/// assert_eq!(d.redact("a@b.io from 10.0.0.1"), "[EMAIL] from 10.0.0.1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiDetector {
    kinds: BTreeSet<PiiKind>,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self {
            kinds: PiiKind::ALL.into_iter().collect(),
        }
    }
}

impl PiiDetector {
    /// A detector for `kinds` only.
    pub fn only(kinds: &[PiiKind]) -> Self {
        Self {
            kinds: kinds.iter().copied().collect(),
        }
    }

    /// The kinds looked for.
    pub fn kinds(&self) -> impl Iterator<Item = PiiKind> + '_ {
        self.kinds.iter().copied()
    }

    /// Finds PII of the chosen kinds, in order of position; findings never overlap.
    pub fn detect(&self, text: &str) -> Vec<PiiMatch> {
        let mut found: Vec<(PiiKind, Range<usize>)> = Vec::new();
        let scan = Scan::new(text);
        for kind in PiiKind::ALL {
            if !self.kinds.contains(&kind) {
                continue;
            }
            let mut spans = Vec::new();
            match kind {
                PiiKind::Secret => find_secrets(&scan, &mut spans),
                PiiKind::Email => find_emails(&scan, &mut spans),
                PiiKind::CreditCard => find_cards(&scan, &mut spans),
                PiiKind::Iban => find_ibans(&scan, &mut spans),
                PiiKind::Ssn => find_ssns(&scan, &mut spans),
                PiiKind::IpAddress => find_ips(&scan, &mut spans),
                PiiKind::Phone => find_phones(&scan, &mut spans),
            }
            for span in spans {
                if !found
                    .iter()
                    .any(|(_, s)| s.start < span.end && span.start < s.end)
                {
                    found.push((kind, span));
                }
            }
        }
        found.sort_by_key(|(_, s)| s.start);
        found
            .into_iter()
            .map(|(kind, span)| PiiMatch {
                kind,
                text: text[span.clone()].to_owned(),
                span,
            })
            .collect()
    }

    /// Replaces each finding with its kind's label.
    pub fn redact(&self, text: &str) -> String {
        let found = self.detect(text);
        if found.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for m in found {
            out.push_str(&text[at..m.span.start]);
            out.push_str(m.kind.label());
            at = m.span.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// Every candidate pattern, compiled once on first use. The patterns are constants and a test
/// checks that each compiles; were one not to, detection would find nothing rather than panic.
struct Compiled {
    each: Vec<Regex>,
}

const SECRET_PREFIXED: usize = 0;
const SECRET_BEARER: usize = 1;
const SECRET_PEM: usize = 2;
const SECRET_ASSIGN: usize = 3;
const EMAIL: usize = 4;
const CARD: usize = 5;
const IBAN: usize = 6;
const SSN: usize = 7;
const IPV4: usize = 8;
const IPV6_CANDIDATE: usize = 9;
const PHONE_INTL: usize = 10;
const PHONE_NANP: usize = 11;
const PHONE_NATIONAL: usize = 12;
const SECRET_URL_PASSWORD: usize = 13;

static SOURCES: [&str; 14] = [
    r"(?-u:\b)(?:sk-(?:proj-|ant-(?:api[0-9]{2}-)?|live-|test-)?[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
    r"(?i)(?-u:\b)bearer[ \t\r\n]+([A-Za-z0-9._~+/-]{16,}=*)",
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?s:.)*?-----END (?:[A-Z]+ )*PRIVATE KEY-----",
    r#"(?i)(?-u:\b)(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|token)[ \t\r\n]*[:=][ \t\r\n]*["']?([^ \t\r\n"',;]{8,})"#,
    r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,24}(?-u:\b)",
    r"(?-u:\b)[0-9](?:[ -]?[0-9]){11,18}(?-u:\b)",
    r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,32}(?-u:\b)",
    r"(?-u:\b)([0-9]{3})-([0-9]{2})-([0-9]{4})(?-u:\b)",
    r"(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?-u:\b)",
    r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*",
    r"\+[0-9][0-9 ().-]{6,22}[0-9]",
    r"(?:\([0-9]{3}\) ?[0-9]{3}[-.][0-9]{4}|(?-u:\b)[0-9]{3}-[0-9]{3}-[0-9]{4}|(?-u:\b)[0-9]{3}\.[0-9]{3}\.[0-9]{4})(?-u:\b)",
    r"(?-u:\b)0[1-9][0-9]{0,3}(?:[ /-][0-9]{2,8}){1,4}(?-u:\b)",
    r"(?-u:\b)[a-zA-Z][a-zA-Z0-9+.-]*://[^ \t\r\n/:@]+:([^ \t\r\n/@]+)@",
];

static COMPILED: LazyLock<Option<Compiled>> = LazyLock::new(|| {
    let each = SOURCES
        .iter()
        .map(|s| Regex::new(s).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Compiled { each })
});

/// One text, and which patterns can match in it at all: each pattern needs certain characters
/// (a card needs 13 digits, an e-mail an `@`, ...), counted in one pass over the bytes, so
/// most patterns never run on ordinary prose.
struct Scan<'t> {
    text: &'t str,
    compiled: Option<&'static Compiled>,
    hits: [bool; SOURCES.len()],
    longest_token: usize,
}

impl<'t> Scan<'t> {
    fn new(text: &'t str) -> Self {
        let bytes = text.as_bytes();
        let (mut digits, mut colons) = (0usize, 0usize);
        let (mut at, mut eq, mut dot, mut dash, mut plus, mut paren, mut iban, mut bearer) =
            (false, false, false, false, false, false, false, false);
        // The longest run of token characters (`A-Z a-z 0-9 + / _ -`): every prefixed key is
        // at least 15 long, a high-entropy token at least 32.
        let (mut run, mut longest) = (0usize, 0usize);
        for (i, &b) in bytes.iter().enumerate() {
            if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-') {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    if !iban
                        && i >= 3
                        && bytes[i - 1].is_ascii_digit()
                        && bytes[i - 2].is_ascii_uppercase()
                        && bytes[i - 3].is_ascii_uppercase()
                    {
                        iban = true;
                    }
                }
                b'b' | b'B'
                    if !bearer
                        && bytes
                            .get(i + 1..i + 6)
                            .is_some_and(|w| w.eq_ignore_ascii_case(b"earer")) =>
                {
                    bearer = true;
                }
                b'@' => at = true,
                b':' => colons += 1,
                b'=' => eq = true,
                b'.' => dot = true,
                b'-' => dash = true,
                b'+' => plus = true,
                b'(' => paren = true,
                _ => {}
            }
        }
        let mut hits = [false; SOURCES.len()];
        hits[SECRET_PREFIXED] = longest >= 15 || text.contains("eyJ");
        hits[SECRET_BEARER] = bearer;
        hits[SECRET_PEM] = dash && text.contains("-----BEGIN");
        hits[SECRET_ASSIGN] = colons > 0 || eq;
        hits[SECRET_URL_PASSWORD] = colons > 0 && at;
        hits[EMAIL] = at;
        hits[CARD] = digits >= 13;
        hits[IBAN] = iban;
        hits[SSN] = dash && digits >= 9;
        hits[IPV4] = dot && digits >= 4;
        hits[IPV6_CANDIDATE] = colons >= 2 && digits >= 1;
        hits[PHONE_INTL] = plus && digits >= 8;
        hits[PHONE_NANP] = digits >= 10 && (dash || dot || paren);
        hits[PHONE_NATIONAL] = digits >= 9;
        Scan {
            text,
            compiled: COMPILED.as_ref(),
            hits,
            longest_token: longest,
        }
    }
    fn regex(&self, idx: usize) -> Option<&'static Regex> {
        if self.hits.get(idx).copied().unwrap_or(false) {
            self.compiled.and_then(|c| c.each.get(idx))
        } else {
            None
        }
    }
    fn find_iter(&self, idx: usize) -> impl Iterator<Item = regex::Match<'t>> + use<'t> {
        let text = self.text;
        self.regex(idx)
            .into_iter()
            .flat_map(move |r| r.find_iter(text))
    }
    fn captures_iter(&self, idx: usize) -> impl Iterator<Item = regex::Captures<'t>> + use<'t> {
        let text = self.text;
        self.regex(idx)
            .into_iter()
            .flat_map(move |r| r.captures_iter(text))
    }
}

/// Runs of token characters (`A-Z a-z 0-9 + / _ -`, then up to two `=`) at least 32 long.
fn token_runs(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let is_tok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-');
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if !is_tok(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_tok(bytes[i]) {
                i += 1;
            }
            let mut end = i;
            let mut pads = 0;
            while end < bytes.len() && bytes[end] == b'=' && pads < 2 {
                end += 1;
                pads += 1;
            }
            if i - start >= 32 {
                i = end;
                return Some(start..end);
            }
        }
        None
    })
}

fn prev_char(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}
fn next_char(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The word before `at` (skipping spaces and `:`/`=`/`#`), lower-cased, and whether a `#`
/// came right before the number.
fn prev_word(text: &str, at: usize) -> (String, bool) {
    let before = &text[..at];
    let trimmed = before.trim_end_matches([' ', '\t']);
    let hash = trimmed.ends_with('#') || trimmed.ends_with("No.") || trimmed.ends_with("no.");
    let trimmed = trimmed.trim_end_matches([':', '=', '#', ' ', '\t']);
    let word: String = trimmed
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (word.to_lowercase(), hash)
}

// ---- secrets ----------------------------------------------------------------------------

fn find_secrets(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    let text = scan.text;
    for m in scan.find_iter(SECRET_PEM) {
        out.push(m.range());
    }
    for m in scan.find_iter(SECRET_PREFIXED) {
        // `sk-` also starts ordinary words (`sk-learn-...`): real keys carry digits.
        if m.as_str().starts_with("sk-")
            && m.as_str().bytes().filter(u8::is_ascii_digit).count() < 2
        {
            continue;
        }
        out.push(m.range());
    }
    for c in scan.captures_iter(SECRET_BEARER) {
        if let Some(g) = c.get(1) {
            out.push(g.range());
        }
    }
    for c in scan.captures_iter(SECRET_URL_PASSWORD) {
        if let Some(g) = c.get(1) {
            out.push(g.range());
        }
    }
    for c in scan.captures_iter(SECRET_ASSIGN) {
        if let Some(g) = c.get(1) {
            let v = g.as_str();
            let placeholder = v
                .chars()
                .all(|c| matches!(c, '*' | 'x' | 'X' | '.' | '<' | '>'))
                || v.starts_with('<')
                || v.starts_with("${")
                || v.starts_with("{{");
            if !placeholder {
                out.push(g.range());
            }
        }
    }
    if scan.longest_token < 32 {
        return;
    }
    for r in token_runs(text) {
        if is_word(prev_char(text, r.start)) || is_word(next_char(text, r.end)) {
            continue;
        }
        if looks_random(&text[r.clone()]) {
            out.push(r);
        }
    }
}

/// The high-entropy test described in the module docs.
fn looks_random(s: &str) -> bool {
    let core = s.trim_end_matches('=');
    let bytes = core.as_bytes();
    if bytes.len() < 32 {
        return false;
    }
    let upper = bytes.iter().filter(|b| b.is_ascii_uppercase()).count();
    let lower = bytes.iter().filter(|b| b.is_ascii_lowercase()).count();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if upper == 0 || lower == 0 || digits < 2 {
        return false;
    }
    let class = |b: u8| {
        if b.is_ascii_uppercase() {
            0
        } else if b.is_ascii_lowercase() {
            1
        } else if b.is_ascii_digit() {
            2
        } else {
            3
        }
    };
    let switches = bytes
        .windows(2)
        .filter(|w| class(w[0]) != class(w[1]))
        .count();
    if (switches as f64) < 0.4 * (bytes.len() - 1) as f64 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy >= 4.0
}

// ---- email ------------------------------------------------------------------------------

fn find_emails(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    out.extend(scan.find_iter(EMAIL).map(|m| m.range()));
}

// ---- credit cards -----------------------------------------------------------------------

/// The Luhn checksum over a string of ASCII digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

fn card_issuer_ok(d: &str) -> bool {
    let len = d.len();
    let p = |n: usize| d.get(..n).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    (d.starts_with('4') && matches!(len, 13 | 16 | 19))
        || (((51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4))) && len == 16)
        || (matches!(p(2), 34 | 37) && len == 15)
        || ((p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3))) && (16..=19).contains(&len))
        || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&len))
        || (((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
            && (14..=19).contains(&len))
        || (p(2) == 62 && (16..=19).contains(&len))
}

fn find_cards(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    let text = scan.text;
    for m in scan.find_iter(CARD) {
        let s = m.as_str();
        if matches!(prev_char(text, m.start()), Some('-' | '.' | '+' | '/'))
            || matches!(next_char(text, m.end()), Some('-' | '/'))
            || (next_char(text, m.end()) == Some('.')
                && text[m.end() + 1..].starts_with(|c: char| c.is_ascii_digit()))
        {
            continue;
        }
        let groups: Vec<&str> = s.split([' ', '-']).collect();
        if groups.len() > 1 && groups.iter().any(|g| !(3..=6).contains(&g.len())) {
            continue;
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if (13..=19).contains(&digits.len()) && card_issuer_ok(&digits) && luhn_valid(&digits) {
            out.push(m.range());
        }
    }
}

// ---- IBAN -------------------------------------------------------------------------------

fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "CR" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "GI" | "IL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" => 31,
        _ => return None,
    })
}

/// The ISO 13616 mod-97 check of an IBAN without spaces.
pub fn iban_checksum_valid(iban: &str) -> bool {
    if iban.len() < 5 || !iban.is_ascii() {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn find_ibans(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    for m in scan.find_iter(IBAN) {
        let s = m.as_str();
        let Some(len) = iban_length(&s[..2]) else {
            continue;
        };
        // Take exactly the country's length of characters, then require a boundary.
        let mut taken = 0;
        let mut end = None;
        for (i, c) in s.char_indices() {
            if c != ' ' {
                taken += 1;
                if taken == len {
                    end = Some(i + c.len_utf8());
                    break;
                }
            }
        }
        let Some(end) = end else { continue };
        if s[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        let compact: String = s[..end].chars().filter(|c| *c != ' ').collect();
        if iban_checksum_valid(&compact) {
            out.push(m.start()..m.start() + end);
        }
    }
}

// ---- SSN --------------------------------------------------------------------------------

fn find_ssns(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    let text = scan.text;
    for c in scan.captures_iter(SSN) {
        let (Some(all), Some(a), Some(g), Some(s)) = (c.get(0), c.get(1), c.get(2), c.get(3))
        else {
            continue;
        };
        if matches!(prev_char(text, all.start()), Some('-' | '.'))
            || matches!(next_char(text, all.end()), Some('-'))
        {
            continue;
        }
        let area: u32 = a.as_str().parse().unwrap_or(0);
        if area == 0 || area == 666 || area >= 900 || g.as_str() == "00" || s.as_str() == "0000" {
            continue;
        }
        out.push(all.range());
    }
}

// ---- IP addresses -----------------------------------------------------------------------

const VERSION_WORDS: &[&str] = &[
    "version", "ver", "ver.", "v", "v.", "build", "release", "firmware", "fw", "rev", "rev.",
    "revision", "update", "patch", "sdk", "kernel",
];

fn find_ips(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    let text = scan.text;
    for m in scan.find_iter(IPV6_CANDIDATE) {
        let mut r = m.range();
        // A sentence may end right after the address.
        while r.end > r.start
            && text[..r.end].ends_with(['.', ':'])
            && !text[..r.end].ends_with("::")
        {
            r.end -= 1;
        }
        let s = &text[r.clone()];
        if is_word(prev_char(text, r.start)) || is_word(next_char(text, r.end)) {
            continue;
        }
        if !s.bytes().any(|b| b.is_ascii_digit()) || s.len() < 3 {
            continue;
        }
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            out.push(r);
        }
    }
    for m in scan.find_iter(IPV4) {
        let before = prev_char(text, m.start());
        if matches!(before, Some('.' | 'v' | 'V' | '@' | '-' | '/' | '_'))
            || text[m.end()..].starts_with('.')
                && text[m.end() + 1..].starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        let (word, _) = prev_word(text, m.start());
        if VERSION_WORDS.contains(&word.as_str()) {
            continue;
        }
        let ok = m.as_str().split('.').all(|o| {
            (o.len() == 1 || !o.starts_with('0')) && o.parse::<u16>().is_ok_and(|v| v <= 255)
        });
        if ok {
            out.push(m.range());
        }
    }
}

// ---- phones -----------------------------------------------------------------------------

const ID_WORDS: &[&str] = &[
    "order",
    "invoice",
    "ref",
    "ref.",
    "reference",
    "ticket",
    "tracking",
    "account",
    "acct",
    "id",
    "no",
    "no.",
    "number",
    "case",
    "po",
    "sku",
    "serial",
    "isbn",
    "part",
];

/// True when the token before `at` (one space back) holds a digit: the number found is the
/// tail of a longer spaced code (an account number, a bad IBAN), not a number on its own.
fn follows_digit_token(text: &str, at: usize) -> bool {
    let Some(before) = text[..at].strip_suffix(' ') else {
        return false;
    };
    before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric())
        .any(|c| c.is_ascii_digit())
}

fn find_phones(scan: &Scan<'_>, out: &mut Vec<Range<usize>>) {
    let text = scan.text;
    let id_context = |start: usize| {
        let (word, hash) = prev_word(text, start);
        hash || ID_WORDS.contains(&word.as_str()) || follows_digit_token(text, start)
    };
    for m in scan.find_iter(PHONE_INTL) {
        let s = m.as_str();
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        let bad_seps = s.as_bytes().windows(2).any(|w| {
            matches!(
                (w[0], w[1]),
                (b'-' | b'.', b'-' | b'.' | b' ') | (b' ', b' ' | b'-' | b'.')
            )
        });
        if (8..=15).contains(&digits)
            && !bad_seps
            && !is_word(next_char(text, m.end()))
            && !id_context(m.start())
        {
            out.push(m.range());
        }
    }
    for m in scan.find_iter(PHONE_NANP) {
        let s = m.as_str();
        let area_start = s.trim_start_matches('(');
        if area_start.starts_with(['0', '1'])
            || matches!(prev_char(text, m.start()), Some('-' | '.' | '/' | '+'))
            || matches!(next_char(text, m.end()), Some('-' | '.'))
                && text[m.end() + 1..].starts_with(|c: char| c.is_ascii_digit())
            || id_context(m.start())
        {
            continue;
        }
        out.push(m.range());
    }
    for m in scan.find_iter(PHONE_NATIONAL) {
        let s = m.as_str();
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        let one_sep = {
            let seps: BTreeSet<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
            seps.len() == 1
        };
        if (9..=12).contains(&digits)
            && one_sep
            && !matches!(prev_char(text, m.start()), Some('-' | '.' | '/' | '+'))
            && !matches!(next_char(text, m.end()), Some('-' | '/'))
            && !id_context(m.start())
        {
            out.push(m.range());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for src in SOURCES {
            assert!(Regex::new(src).is_ok(), "{src}");
        }
        assert!(COMPILED.is_some());
    }

    #[test]
    fn token_runs_find_long_tokens_with_padding() {
        let t = "a aZ3kP9qL2mX7vB4nT8wR1yC6dF5gH0jKx== b";
        let runs: Vec<_> = token_runs(t).map(|r| &t[r]).collect();
        assert_eq!(runs, ["aZ3kP9qL2mX7vB4nT8wR1yC6dF5gH0jKx=="]);
    }

    #[test]
    fn luhn_and_iban_checks() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(iban_checksum_valid("DE89370400440532013000"));
        assert!(!iban_checksum_valid("DE89370400440532013001"));
        assert!(iban_checksum_valid("GB82WEST12345698765432"));
    }

    #[test]
    fn random_versus_words() {
        assert!(looks_random("aZ3kP9qL2mX7vB4nT8wR1yC6dF5gH0jK"));
        assert!(!looks_random("ThisIsAVeryLongIdentifierName123"));
        assert!(!looks_random("da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    }
}
