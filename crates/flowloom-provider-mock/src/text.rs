//! Deterministic helpers: token estimates, hashing, embedding vectors, stream chunks.

use flowloom_core::LlmRequest;

/// The mock's token estimate for one text: `ceil(chars / 4)` with a minimum of 1, where
/// `chars` counts Unicode scalar values: the shared [`flowloom_core::estimate_text_tokens`],
/// floored at 1 because a mock answer always reports at least one token.
///
/// ```
/// use flowloom_provider_mock::estimate_tokens;
/// assert_eq!(estimate_tokens(""), 1);
/// assert_eq!(estimate_tokens("abcd"), 1);
/// assert_eq!(estimate_tokens("abcde"), 2);
/// assert_eq!(estimate_tokens("héllo wörld"), 3); // 11 characters
/// ```
pub fn estimate_tokens(text: &str) -> u64 {
    flowloom_core::estimate_text_tokens(text).max(1)
}

/// [`flowloom_core::tokens::estimate_tokens_for_chars`], with a minimum of 1.
pub(crate) fn chars_to_tokens(chars: u64) -> u64 {
    flowloom_core::tokens::estimate_tokens_for_chars(chars).max(1)
}

/// Prompt tokens of a request: the characters of every message's content, summed, then
/// `ceil(chars / 4)` with a minimum of 1. This is the usage the mock *reports*, as a provider
/// does after a call, so it keeps its documented numbers and leaves out the per-message
/// framing that the pre-call estimate `LlmRequest::estimated_prompt_tokens` adds.
pub(crate) fn prompt_tokens(req: &LlmRequest) -> u64 {
    let chars: u64 = req
        .messages
        .iter()
        .map(|m| m.content.chars().count() as u64)
        .sum();
    chars_to_tokens(chars)
}

/// FNV-1a, 64 bits: stable across platforms, versions and runs.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A unit-length vector of `dims` components derived from the hash of `text` alone.
pub(crate) fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes());
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            // 24 random bits mapped onto [-1, 1).
            let bits = (splitmix64(&mut state) >> 40) as f32;
            bits / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// Splits an answer into word chunks whose concatenation is the answer: each chunk is a word
/// with the whitespace that follows it.
pub(crate) fn word_chunks(text: &str) -> Vec<String> {
    text.split_inclusive(char::is_whitespace)
        .fold(Vec::new(), |mut chunks: Vec<String>, piece| {
            // Runs of whitespace join the chunk before them instead of making empty words.
            match chunks.last_mut() {
                Some(last) if piece.trim().is_empty() => last.push_str(piece),
                _ => chunks.push(piece.to_owned()),
            }
            chunks
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_rebuild_the_text() {
        for t in ["", "one", "one two  three\n four ", "  lead", "a\tb"] {
            let c = word_chunks(t);
            assert_eq!(c.concat(), t, "{t:?}");
        }
        assert_eq!(word_chunks("hello big world"), ["hello ", "big ", "world"]);
    }

    #[test]
    fn embedding_is_unit_and_deterministic() {
        let a = embedding("hello", 16);
        assert_eq!(a, embedding("hello", 16));
        assert_ne!(a, embedding("hellp", 16));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
    }
}
