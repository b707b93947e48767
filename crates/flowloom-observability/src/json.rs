//! The JSON line format: `tracing-subscriber`'s JSON shape (`timestamp`, `level`, `fields`,
//! `target`, `spans`), written directly.
//!
//! Span fields are kept by [`SpanFields`] as the JSON members they are written as
//! (`"key":value,...`): a line copies them as they are, and recording a field appends its
//! member (replacing the one it had). `tracing-subscriber`'s `JsonFields` instead re-parses
//! and re-serializes every field of the span through `serde_json` on every `record`, and its
//! JSON formatter does the same for every span of every line.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Writes the contents of a JSON string literal for `s` (no quotes). Only `"`, `\` and
/// control characters are escaped, so the scan is over bytes: every byte of a multi-byte
/// character is ≥ 0x80 and passes as it is.
fn write_json_contents(w: &mut (impl fmt::Write + ?Sized), s: &str) -> fmt::Result {
    let bytes = s.as_bytes();
    // Most text needs no escape: skip it eight bytes at a time.
    let clean = clean_prefix(bytes);
    if clean == bytes.len() {
        return w.write_str(s);
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so a char boundary.
        w.write_str(&s[start..i])?;
        if esc.is_empty() {
            write!(w, "\\u{b:04x}")?;
        } else {
            w.write_str(esc)?;
        }
        start = i + 1;
    }
    w.write_str(&s[start..])
}

/// How many leading bytes of `b` need no JSON escape (no `"`, `\\` or control byte).
fn clean_prefix(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero: the classic "has zero byte" test (exact for the first match).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20 (high bit clear and `x - 0x20` borrowing), `"` and `\\`.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let special = control
            | has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            break;
        }
        i += 8;
    }
    // The rest (and the word with a special byte) byte by byte.
    i + b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .unwrap_or(b.len() - i)
}

/// Writes `s` as a JSON string literal.
fn write_json_str(w: &mut (impl fmt::Write + ?Sized), s: &str) -> fmt::Result {
    w.write_char('"')?;
    write_json_contents(w, s)?;
    w.write_char('"')
}

/// Escapes what is written through it as the contents of a JSON string (for `Debug` and
/// `Display` values, written without an intermediate `String`).
struct Escaping<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_json_contents(self.0, s)
    }
}

struct FieldsVisitor<'a, W: fmt::Write> {
    w: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> FieldsVisitor<'_, W> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.w.write_str(if self.first { "\"" } else { ",\"" })?;
        self.first = false;
        write_json_contents(self.w, field.name())?;
        self.w.write_str("\":")
    }
    fn put(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.w));
        }
    }
}

impl<W: fmt::Write> Visit for FieldsVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |w| write_json_str(w, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put(field, |w| write!(w, "{value}"));
        } else {
            self.put(field, |w| write_json_str(w, &value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| {
            w.write_char('"')?;
            fmt::Write::write_fmt(&mut Escaping(w), format_args!("{value:?}"))?;
            w.write_char('"')
        });
    }
}

/// Span fields as JSON members without the braces: `"a":1,"b":"x"`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = FieldsVisitor {
            w: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // A field recorded again replaces its member.
        if !current.fields.is_empty() {
            let mut names = Names(Vec::new());
            fields.record(&mut names);
            remove_members(&mut current.fields, &names.0);
        }
        let mut v = FieldsVisitor {
            w: &mut current.fields,
            first: true,
            result: Ok(()),
        };
        // Appending after members already there.
        v.first = v.w.is_empty();
        fields.record(&mut v);
        v.result
    }
}

/// Collects the names of the fields a record sets.
struct Names(Vec<&'static str>);

impl Visit for Names {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        self.0.push(field.name());
    }
}

/// The members of stored span fields (`"a":1,"b":"x"`): each member's key (as written,
/// without quotes) and its extent.
fn members(s: &str) -> impl Iterator<Item = (&str, std::ops::Range<usize>)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= s.len() {
            return None;
        }
        let key_end = value_end(s, at);
        let end = value_end(s, (key_end + 1).min(s.len()));
        let key = s.get(at + 1..key_end.saturating_sub(1)).unwrap_or("");
        let member = (key, at..end);
        // Past the comma.
        at = end + 1;
        Some(member)
    })
}

/// Removes from stored span fields the members named in `names`.
fn remove_members(s: &mut String, names: &[&str]) {
    if !members(s).any(|(k, _)| names.contains(&k)) {
        return;
    }
    let mut kept = String::with_capacity(s.len());
    for (_, range) in members(s).filter(|(k, _)| !names.contains(k)) {
        if !kept.is_empty() {
            kept.push(',');
        }
        kept.push_str(&s[range]);
    }
    *s = kept;
}

/// Where the JSON scalar starting at `at` ends (a string, number, `true`, `false` or `null`:
/// what [`FieldsVisitor`] writes).
fn value_end(s: &str, at: usize) -> usize {
    let b = s.as_bytes();
    if b.get(at) == Some(&b'"') {
        // Inside a written string there is no raw control byte: the first byte to look at
        // is its closing `"` or an escape.
        let mut i = at + 1 + clean_prefix(&b[at + 1..]);
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        b.len()
    } else {
        b[at..]
            .iter()
            .position(|&c| c == b',' || c == b':')
            .map_or(b.len(), |i| at + i)
    }
}

/// Writes `t` as RFC 3339 UTC with microseconds, `2026-11-21T14:05:03.123456Z`.
fn write_timestamp(w: &mut impl fmt::Write, t: time::OffsetDateTime) -> fmt::Result {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return write!(
            w,
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        );
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, digits: usize, mut v: u32| {
        for i in (at..at + digits).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    put(20, 6, t.microsecond());
    w.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
}

/// One JSON object per event, in `tracing-subscriber`'s JSON shape with the span list and
/// without the repeated current span.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        w.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut w, time::OffsetDateTime::now_utc())?;
        w.write_str("\",\"level\":\"")?;
        w.write_str(meta.level().as_str())?;
        w.write_str("\",\"fields\":{")?;
        let mut v = FieldsVisitor {
            w: &mut w,
            first: true,
            result: Ok(()),
        };
        event.record(&mut v);
        v.result?;
        w.write_str("},\"target\":")?;
        write_json_str(&mut w, meta.target())?;
        w.write_str(",\"spans\":[")?;
        if let Some(scope) = ctx.event_scope() {
            for (i, span) in scope.from_root().enumerate() {
                if i > 0 {
                    w.write_char(',')?;
                }
                w.write_str("{\"name\":")?;
                write_json_str(&mut w, span.name())?;
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && !f.fields.is_empty()
                {
                    // `SpanFields` keeps the span's fields as JSON members: copy them in.
                    w.write_char(',')?;
                    w.write_str(&f.fields)?;
                }
                w.write_char('}')?;
            }
        }
        w.write_str("]}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(f: impl FnOnce()) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = std::sync::Arc::clone(&out);
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(SpanFields)
            .event_format(JsonLines)
            .with_writer(move || Sink(std::sync::Arc::clone(&sink)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_recorded_again_replace_their_member() {
        let text = line_of(|| {
            let span = tracing::info_span!(
                "s",
                first = "a,\"b\":1",
                status = tracing::field::Empty,
                n = 1u64,
                last = tracing::field::Empty,
            );
            span.record("status", "RUNNING");
            span.record("last", true);
            span.record("status", "COMPLETED");
            span.record("first", "x\\");
            span.record("n", 2u64);
            span.in_scope(|| tracing::info!(k = 3, "hello"));
        });
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let s = &v["spans"][0];
        assert_eq!(s["name"], "s");
        assert_eq!(s["status"], "COMPLETED");
        assert_eq!(s["first"], "x\\");
        assert_eq!(s["n"], 2);
        assert_eq!(s["last"], true);
        assert_eq!(v["fields"]["message"], "hello");
        assert_eq!(v["fields"]["k"], 3);
        // Each key once: a repeated key would be valid JSON that readers disagree on.
        for key in ["\"status\"", "\"first\"", "\"n\"", "\"last\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
    }

    #[test]
    fn a_span_without_fields_gets_only_its_name() {
        let text = line_of(|| {
            let span = tracing::info_span!("bare", later = tracing::field::Empty);
            span.in_scope(|| tracing::info!("x"));
            span.record("later", 5u64);
            span.in_scope(|| tracing::info!("y"));
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["spans"][0], serde_json::json!({"name": "bare"}));
        assert_eq!(
            lines[1]["spans"][0],
            serde_json::json!({"name": "bare", "later": 5})
        );
    }

    #[test]
    fn members_are_removed_wherever_they_are() {
        let base = r#""a":"x,\"b\":2","b":1,"c":true,"d":"\\""#;
        for (names, want) in [
            (&["a"][..], r#""b":1,"c":true,"d":"\\""#),
            (&["b"][..], r#""a":"x,\"b\":2","c":true,"d":"\\""#),
            (&["d"][..], r#""a":"x,\"b\":2","b":1,"c":true"#),
            (&["a", "c", "d"][..], r#""b":1"#),
            (&["zz"][..], base),
        ] {
            let mut s = base.to_owned();
            remove_members(&mut s, names);
            assert_eq!(s, want, "{names:?}");
            let _: serde_json::Value = serde_json::from_str(&format!("{{{s}}}")).unwrap();
        }
    }

    #[test]
    fn debug_values_are_escaped_as_they_are_written() {
        struct Odd;
        impl fmt::Debug for Odd {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a\"b")?;
                f.write_str("\\c\n")
            }
        }
        let text = line_of(|| tracing::info!(odd = ?Odd, shown = %"d\"e"));
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["fields"]["odd"], "a\"b\\c\n");
        assert_eq!(v["fields"]["shown"], "d\"e");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000067 UTC);
        let mut out = String::new();
        write_timestamp(&mut out, t).unwrap();
        assert_eq!(out, "2026-01-02T03:04:05.000067Z");
        let back =
            time::OffsetDateTime::parse(&out, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn the_clean_prefix_stops_at_the_first_byte_to_escape() {
        for (text, want) in [
            ("", 0),
            ("abc", 3),
            ("abcdefghijklmnop", 16),
            ("abcdefgh\"ijk", 8),
            ("abcdefghi\\jk", 9),
            ("abcdefghij\nk", 10),
            ("ab\u{1f}cdefghijk", 2),
            ("é clé µs 🙂 ok", "é clé µs 🙂 ok".len()),
            (
                "0123456789abcde\u{7f}\u{80}",
                "0123456789abcde\u{7f}\u{80}".len(),
            ),
            (" !#$%&'()*+,-./:;<=>?@[]^_`{|}~", 31),
        ] {
            assert_eq!(clean_prefix(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
