//! Abort rules: the sink-side fault injector.
//!
//! A TOML file of `[[rule]]` tables. Each rule has a trigger and an
//! [`Action`] taken at a phase-1 vote:
//!
//! ```toml
//! [[rule]]
//! kind = "txnid-regex"      # regex searched in the PHASE1 txn_id
//! pattern = ":c_id=3$"
//! vote = false              # false (default): force this vote to abort
//! close_before = false      # close without sending the vote (reply lost)
//! close_after = false       # close right after sending the vote
//!
//! [[rule]]
//! kind = "local-txn"        # the n-th PHASE1 this sink process receives
//! n = 5
//! worker = "initializer"    # optional: only this worker's connections
//!
//! [[rule]]
//! kind = "stream-content"   # regex searched in stream-1 payload bytes;
//! pattern = "poison"        # acts at this worker's next vote
//! ```
//!
//! A rule can only make a vote *worse*: `vote = false` forces an abort,
//! `vote = true` leaves the vote to the sink's own checks and only applies
//! the close flags. When several rules fire for one vote, votes are ANDed
//! and close flags ORed.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// What a fired rule does to the vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// `false` forces abort; `true` leaves the vote alone.
    pub vote: bool,
    /// Close the connection without sending the vote.
    pub close_before: bool,
    /// Close the connection right after sending the vote.
    pub close_after: bool,
}

impl Action {
    /// Combines two fired rules: abort wins, close flags add up.
    pub fn merge(self, other: Action) -> Action {
        Action {
            vote: self.vote && other.vote,
            close_before: self.close_before || other.close_before,
            close_after: self.close_after || other.close_after,
        }
    }
}

/// What makes a rule fire.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// The PHASE1 transaction id matches.
    TxnId(regex::Regex),
    /// The sink process's PHASE1 counter (all workers, from 1) equals n.
    LocalTxn(u64),
    /// A stream-1 payload matches; acts at the next vote.
    StreamContent(regex::bytes::Regex),
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Line of its `[[rule]]` table, for logs.
    pub line: usize,
    /// When it fires.
    pub trigger: Trigger,
    /// Only for this worker's connections (`None`: every worker).
    pub worker: Option<String>,
    /// What it does.
    pub action: Action,
}

impl Rule {
    /// Whether the rule concerns connections of `worker`.
    pub fn applies_to(&self, worker: &str) -> bool {
        self.worker.as_deref().map_or(true, |w| w == worker)
    }
}

/// All rules of a file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// Why an abort-rules file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file cannot be read.
    #[error("cannot read abort rules {}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown field or a field of the wrong type.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said (names the field when it is about one).
        message: String,
    },
    /// A well-formed rule that makes no sense.
    #[error("{}:{line}: field {field}: {reason}", path.display())]
    Invalid {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    kind: Spanned<String>,
    pattern: Option<Spanned<String>>,
    n: Option<Spanned<i64>>,
    worker: Option<Spanned<String>>,
    #[serde(default)]
    vote: bool,
    #[serde(default)]
    close_before: bool,
    #[serde(default)]
    close_after: bool,
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

impl Rules {
    /// No rules: every vote is the sink's own.
    pub fn none() -> Rules {
        Rules::default()
    }

    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            path: path.to_owned(),
            source,
        })?;
        Rules::parse(&text, path)
    }

    /// Parses rules text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Rules, RulesError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| RulesError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |s| line_of(text, s)),
            message: e.message().trim().to_owned(),
        })?;
        let invalid = |span: Range<usize>, field, reason: String| RulesError::Invalid {
            path: path.to_owned(),
            line: line_of(text, span),
            field,
            reason,
        };
        let mut rules = Vec::with_capacity(raw.rule.len());
        for spanned in raw.rule {
            let line = line_of(text, spanned.span());
            let r = spanned.into_inner();
            let kind_span = r.kind.span();
            let pattern = |kind: &str| {
                r.pattern.as_ref().ok_or_else(|| {
                    invalid(
                        kind_span.clone(),
                        "pattern",
                        format!("kind {kind:?} needs a pattern"),
                    )
                })
            };
            let trigger = match r.kind.get_ref().as_str() {
                // "txnid-regexp" is aloc_sink's spelling.
                "txnid-regex" | "txnid-regexp" => {
                    if let Some(n) = &r.n {
                        return Err(invalid(n.span(), "n", "only local-txn rules take n".into()));
                    }
                    let p = pattern("txnid-regex")?;
                    Trigger::TxnId(
                        regex::Regex::new(p.get_ref())
                            .map_err(|e| invalid(p.span(), "pattern", e.to_string()))?,
                    )
                }
                "stream-content" => {
                    if let Some(n) = &r.n {
                        return Err(invalid(n.span(), "n", "only local-txn rules take n".into()));
                    }
                    let p = pattern("stream-content")?;
                    Trigger::StreamContent(
                        regex::bytes::Regex::new(p.get_ref())
                            .map_err(|e| invalid(p.span(), "pattern", e.to_string()))?,
                    )
                }
                "local-txn" => {
                    if let Some(p) = &r.pattern {
                        return Err(invalid(p.span(), "pattern", "local-txn rules take n, not a pattern".into()));
                    }
                    let n = r.n.as_ref().ok_or_else(|| {
                        invalid(kind_span.clone(), "n", "kind \"local-txn\" needs n".into())
                    })?;
                    let v = u64::try_from(*n.get_ref())
                        .ok()
                        .filter(|&v| v >= 1)
                        .ok_or_else(|| invalid(n.span(), "n", format!("must be 1 or more, got {}", n.get_ref())))?;
                    Trigger::LocalTxn(v)
                }
                other => {
                    return Err(invalid(
                        kind_span,
                        "kind",
                        format!("unknown kind {other:?} (expected txnid-regex, local-txn or stream-content)"),
                    ))
                }
            };
            let worker = match r.worker {
                Some(w) => {
                    if w.get_ref().is_empty() {
                        return Err(invalid(w.span(), "worker", "must not be empty".into()));
                    }
                    Some(w.into_inner())
                }
                None => None,
            };
            rules.push(Rule {
                line,
                trigger,
                worker,
                action: Action {
                    vote: r.vote,
                    close_before: r.close_before,
                    close_after: r.close_after,
                },
            });
        }
        Ok(Rules { rules })
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that fire at a PHASE1 of `worker` for `txn_id`, being the
    /// `count`-th PHASE1 of this sink process: their merged action and the
    /// lines of the rules that fired.
    pub fn at_phase1(
        &self,
        worker: &str,
        txn_id: &str,
        count: u64,
    ) -> Option<(Action, Vec<usize>)> {
        let mut fired: Option<(Action, Vec<usize>)> = None;
        for r in self.rules.iter().filter(|r| r.applies_to(worker)) {
            let hit = match &r.trigger {
                Trigger::TxnId(re) => re.is_match(txn_id),
                Trigger::LocalTxn(n) => *n == count,
                Trigger::StreamContent(_) => false,
            };
            if hit {
                fired = Some(match fired {
                    None => (r.action, vec![r.line]),
                    Some((a, mut lines)) => {
                        lines.push(r.line);
                        (a.merge(r.action), lines)
                    }
                });
            }
        }
        fired
    }

    /// The stream-content rules concerning `worker` (looked up once per
    /// connection, so the data path costs nothing without such rules).
    pub fn content_rules(&self, worker: &str) -> Vec<Rule> {
        self.rules
            .iter()
            .filter(|r| matches!(r.trigger, Trigger::StreamContent(_)) && r.applies_to(worker))
            .cloned()
            .collect()
    }
}

/// The first of `rules` (stream-content ones) whose pattern matches `payload`.
pub fn match_content<'a>(rules: &'a [Rule], payload: &[u8]) -> Option<&'a Rule> {
    rules.iter().find(|r| match &r.trigger {
        Trigger::StreamContent(re) => re.is_match(payload),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rules, RulesError> {
        Rules::parse(text, Path::new("rules.toml"))
    }

    #[test]
    fn the_three_kinds_parse_and_fire() {
        let r = parse(
            r#"
[[rule]]
kind = "txnid-regex"
pattern = ":c_id=3$"
vote = true
close_after = true

[[rule]]
kind = "local-txn"
n = 2
worker = "initializer"

[[rule]]
kind = "stream-content"
pattern = "poison"
close_before = true
"#,
        )
        .unwrap();
        assert_eq!(r.rules().len(), 3);
        let (a, lines) = r
            .at_phase1("worker1", "App-w-worker1-id-1:c_id=3", 1)
            .unwrap();
        assert_eq!(
            a,
            Action {
                vote: true,
                close_before: false,
                close_after: true
            }
        );
        assert_eq!(lines, vec![2]);
        assert!(r.at_phase1("worker1", "App:c_id=30", 2).is_none());
        let (a, lines) = r.at_phase1("initializer", "App:c_id=3", 2).unwrap();
        assert!(!a.vote && a.close_after && !a.close_before);
        assert_eq!(lines, vec![2, 8]);
        let content = r.content_rules("anyone");
        assert_eq!(
            match_content(&content, b"a poisoned line").unwrap().line,
            13
        );
        assert!(match_content(&content, b"a clean line").is_none());
    }

    #[test]
    fn an_empty_file_has_no_rules() {
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let cases = [
            (
                "[[rule]]\nkind = \"local-txn\"\nn = 0\n",
                "rules.toml:3: field n: must be 1 or more",
            ),
            (
                "[[rule]]\nkind = \"local-txn\"\nvotee = true\n",
                "rules.toml:3: unknown field `votee`",
            ),
            (
                "[[rule]]\nkind = \"txnid-regex\"\npattern = \"(\"\n",
                "rules.toml:3: field pattern: regex parse error",
            ),
            (
                "[[rule]]\nkind = \"txnid-regex\"\n",
                "rules.toml:2: field pattern: kind \"txnid-regex\" needs a pattern",
            ),
            (
                "\n[[rule]]\nkind = \"nope\"\n",
                "rules.toml:3: field kind: unknown kind \"nope\"",
            ),
            (
                "[[rule]]\nkind = \"local-txn\"\nn = \"3\"\n",
                "rules.toml:3: invalid type",
            ),
            ("[[rule]\n", "rules.toml:1: "),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }
}
