//! Consensus voting: how answers are normalized, grouped and judged against a threshold.
//!
//! # Normalization rule
//! Two answers agree when their normalized forms are equal. An answer is normalized by:
//! 1. taking its first non-empty line (models often explain after the verdict);
//! 2. removing Markdown emphasis and quoting characters (`*`, `_`, `` ` ``, `"`, `'`, `#`, `>`)
//!    from both ends;
//! 3. lower-casing it and collapsing runs of whitespace into one space;
//! 4. removing trailing punctuation (`.`, `!`, `?`, `,`, `;`, `:`).
//!
//! So `"**YES**."`, `"yes"` and `"Yes!\nThe code is safe."` all agree.
//!
//! # Thresholds
//! The denominator is the number of executions configured, so a failed execution counts
//! against agreement: `unanimous` needs all of them, `majority` more than half, `2/3` at
//! least two thirds (rounded up).
//!
//! # Ties
//! When several answers share the highest count, the one given first in the order of
//! `executions` wins; the result says `tie: true` and lists the tied answers.

use serde::Serialize;

use flowloom_core::TokenUsage;

use super::model::Threshold;

/// Normalizes an answer so that agreeing answers compare equal: its first non-empty line,
/// with Markdown emphasis and quoting characters (`*`, `_`, `` ` ``, `"`, `'`, `#`, `>`)
/// removed from both ends, lower-cased, runs of whitespace collapsed into one space, and
/// trailing punctuation (`.`, `!`, `?`, `,`, `;`, `:`) removed.
///
/// ```
/// use flowloom_engine::yaml::normalize_answer;
/// assert_eq!(normalize_answer("**YES**."), "yes");
/// assert_eq!(normalize_answer("  Yes!\nBecause it is safe."), "yes");
/// assert_eq!(normalize_answer("`No`"), "no");
/// ```
pub fn normalize_answer(answer: &str) -> String {
    let line = answer
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let strip: &[char] = &['*', '_', '`', '"', '\'', '#', '>', ' '];
    let mut s = line.trim_matches(strip).to_lowercase();
    s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = s.trim_end_matches(['.', '!', '?', ',', ';', ':']);
    s.trim_matches(strip).to_owned()
}

/// One execution's outcome, as recorded in the result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vote {
    /// Provider asked.
    pub provider: String,
    /// Model asked.
    pub model: String,
    /// The answer's text, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The normalized answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized: Option<String>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its token usage, where reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// The model that actually answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Latency in milliseconds.
    pub latency_ms: f64,
}

/// The outcome of a consensus vote (the step's output when it passes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The winning answer (the text of the first execution that gave it).
    pub answer: String,
    /// Its normalized form.
    pub normalized: String,
    /// Whether the threshold was met.
    pub passed: bool,
    /// Agreeing executions / executions configured.
    pub agreement: f64,
    /// How many agreed on `answer`.
    pub agreeing: usize,
    /// How many executions were configured.
    pub total: usize,
    /// How many answered.
    pub succeeded: usize,
    /// How many agreeing answers the threshold needs.
    pub required: usize,
    /// The threshold.
    pub require: &'static str,
    /// True when other answers had as many votes and the tie-break chose.
    pub tie: bool,
    /// The normalized answers that tied, in execution order (empty without a tie).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tied: Vec<String>,
    /// Every execution, in order.
    pub executions: Vec<Vote>,
    /// Usage summed over every execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

/// Tallies `votes` against `require`.
pub fn tally(votes: Vec<Vote>, require: Threshold) -> Verdict {
    let total = votes.len();
    let required = require.required(total);
    // (normalized, count, first index)
    let mut groups: Vec<(String, usize, usize)> = Vec::new();
    for (i, v) in votes.iter().enumerate() {
        if let Some(n) = &v.normalized {
            match groups.iter_mut().find(|g| g.0 == *n) {
                Some(g) => g.1 += 1,
                None => groups.push((n.clone(), 1, i)),
            }
        }
    }
    let best = groups.iter().map(|g| g.1).max().unwrap_or(0);
    let top: Vec<&(String, usize, usize)> = groups.iter().filter(|g| g.1 == best).collect();
    let winner = top.iter().min_by_key(|g| g.2).copied();
    let (answer, normalized) = match winner {
        Some(g) => (votes[g.2].answer.clone().unwrap_or_default(), g.0.clone()),
        None => (String::new(), String::new()),
    };
    let tie = top.len() > 1;
    let usage = TokenUsage::sum(votes.iter().filter_map(|v| v.usage.as_ref()));
    Verdict {
        answer,
        normalized,
        passed: best >= required && best > 0,
        agreement: if total == 0 {
            0.0
        } else {
            best as f64 / total as f64
        },
        agreeing: best,
        total,
        succeeded: votes.iter().filter(|v| v.answer.is_some()).count(),
        required,
        require: require.as_str(),
        tie,
        tied: if tie {
            top.iter().map(|g| g.0.clone()).collect()
        } else {
            Vec::new()
        },
        executions: votes,
        usage,
    }
}

impl Verdict {
    /// Why the vote failed, for the step's error; `None` when it passed.
    pub fn failure(&self) -> Option<String> {
        if self.passed {
            return None;
        }
        let failures: Vec<String> = self
            .executions
            .iter()
            .filter_map(|v| {
                v.error
                    .as_ref()
                    .map(|e| format!("{}/{}: {e}", v.provider, v.model))
            })
            .collect();
        let failed = if failures.is_empty() {
            String::new()
        } else {
            format!("; failed executions: {}", failures.join("; "))
        };
        if self.succeeded < self.required {
            Some(format!(
                "consensus impossible: only {} of {} executions succeeded, and `{}` needs {} agreeing answers{failed}",
                self.succeeded, self.total, self.require, self.required
            ))
        } else {
            let answers: Vec<String> = self
                .executions
                .iter()
                .filter_map(|v| {
                    v.normalized
                        .as_ref()
                        .map(|n| format!("{}/{}: {n:?}", v.provider, v.model))
                })
                .collect();
            Some(format!(
                "no consensus: the most common answer {:?} had {} of {} votes, and `{}` needs {} (answers: {}){failed}",
                self.normalized,
                self.agreeing,
                self.total,
                self.require,
                self.required,
                answers.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &str, a: Option<&str>) -> Vote {
        Vote {
            provider: p.into(),
            model: "m".into(),
            answer: a.map(str::to_owned),
            normalized: a.map(normalize_answer),
            error: if a.is_none() {
                Some("timed out".into())
            } else {
                None
            },
            usage: None,
            answered_by: None,
            latency_ms: 0.0,
        }
    }

    #[test]
    fn thresholds_count_against_all_executions() {
        assert_eq!(Threshold::Unanimous.required(3), 3);
        assert_eq!(Threshold::Majority.required(3), 2);
        assert_eq!(Threshold::Majority.required(4), 3);
        assert_eq!(Threshold::TwoThirds.required(3), 2);
        assert_eq!(Threshold::TwoThirds.required(4), 3);
        assert_eq!(Threshold::TwoThirds.required(2), 2);
    }

    #[test]
    fn two_of_three_pass_with_a_dissent() {
        let r = tally(
            vec![
                v("a", Some("YES")),
                v("b", Some("no")),
                v("c", Some("Yes.")),
            ],
            Threshold::TwoThirds,
        );
        assert!(r.passed);
        assert_eq!(r.normalized, "yes");
        assert_eq!(r.answer, "YES");
        assert_eq!(r.agreeing, 2);
        assert!((r.agreement - 2.0 / 3.0).abs() < 1e-9);
        assert!(!r.tie);
        let r = tally(
            vec![
                v("a", Some("YES")),
                v("b", Some("no")),
                v("c", Some("Yes.")),
            ],
            Threshold::Unanimous,
        );
        assert!(!r.passed);
        assert!(r.failure().unwrap().contains("no consensus"));
    }

    #[test]
    fn ties_break_by_execution_order_and_are_reported() {
        let r = tally(
            vec![
                v("a", Some("no")),
                v("b", Some("yes")),
                v("c", Some("YES")),
                v("d", Some("No")),
            ],
            Threshold::Majority,
        );
        assert!(r.tie);
        assert_eq!(r.normalized, "no");
        assert_eq!(r.tied, vec!["no", "yes"]);
        assert!(!r.passed, "2 of 4 is not a majority");
    }

    #[test]
    fn too_few_successes_say_so() {
        let r = tally(
            vec![v("a", Some("yes")), v("b", None), v("c", None)],
            Threshold::Majority,
        );
        assert!(!r.passed);
        let f = r.failure().unwrap();
        assert!(f.contains("only 1 of 3 executions succeeded"), "{f}");
        assert!(f.contains("b/m: timed out"), "{f}");
    }
}
