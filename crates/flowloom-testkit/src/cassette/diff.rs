//! Readable differences between a request and the recorded ones.

use std::fmt::Write as _;

use serde_json::Value;

/// One difference between a recorded request and the request made now.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Where, e.g. `messages[1].content` or `temperature`.
    pub path: String,
    /// The recorded value (`None` when the field is new).
    pub recorded: Option<Value>,
    /// The value now (`None` when the field is gone).
    pub now: Option<Value>,
}

impl FieldChange {
    /// A rough size of the change, used to pick the nearest recorded request: for texts, the
    /// lines changed plus how far apart the texts are (normalized Levenshtein).
    pub(crate) fn weight(&self) -> f64 {
        match (&self.recorded, &self.now) {
            (Some(Value::String(a)), Some(Value::String(b))) => {
                let lines = line_diff(a, b).iter().filter(|l| l.0 != ' ').count();
                lines as f64 + 1.0 - strsim::normalized_levenshtein(a, b)
            }
            _ => 2.0,
        }
    }
}

/// Every leaf difference between `recorded` and `now`, in document order.
pub fn changes(recorded: &Value, now: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", recorded, now, &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => walk(&join(path, k), va, vb, out),
                    None => out.push(FieldChange {
                        path: join(path, k),
                        recorded: Some(va.clone()),
                        now: None,
                    }),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(FieldChange {
                        path: join(path, k),
                        recorded: None,
                        now: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(&p, va, vb, out),
                    (va, vb) => out.push(FieldChange {
                        path: p,
                        recorded: va.cloned(),
                        now: vb.cloned(),
                    }),
                }
            }
        }
        _ if a == b => {}
        _ => out.push(FieldChange {
            path: path.to_owned(),
            recorded: Some(a.clone()),
            now: Some(b.clone()),
        }),
    }
}

/// A line diff of two texts: `(' ', line)` kept, `('-', line)` only recorded, `('+', line)`
/// only now. Longest-common-subsequence over lines; prompts are short.
pub fn line_diff<'a>(recorded: &'a str, now: &'a str) -> Vec<(char, &'a str)> {
    let a: Vec<&str> = recorded.lines().collect();
    let b: Vec<&str> = now.lines().collect();
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = LCS length of a[i..] and b[j..]
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n.max(m));
    while i < n && j < m {
        if a[i] == b[j] {
            out.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(('-', a[i]));
            i += 1;
        } else {
            out.push(('+', b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| ('-', *l)));
    out.extend(b[j..].iter().map(|l| ('+', *l)));
    out
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}… ({} chars)", s.chars().count())
    } else {
        s
    }
}

/// Renders changes as an indented, human-readable list: scalars as `recorded X, now Y`,
/// multi-line texts as a line diff (`-` recorded, `+` now).
pub fn render_changes(changes: &[FieldChange]) -> String {
    let mut out = String::new();
    for c in changes {
        match (&c.recorded, &c.now) {
            (Some(Value::String(a)), Some(Value::String(b)))
                if a.contains('\n') || b.contains('\n') || a.len() + b.len() > 60 =>
            {
                let _ = writeln!(out, "  {}: (- recorded, + now)", c.path);
                for (tag, line) in line_diff(a, b) {
                    let _ = writeln!(out, "    {tag} {line}");
                }
            }
            (Some(a), Some(b)) => {
                let _ = writeln!(out, "  {}: recorded {}, now {}", c.path, short(a), short(b));
            }
            (Some(a), None) => {
                let _ = writeln!(out, "  {}: recorded {}, now absent", c.path, short(a));
            }
            (None, Some(b)) => {
                let _ = writeln!(out, "  {}: not recorded, now {}", c.path, short(b));
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_each_differing_leaf() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "temperature": 0.2});
        let b = json!({"model": "m", "messages": [{"role": "user", "content": "b"}], "temperature": 0.7, "tools": []});
        let c = changes(&a, &b);
        let paths: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["messages[0].content", "temperature", "tools"]);
        let text = render_changes(&c);
        assert!(
            text.contains("messages[0].content: recorded \"a\", now \"b\""),
            "{text}"
        );
        assert!(
            text.contains("temperature: recorded 0.2, now 0.7"),
            "{text}"
        );
        assert!(text.contains("tools: not recorded, now []"), "{text}");
    }

    #[test]
    fn line_diff_keeps_common_lines() {
        let d = line_diff("one\ntwo\nthree", "one\n2\nthree\nfour");
        assert_eq!(
            d,
            [
                (' ', "one"),
                ('-', "two"),
                ('+', "2"),
                (' ', "three"),
                ('+', "four")
            ]
        );
    }

    #[test]
    fn equal_values_have_no_changes() {
        let a = json!({"x": [1, {"y": "z"}]});
        assert!(changes(&a, &a.clone()).is_empty());
    }
}
