//! A fast reader for the usual shape of a `chat.completion` body.
//!
//! It reads the JSON text once, keeps only the fields [`Completion`] holds and skips the rest
//! (checking that it is valid JSON), which costs a fraction of the general `serde_json` path.
//! It never decides anything on its own: on whatever it does not handle (an unknown type for a
//! kept field, a duplicate field, deep nesting, a malformed number or escape...) it gives up
//! with `None`, and the caller decodes the body with `serde_json` as before, which then gives the
//! answer or the exact error. A `Some` is always what `serde_json::from_str` would have
//! produced; the tests check this on many bodies, valid and broken.

use std::borrow::Cow;

use crate::chat::{
    Completion, CompletionDetails, PromptDetails, WireChoice, WireFunction, WireMessageOut,
    WireToolCall, WireUsage,
};

/// Nesting deeper than this is left to `serde_json`.
const MAX_DEPTH: u32 = 64;

/// Reads a chat completion body, or gives up (`None`) and leaves it to `serde_json`.
pub(crate) fn chat_completion(text: &str) -> Option<Completion<'_>> {
    let mut p = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.open(b'{')?;
    let mut id = None;
    let mut model = None;
    let mut choices = None;
    let mut usage = None;
    p.members(|p, key| match key {
        "id" => once(&mut id, p.opt_string()?.map(Cow::into_owned)),
        "model" => once(&mut model, p.opt_string()?),
        "choices" => once(&mut choices, p.choices()?),
        "usage" => once(&mut usage, p.opt_usage()?),
        _ => p.skip_value(),
    })?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return None;
    }
    Some(Completion {
        id: id.flatten(),
        model: model.flatten(),
        choice: choices.flatten(),
        usage: usage.flatten(),
    })
}

/// Sets a field seen for the first time; a second time is a duplicate (`serde` refuses it).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn skip_ws(&mut self) {
        // Compact JSON has none: one comparison then.
        if self.bytes.get(self.pos).is_some_and(|&b| b > b' ') {
            return;
        }
        self.skip_ws_slow();
    }

    #[inline(never)]
    fn skip_ws_slow(&mut self) {
        let mut pos = self.pos;
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(pos) {
            pos += 1;
        }
        self.pos = pos;
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        if b > b' ' {
            return Some(b);
        }
        self.skip_ws_slow();
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes `byte` after whitespace.
    #[inline(always)]
    fn open(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Consumes `null` if it is next; false (nothing consumed) for any other value.
    #[inline(always)]
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null")?;
        Some(true)
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// Calls `f` with each member's key; `f` consumes the value. The `{` is already read.
    fn members(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.open(b'"')?;
                let key = self.plain_string()?;
                if self.bytes.get(self.pos) == Some(&b':') {
                    self.pos += 1;
                } else {
                    self.open(b':')?;
                }
                f(self, key)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Calls `f` for each element; `f` consumes it. The `[` is already read.
    fn elements(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            loop {
                f(self)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Advances over string bytes that need no attention; stops at `"`, `\` or a control
    /// character (or the end).
    #[inline(always)]
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        let mut pos = self.pos;
        // Eight bytes at a time: a byte is flagged when it equals `"` or `\` (zero after the
        // xor) or is below 0x20. A borrow can flag a byte above a flagged one, never below,
        // so the lowest flagged byte is the one sought.
        while let Some(word) = self.bytes.get(pos..pos + 8) {
            let Ok(word) = <[u8; 8]>::try_from(word) else {
                break;
            };
            let w = u64::from_le_bytes(word);
            let quote = w ^ (ONES * u64::from(b'"'));
            let backslash = w ^ (ONES * u64::from(b'\\'));
            let flags = ((quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (w.wrapping_sub(ONES * 0x20) & !w))
                & HIGHS;
            if flags != 0 {
                self.pos = pos + (flags.trailing_zeros() / 8) as usize;
                return;
            }
            pos += 8;
        }
        while let Some(&b) = self.bytes.get(pos) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            pos += 1;
        }
        self.pos = pos;
    }

    /// A string without escapes (keys); the opening `"` is already read.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.skip_plain();
        if self.next()? != b'"' {
            return None;
        }
        self.text.get(start..self.pos - 1)
    }

    /// A string value; the opening `"` is already read. Borrowed unless it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos;
        self.skip_plain();
        match self.next()? {
            b'"' => Some(Cow::Borrowed(self.text.get(start..self.pos - 1)?)),
            b'\\' => self.escaped_string(start).map(Cow::Owned),
            _ => None,
        }
    }

    /// The rest of a string with escapes, from `start`; the first `\` is already read.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> Option<String> {
        let mut out = String::from(self.text.get(start..self.pos - 1)?);
        loop {
            self.escape(&mut out)?;
            let run = self.pos;
            self.skip_plain();
            out.push_str(self.text.get(run..self.pos)?);
            match self.next()? {
                b'"' => return Some(out),
                b'\\' => {}
                _ => return None,
            }
        }
    }

    /// One escape after its `\`, appended to `out` as `serde_json` decodes it into a string.
    fn escape(&mut self, out: &mut String) -> Option<()> {
        let c = match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        self.literal(b"\\u")?;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return None;
                        }
                        0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return None,
                    other => u32::from(other),
                };
                char::from_u32(code)?
            }
            _ => return None,
        };
        out.push(c);
        Some(())
    }

    fn hex4(&mut self) -> Option<u16> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let d = char::from(self.next()?).to_digit(16)?;
            n = (n << 4) | u16::try_from(d).ok()?;
        }
        Some(n)
    }

    /// Skips a string; the opening `"` is already read. Checks escapes as `serde_json` does
    /// for a value it ignores.
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.skip_plain();
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        self.hex4()?;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Skips any JSON value, checking its grammar.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.skip_string()
            }
            b'{' => {
                self.pos += 1;
                self.members(|p, _| p.skip_value())
            }
            b'[' => {
                self.pos += 1;
                self.elements(Self::skip_value)
            }
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => None,
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self) -> Option<()> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.next()? {
            b'0' => {
                if let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A non-negative integer that fits `u64`, written plainly (anything else: give up).
    fn u64(&mut self) -> Option<u64> {
        self.skip_ws();
        let mut pos = self.pos;
        let first = *self.bytes.get(pos)?;
        if !first.is_ascii_digit() {
            return None;
        }
        pos += 1;
        let mut n = u64::from(first - b'0');
        while let Some(&d) = self.bytes.get(pos) {
            if !d.is_ascii_digit() {
                break;
            }
            // A leading zero followed by digits is not JSON.
            if n == 0 && pos == self.pos + 1 {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            pos += 1;
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(pos) {
            return None;
        }
        self.pos = pos;
        Some(n)
    }

    fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.null()? {
            return Some(None);
        }
        self.u64().map(Some)
    }

    /// A string (`Some(Some)`), `null` (`Some(None)`) or give up.
    #[inline(always)]
    fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.open(b'"')?;
        self.string().map(Some)
    }

    /// A string that is not optional (`null` gives up, as `serde` refuses it).
    fn owned_string(&mut self) -> Option<String> {
        self.open(b'"')?;
        self.string().map(Cow::into_owned)
    }

    /// The first of the choices (all are read and checked, as `serde` reads them).
    fn choices(&mut self) -> Option<Option<WireChoice<'a>>> {
        self.open(b'[')?;
        let mut first = None;
        self.elements(|p| {
            let choice = p.choice()?;
            if first.is_none() {
                first = Some(choice);
            }
            Some(())
        })?;
        Some(first)
    }

    fn choice(&mut self) -> Option<WireChoice<'a>> {
        self.open(b'{')?;
        let mut message = None;
        let mut finish_reason = None;
        self.members(|p, key| match key {
            "message" => once(&mut message, p.opt_message()?),
            "finish_reason" => once(&mut finish_reason, p.opt_string()?),
            _ => p.skip_value(),
        })?;
        Some(WireChoice {
            message: message.flatten(),
            finish_reason: finish_reason.flatten(),
        })
    }

    fn opt_message(&mut self) -> Option<Option<WireMessageOut>> {
        if self.null()? {
            return Some(None);
        }
        self.open(b'{')?;
        let mut content = None;
        let mut refusal = None;
        let mut tool_calls = None;
        self.members(|p, key| match key {
            "content" => once(&mut content, p.opt_string()?.map(Cow::into_owned)),
            "refusal" => once(&mut refusal, p.opt_string()?.map(Cow::into_owned)),
            "tool_calls" => once(&mut tool_calls, p.tool_calls()?),
            _ => p.skip_value(),
        })?;
        Some(Some(WireMessageOut {
            content: content.flatten(),
            refusal: refusal.flatten(),
            tool_calls: tool_calls.unwrap_or_default(),
        }))
    }

    #[inline(never)]
    fn tool_calls(&mut self) -> Option<Vec<WireToolCall>> {
        self.open(b'[')?;
        let mut out = Vec::new();
        self.elements(|p| {
            p.open(b'{')?;
            let mut id = None;
            let mut function = None;
            p.members(|p, key| match key {
                "id" => once(&mut id, p.owned_string()?),
                "function" => once(&mut function, p.function()?),
                _ => p.skip_value(),
            })?;
            out.push(WireToolCall {
                id: id.unwrap_or_default(),
                // A call without `function` is an error to `serde`: give up.
                function: function?,
            });
            Some(())
        })?;
        Some(out)
    }

    fn function(&mut self) -> Option<WireFunction> {
        self.open(b'{')?;
        let mut name = None;
        let mut arguments = None;
        self.members(|p, key| match key {
            "name" => once(&mut name, p.owned_string()?),
            "arguments" => once(&mut arguments, p.owned_string()?),
            _ => p.skip_value(),
        })?;
        Some(WireFunction {
            name: name.unwrap_or_default(),
            arguments: arguments.unwrap_or_default(),
        })
    }

    fn opt_usage(&mut self) -> Option<Option<WireUsage>> {
        if self.null()? {
            return Some(None);
        }
        self.open(b'{')?;
        let mut prompt = None;
        let mut completion = None;
        let mut total = None;
        let mut prompt_details = None;
        let mut completion_details = None;
        self.members(|p, key| match key {
            "prompt_tokens" => once(&mut prompt, p.u64()?),
            "completion_tokens" => once(&mut completion, p.u64()?),
            "total_tokens" => once(&mut total, p.opt_u64()?),
            "prompt_tokens_details" => once(
                &mut prompt_details,
                p.opt_details(|k| k == "cached_tokens")?,
            ),
            "completion_tokens_details" => once(
                &mut completion_details,
                p.opt_details(|k| k == "reasoning_tokens")?,
            ),
            _ => p.skip_value(),
        })?;
        Some(Some(WireUsage {
            prompt_tokens: prompt.unwrap_or_default(),
            completion_tokens: completion.unwrap_or_default(),
            total_tokens: total.flatten(),
            prompt_tokens_details: prompt_details
                .flatten()
                .map(|cached_tokens| PromptDetails { cached_tokens }),
            completion_tokens_details: completion_details
                .flatten()
                .map(|reasoning_tokens| CompletionDetails { reasoning_tokens }),
        }))
    }

    /// A details object (or `null`) of which only the count under the key `is_field` picks is
    /// kept: `Some(None)` for `null`, `Some(Some(count))` for an object.
    fn opt_details(&mut self, is_field: impl Fn(&str) -> bool) -> Option<Option<Option<u64>>> {
        if self.null()? {
            return Some(None);
        }
        self.open(b'{')?;
        let mut count = None;
        self.members(|p, key| {
            if is_field(key) {
                once(&mut count, p.opt_u64()?)
            } else {
                p.skip_value()
            }
        })?;
        Some(Some(count.flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::WireResponse;

    /// The fast reader's rule: a `Some` is exactly what `serde_json` gives, and whatever
    /// `serde_json` refuses is `None`. Returns whether the fast reader took the body.
    fn check(text: &str) -> bool {
        let fast = chat_completion(text);
        let slow = serde_json::from_str::<WireResponse<'_>>(text).map(Completion::from);
        match (&fast, &slow) {
            (Some(f), Ok(s)) => assert_eq!(f, s, "{text}"),
            (Some(f), Err(e)) => panic!("took what serde_json refuses ({e}): {text}\n{f:?}"),
            (None, _) => {}
        }
        fast.is_some()
    }

    const MOCK: &str = r#"{"id":"chatcmpl-mock-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Say hello in one short sentence, please.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":7,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"system_fingerprint":"fp_mock"}"#;

    /// Bodies the fast reader must take (and read as `serde_json` does).
    const TAKEN: &[&str] = &[
        MOCK,
        r#"{"choices":[{"message":{"content":"hi"}}]}"#,
        r#"{}"#,
        " \n\t{ \"id\" : null , \"model\" : null , \"choices\" : [ ] , \"usage\" : null } \r\n",
        r#"{"id":"c1","model":"o3","choices":[{"message":{"content":"hi"},"finish_reason":"length"}],
            "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}"#,
        r#"{"choices":[{"message":{"content":null,"refusal":"I can't"},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":\"a \\\"b\\\"\"}"}},
            {"type":"function","function":{}}]},"finish_reason":"tool_calls"}]}"#,
        r#"{"choices":[{"message":{"content":"line\nnext \"q\" \\ \/ \b\f\r\t tab \u00e9 \u4e2d \ud83d\ude00 é 中"}}]}"#,
        r#"{"model":"m\u002d1","choices":[{"finish_reason":"st\u006fp"},{"message":null},{}]}"#,
        r#"{"x":[1,-2,0,-0,3.25,-0.5e10,1E+2,2e-3,true,false,null,"s\"\\\u12ab",{},[],[[{"a":{"b":[]}}]]],"choices":[]}"#,
        r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":0,"total_tokens":null,
            "prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}"#,
        r#"{"usage":{"prompt_tokens_details":{},"completion_tokens_details":{"other":1}}}"#,
    ];

    /// Bodies `serde_json` refuses or reads otherwise, which the fast reader must leave.
    const LEFT: &[&str] = &[
        "",
        "   ",
        "[]",
        "null",
        r#"{"choices":[]"#,
        r#"{"choices":[]}x"#,
        r#"{"choices":[],}"#,
        r#"{"choices":[{"message":{"content":"hi"},}]}"#,
        r#"{"choices":[{"message":{"content":"hi"}},]}"#,
        r#"{"id":"a","id":"b"}"#,
        r#"{"choices":[],"choices":[]}"#,
        r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
        r#"{"id":5}"#,
        r#"{"model":true}"#,
        r#"{"choices":null}"#,
        r#"{"choices":{}}"#,
        r#"{"choices":[["x"]]}"#,
        r#"{"choices":[{"message":"x"}]}"#,
        r#"{"choices":[{},{"message":5}]}"#,
        r#"{"choices":[{"message":{"content":"a"}},{"finish_reason":1}]}"#,
        r#"{"choices":[{"message":{"content":5}}]}"#,
        r#"{"choices":[{"message":{"tool_calls":null}}]}"#,
        r#"{"choices":[{"message":{"tool_calls":[{"id":"c"}]}}]}"#,
        r#"{"choices":[{"message":{"tool_calls":[{"id":null,"function":{}}]}}]}"#,
        r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":null}}]}}]}"#,
        r#"{"choices":[{"message":{"content":"\ud800"}}]}"#,
        r#"{"choices":[{"message":{"content":"\udc00"}}]}"#,
        r#"{"choices":[{"message":{"content":"\ud800\u0041"}}]}"#,
        r#"{"choices":[{"message":{"content":"\x"}}]}"#,
        r#"{"choices":[{"message":{"content":"\u12"}}]}"#,
        "{\"choices\":[{\"message\":{\"content\":\"a\u{1}b\"}}]}",
        "{\"other\":\"a\nb\"}",
        r#"{"other":"\q"}"#,
        r#"{"other":"\u12g4"}"#,
        r#"{"usage":{"prompt_tokens":null}}"#,
        r#"{"usage":{"prompt_tokens":-1}}"#,
        r#"{"usage":{"prompt_tokens":-0}}"#,
        r#"{"usage":{"prompt_tokens":1.0}}"#,
        r#"{"usage":{"prompt_tokens":1e2}}"#,
        r#"{"usage":{"prompt_tokens":01}}"#,
        r#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
        r#"{"usage":{"total_tokens":"3"}}"#,
        r#"{"usage":{"prompt_tokens_details":{"cached_tokens":1.5}}}"#,
        r#"{"usage":[]}"#,
        r#"{"x":01}"#,
        r#"{"x":1.}"#,
        r#"{"x":.5}"#,
        r#"{"x":-}"#,
        r#"{"x":1e}"#,
        r#"{"x":+1}"#,
        r#"{"x":nul}"#,
        r#"{"x":True}"#,
        r#"{"x":[1 2]}"#,
        r#"{"x":{"a" 1}}"#,
        r#"{"x":{1:2}}"#,
        r#"{"x":'a'}"#,
        r#"{"x\u0041":1}"#,
    ];

    #[test]
    fn usual_bodies_are_read_as_serde_json_reads_them() {
        for body in TAKEN {
            assert!(check(body), "the fast reader left a usual body: {body}");
        }
        let deep = format!(
            r#"{{"x":{}1{},"choices":[]}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(check(&deep));
    }

    #[test]
    fn what_serde_json_refuses_or_reads_otherwise_is_left_to_it() {
        for body in LEFT {
            assert!(!check(body), "the fast reader took: {body}");
        }
        // Nesting past the limit goes to serde_json (which reads it).
        let deep = format!(
            r#"{{"x":{}1{},"choices":[]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(!check(&deep));
        assert!(serde_json::from_str::<WireResponse<'_>>(&deep).is_ok());
    }

    /// The word-wise scan finds a quote, backslash or control character at any offset, in
    /// kept and in skipped strings, short and long.
    #[test]
    fn special_characters_are_found_at_every_offset() {
        for len in 0..40 {
            for special in ["\\\"", "\\n", "\\u00e9", "\u{1}", "é", "\\\\"] {
                for at in 0..=len {
                    let text = format!("{}{special}{}", "a".repeat(at), "b".repeat(len - at));
                    let body = format!(
                        r#"{{"id":"{text}","skipped":"{text}","choices":[{{"message":{{"content":"{text}"}}}}]}}"#
                    );
                    let taken = check(&body);
                    assert_eq!(taken, special != "\u{1}", "{body}");
                }
            }
        }
    }

    /// Small random edits of the bodies above: whatever the fast reader takes, `serde_json`
    /// reads the same way.
    #[test]
    fn edited_bodies_never_disagree_with_serde_json() {
        const ALPHABET: &[char] = &[
            '{', '}', '[', ']', '"', ',', ':', '\\', '0', '1', '9', '-', '+', '.', 'e', 'E', 'n',
            'u', 'l', 't', 'r', 'f', 'a', 's', ' ', '\n', 'd', 'x', 'é', '\u{1}',
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut taken, mut total) = (0, 0);
        for body in TAKEN.iter().chain(LEFT) {
            for _ in 0..400 {
                let mut chars: Vec<char> = body.chars().collect();
                for _ in 0..=next(3) {
                    let at = next(chars.len() + 1);
                    match next(3) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 if at < chars.len() => chars[at] = ALPHABET[next(ALPHABET.len())],
                        _ => chars.insert(at, ALPHABET[next(ALPHABET.len())]),
                    }
                }
                let text: String = chars.into_iter().collect();
                total += 1;
                if check(&text) {
                    taken += 1;
                }
            }
        }
        // The edits must exercise both outcomes.
        assert!(taken > total / 20 && taken < total, "{taken} of {total}");
    }
}
