//! Splitting text into chunks counted in tokens, and formatting embeddings output.
//!
//! Tokens are counted with the `cl100k_base` encoding (the one OpenAI's embedding models
//! use), embedded in `tiktoken-rs`: nothing is downloaded.
//!
//! - `fixed`: windows of `max_chunk_size` tokens; each window starts `max_chunk_size -
//!   overlap` tokens after the one before.
//! - `sentence` / `paragraph`: the text is split at sentence ends (`.`, `!`, `?` followed by
//!   white space, or a line break) or at blank lines; units are packed greedily into chunks of
//!   at most `max_chunk_size` tokens; a unit longer than that is split as `fixed`. With
//!   `overlap`, a chunk starts with the trailing units of the chunk before whose tokens fit in
//!   `overlap`.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Value, json};
use tiktoken_rs::CoreBPE;

use super::model::{ChunkStrategy, OutputFormat};

fn bpe() -> Result<&'static CoreBPE, String> {
    static BPE: OnceLock<Result<CoreBPE, String>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| format!("the tokenizer could not be loaded: {e}"))
}

/// The number of `cl100k_base` tokens in `text`.
pub fn count_tokens(text: &str) -> Result<usize, String> {
    Ok(bpe()?.encode_with_special_tokens(text).len())
}

/// One chunk of one input text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    /// Which input text it comes from (0-based).
    pub input: usize,
    /// Its position among that text's chunks (0-based).
    pub index: usize,
    /// The text.
    pub text: String,
    /// Its token count.
    pub tokens: usize,
}

/// Splits `text` by `strategy` (`None`: the whole text is one chunk).
pub fn chunk_text(
    input: usize,
    text: &str,
    strategy: Option<ChunkStrategy>,
    max_tokens: usize,
    overlap: usize,
) -> Result<Vec<Chunk>, String> {
    let bpe = bpe()?;
    let max_tokens = max_tokens.max(1);
    let overlap = overlap.min(max_tokens - 1);
    let texts: Vec<String> = match strategy {
        None => vec![text.to_owned()],
        Some(ChunkStrategy::Fixed) => fixed(bpe, text, max_tokens, overlap),
        Some(ChunkStrategy::Sentence) => pack(bpe, &sentences(text), max_tokens, overlap, " "),
        Some(ChunkStrategy::Paragraph) => pack(bpe, &paragraphs(text), max_tokens, overlap, "\n\n"),
    };
    Ok(texts
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .enumerate()
        .map(|(index, text)| Chunk {
            input,
            index,
            tokens: bpe.encode_with_special_tokens(&text).len(),
            text,
        })
        .collect())
}

fn decode(bpe: &CoreBPE, tokens: &[u32]) -> String {
    // A window may end inside a multi-byte character: shorten it by a token or two.
    for cut in 0..4.min(tokens.len()) {
        if let Ok(s) = bpe.decode(tokens[..tokens.len() - cut].to_vec()) {
            return s;
        }
    }
    String::from_utf8_lossy(
        &tokens
            .iter()
            .flat_map(|t| bpe.decode(vec![*t]).unwrap_or_default().into_bytes())
            .collect::<Vec<u8>>(),
    )
    .into_owned()
}

fn fixed(bpe: &CoreBPE, text: &str, max: usize, overlap: usize) -> Vec<String> {
    let tokens = bpe.encode_with_special_tokens(text);
    let step = max - overlap;
    let mut out = Vec::new();
    let mut start = 0;
    while start < tokens.len() {
        let end = (start + max).min(tokens.len());
        out.push(decode(bpe, &tokens[start..end]));
        if end == tokens.len() {
            break;
        }
        start += step;
    }
    out
}

/// Sentences: split after `.`, `!` or `?` followed by white space, and at line breaks.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_owned());
            }
            cur.clear();
            continue;
        }
        cur.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_owned());
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// Paragraphs: split at blank lines.
pub fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(cur.join("\n").trim().to_owned());
                cur.clear();
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur.join("\n").trim().to_owned());
    }
    out
}

fn pack(bpe: &CoreBPE, units: &[String], max: usize, overlap: usize, sep: &str) -> Vec<String> {
    // Units longer than `max` are split as fixed windows first.
    let mut parts: Vec<(String, usize)> = Vec::new();
    for u in units {
        let n = bpe.encode_with_special_tokens(u).len();
        if n > max {
            for piece in fixed(bpe, u, max, 0) {
                let k = bpe.encode_with_special_tokens(&piece).len();
                parts.push((piece, k));
            }
        } else {
            parts.push((u.clone(), n));
        }
    }
    let sep_tokens = bpe.encode_with_special_tokens(sep).len();
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new(); // indices into parts
    let mut cur_tokens = 0usize;
    let mut i = 0;
    while i < parts.len() {
        let n = parts[i].1;
        let extra = if cur.is_empty() { n } else { n + sep_tokens };
        if cur.is_empty() || cur_tokens + extra <= max {
            cur.push(i);
            cur_tokens += extra;
            i += 1;
            continue;
        }
        out.push(
            cur.iter()
                .map(|&k| parts[k].0.as_str())
                .collect::<Vec<_>>()
                .join(sep),
        );
        // Overlap: trailing units of this chunk that fit in `overlap` tokens (and leave room).
        let mut carry: Vec<usize> = Vec::new();
        let mut carried = 0usize;
        for &k in cur.iter().rev() {
            let add = parts[k].1 + if carry.is_empty() { 0 } else { sep_tokens };
            if carried + add > overlap
                || carried + add + n + sep_tokens > max
                || carry.len() + 1 >= cur.len()
            {
                break;
            }
            carry.insert(0, k);
            carried += add;
        }
        cur = carry;
        cur_tokens = carried;
    }
    if !cur.is_empty() {
        out.push(
            cur.iter()
                .map(|&k| parts[k].0.as_str())
                .collect::<Vec<_>>()
                .join(sep),
        );
    }
    out
}

/// Formats chunks and their vectors.
///
/// - `json`: `{"model", "provider", "dimensions", "count", "chunks": [{"input", "index",
///   "text", "tokens", "embedding"}], "usage"}`; without metadata `chunks` holds only
///   `embedding`s.
/// - `csv`: a header, then one row per chunk: `input,index,tokens,text,d0,d1,...` (with
///   metadata) or `d0,d1,...`. Returned as text.
/// - `compact`: a JSON array of the vectors.
pub fn format_output(
    format: OutputFormat,
    chunks: &[Chunk],
    vectors: &[Vec<f32>],
    model: &str,
    provider: &str,
    usage: Option<&flowloom_core::TokenUsage>,
    include_metadata: bool,
) -> Value {
    let dims = vectors.first().map(Vec::len).unwrap_or(0);
    match format {
        OutputFormat::Compact => json!(vectors),
        OutputFormat::Json => {
            let items: Vec<Value> = chunks
                .iter()
                .zip(vectors)
                .map(|(c, v)| {
                    if include_metadata {
                        json!({"input": c.input, "index": c.index, "text": c.text, "tokens": c.tokens, "embedding": v})
                    } else {
                        json!({"embedding": v})
                    }
                })
                .collect();
            let mut doc = json!({
                "model": model,
                "provider": provider,
                "dimensions": dims,
                "count": items.len(),
                "chunks": items,
            });
            if let (Some(u), Some(obj)) = (usage, doc.as_object_mut()) {
                obj.insert("usage".into(), json!(u));
            }
            doc
        }
        OutputFormat::Csv => {
            let mut out = String::new();
            let dim_cols: Vec<String> = (0..dims).map(|d| format!("d{d}")).collect();
            if include_metadata {
                out.push_str("input,index,tokens,text");
                for c in &dim_cols {
                    out.push(',');
                    out.push_str(c);
                }
            } else {
                out.push_str(&dim_cols.join(","));
            }
            out.push('\n');
            for (c, v) in chunks.iter().zip(vectors) {
                let nums: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                if include_metadata {
                    out.push_str(&format!(
                        "{},{},{},\"{}\"",
                        c.input,
                        c.index,
                        c.tokens,
                        c.text.replace('"', "\"\"")
                    ));
                    for n in &nums {
                        out.push(',');
                        out.push_str(n);
                    }
                } else {
                    out.push_str(&nums.join(","));
                }
                out.push('\n');
            }
            Value::String(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_respect_size_and_overlap() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let total = count_tokens(text).unwrap();
        let chunks = chunk_text(0, text, Some(ChunkStrategy::Fixed), 5, 2).unwrap();
        assert!(chunks.iter().all(|c| c.tokens <= 5), "{chunks:?}");
        // Windows start every 3 tokens: ceil((total - 5) / 3) + 1 windows.
        assert_eq!(chunks.len(), (total - 5).div_ceil(3) + 1);
        assert!(chunks[1].text.starts_with(" four"), "{:?}", chunks[1].text);
    }

    #[test]
    fn sentences_pack_up_to_the_limit_with_whole_sentence_overlap() {
        let text = "The cat sat. The dog ran! Did it rain? It did.";
        assert_eq!(sentences(text).len(), 4);
        // "The cat sat." and "The dog ran!" are 4 tokens each, the joining space 1.
        let chunks = chunk_text(0, text, Some(ChunkStrategy::Sentence), 9, 0).unwrap();
        assert!(chunks.iter().all(|c| c.tokens <= 9), "{chunks:?}");
        assert_eq!(chunks[0].text, "The cat sat. The dog ran!");
        assert_eq!(chunks[1].text, "Did it rain? It did.");
        let with_overlap = chunk_text(0, text, Some(ChunkStrategy::Sentence), 13, 4).unwrap();
        assert!(
            with_overlap[1].text.starts_with("The dog ran!"),
            "{with_overlap:?}"
        );
    }

    #[test]
    fn paragraphs_split_at_blank_lines() {
        let text = "First para\nstill first.\n\nSecond para.\n\n\nThird.";
        assert_eq!(
            paragraphs(text),
            vec!["First para\nstill first.", "Second para.", "Third."]
        );
        let chunks = chunk_text(0, text, Some(ChunkStrategy::Paragraph), 3, 0).unwrap();
        assert!(chunks.len() >= 3);
    }

    #[test]
    fn csv_quotes_text() {
        let chunks = vec![Chunk {
            input: 0,
            index: 0,
            text: "say \"hi\", ok".into(),
            tokens: 4,
        }];
        let v = format_output(
            OutputFormat::Csv,
            &chunks,
            &[vec![0.5, 1.0]],
            "m",
            "p",
            None,
            true,
        );
        assert_eq!(
            v.as_str().unwrap(),
            "input,index,tokens,text,d0,d1\n0,0,4,\"say \"\"hi\"\", ok\",0.5,1\n"
        );
    }
}
