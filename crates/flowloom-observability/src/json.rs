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

/// Writes `s` as a JSON string literal.
fn write_json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        w.write_str(&s[start..i])?;
        if esc.is_empty() {
            write!(w, "\\u{:04x}", c as u32)?;
        } else {
            w.write_str(esc)?;
        }
        start = i + c.len_utf8();
    }
    w.write_str(&s[start..])?;
    w.write_char('"')
}

struct FieldsVisitor<'a, W: fmt::Write> {
    w: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> FieldsVisitor<'_, W> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !self.first {
            self.w.write_char(',')?;
        }
        self.first = false;
        write_json_str(self.w, field.name())?;
        self.w.write_char(':')
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
        let text = format!("{value:?}");
        self.put(field, |w| write_json_str(w, &text));
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
        fields.record(&mut Remove(&mut current.fields));
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

/// Removes the members of the fields it visits from stored span fields.
struct Remove<'a>(&'a mut String);

impl Remove<'_> {
    fn remove(&mut self, field: &Field) {
        let s = &mut *self.0;
        let mut key = String::with_capacity(field.name().len() + 3);
        if write_json_str(&mut key, field.name()).is_err() {
            return;
        }
        key.push(':');
        // A member starts the text or follows a comma. Inside a string value every `"` is
        // escaped (`\"`), so `,"key":` there is never a match.
        let start = if s.starts_with(&key) {
            Some(0)
        } else {
            s.find(&format!(",{key}"))
        };
        let Some(start) = start else {
            return;
        };
        let value = start + key.len() + usize::from(start > 0);
        let end = value_end(s, value);
        if start == 0 {
            // Also the comma after it, if another member follows.
            let end = if s[end..].starts_with(',') {
                end + 1
            } else {
                end
            };
            s.replace_range(..end, "");
        } else {
            s.replace_range(start..end, "");
        }
    }
}

/// Where the JSON scalar starting at `at` ends (a string, number, `true`, `false` or `null`:
/// what [`FieldsVisitor`] writes).
fn value_end(s: &str, at: usize) -> usize {
    let b = s.as_bytes();
    if b.get(at) == Some(&b'"') {
        let mut i = at + 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        b.len()
    } else {
        s[at..].find(',').map_or(s.len(), |i| at + i)
    }
}

impl Visit for Remove<'_> {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        self.remove(field);
    }
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
        let now = time::OffsetDateTime::now_utc();
        write!(
            w,
            "{{\"timestamp\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"{}\",\"fields\":{{",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.microsecond(),
            meta.level().as_str(),
        )?;
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
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
