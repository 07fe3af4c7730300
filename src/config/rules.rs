//! Rules files: the block and allow lists, velocity and amount rules of
//! [`fraudstream_engine::decide`], read and validated like topologies
//! (every error at once, with file, key and what was expected). The file
//! named by `[decisions] rules` is read when the topology is, and again
//! whenever it changes while the scoring API runs.
//!
//! ```toml
//! [rules.blocked_cards]              # the table name is the reason code
//! decision = "decline"               # approve | review | decline
//! cards = ["C0000001", "C0000002"]   # optional: cards it applies to
//!
//! [rules.new_merchant_burst]
//! decision = "review"
//! when = ["card_new_merch_10m > 5"]  # FEATURE OP NUMBER, all must hold
//!
//! [rules.large_at_night]
//! decision = "review"
//! when = ["amount >= 1000", "night == 1"]
//! ```

use super::reader::{describe, ConfigError, Errors, Section};
use compact_str::CompactString;
use fraudstream_engine::decide::{Condition, Decision, Op, Operand, Rule, RuleSet};
use std::collections::HashSet;
use std::path::Path;

/// Read and validate the rules file at `path` for dense features named
/// `features`; the set gets `version`.
pub fn read_rules(
    path: &Path,
    features: &[CompactString],
    version: u64,
) -> Result<RuleSet, Vec<ConfigError>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_rules(&file, &text, features, version),
        Err(e) => Err(vec![ConfigError {
            file,
            key: "(file)".into(),
            expected: "a readable rules file".into(),
            found: Some(e.to_string()),
        }]),
    }
}

/// [`read_rules`] of `text`; `file` names it in errors.
pub fn parse_rules(
    file: &str,
    text: &str,
    features: &[CompactString],
    version: u64,
) -> Result<RuleSet, Vec<ConfigError>> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![ConfigError {
                file: file.to_string(),
                key: "(syntax)".into(),
                expected: "valid TOML".into(),
                found: Some(e.to_string().replace('\n', " ").trim().to_string()),
            }])
        }
    };
    let errors = Errors::new(file);
    let root = Section::root(&table, &errors);
    let mut rules = Vec::new();
    for (code, s) in root.section("rules").subsections() {
        if let Some(r) = read_rule(&code, &s, features) {
            rules.push(r);
        }
        s.finish();
    }
    root.finish();
    let errors = errors.into_vec();
    if errors.is_empty() {
        Ok(RuleSet { version, rules })
    } else {
        Err(errors)
    }
}

/// A list of strings at `key`, if set.
fn strings(s: &Section, key: &str) -> Option<Vec<String>> {
    let v = s.value(key)?;
    let list = v.as_array().and_then(|a| {
        a.iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
    });
    if list.is_none() {
        s.error(key, "an array of strings", Some(describe(v)));
    }
    list
}

fn read_rule(code: &str, s: &Section, features: &[CompactString]) -> Option<Rule> {
    let decision = match s.opt_str("decision") {
        Some(d) => match <Decision as fraudstream_engine::Named>::from_name(&d) {
            Some(d) => Some(d),
            None => {
                s.error(
                    "decision",
                    "\"approve\", \"review\" or \"decline\"",
                    Some(format!("\"{d}\"")),
                );
                None
            }
        },
        None => {
            s.error("decision", "\"approve\", \"review\" or \"decline\"", None);
            None
        }
    };
    let set = |list: Option<Vec<String>>| {
        list.map(|l| {
            l.into_iter()
                .map(CompactString::from)
                .collect::<HashSet<_>>()
        })
    };
    let cards = set(strings(s, "cards"));
    let merchants = set(strings(s, "merchants"));
    let mut when = Vec::new();
    for (i, text) in strings(s, "when").unwrap_or_default().iter().enumerate() {
        match condition(text, features) {
            Ok(c) => when.push(c),
            Err(expected) => s.error(&format!("when[{i}]"), expected, Some(format!("\"{text}\""))),
        }
    }
    if cards.is_none() && merchants.is_none() && when.is_empty() && !s.has("when") {
        s.errors().push(
            s.path(),
            "at least one of cards, merchants or when (not a rule that matches everything)",
            None,
        );
    }
    Some(Rule {
        code: code.into(),
        decision: decision?,
        cards,
        merchants,
        when,
    })
}

/// `FEATURE OP NUMBER`, or what was expected.
fn condition(text: &str, features: &[CompactString]) -> Result<Condition, String> {
    let shape = "FEATURE OP NUMBER, e.g. \"card_count_10m > 5\" (OP one of > >= < <= == !=)";
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [name, op, value] = parts[..] else {
        return Err(shape.into());
    };
    let operand = if name == "amount" {
        Operand::Amount
    } else {
        match features.iter().position(|f| f == name) {
            Some(i) => Operand::Feature(i),
            None => {
                return Err(format!(
                    "a feature: amount, {}",
                    features
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    };
    let Some(&(_, op)) = Op::ALL.iter().find(|(s, _)| *s == op) else {
        return Err(shape.into());
    };
    let value: f64 = match value.parse() {
        Ok(v) if f64::is_finite(v) => v,
        _ => return Err(shape.into()),
    };
    Ok(Condition { operand, op, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<CompactString> {
        vec!["card_count_10m".into(), "night".into()]
    }

    #[test]
    fn a_rules_file_is_read_into_rules() {
        let text = r#"
[rules.blocked]
decision = "decline"
cards = ["C1", "C2"]
[rules.burst]
decision = "review"
when = ["card_count_10m > 5", "amount >= 100.5"]
"#;
        let set = parse_rules("r.toml", text, &names(), 3).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(set.version, 3);
        assert_eq!(set.rules.len(), 2);
        let burst = set.rules.iter().find(|r| r.code == "burst").unwrap();
        assert_eq!(burst.decision, Decision::Review);
        assert_eq!(
            burst.when,
            [
                Condition {
                    operand: Operand::Feature(0),
                    op: Op::Gt,
                    value: 5.0
                },
                Condition {
                    operand: Operand::Amount,
                    op: Op::Ge,
                    value: 100.5
                }
            ]
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let space = fraudstream_engine::features::feature_space(&Default::default());
        let text = include_str!("../../topologies/rules/example.toml");
        let set = parse_rules("topologies/rules/example.toml", text, space.names(), 1)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(set.rules.len(), 4);
    }

    #[test]
    fn every_error_of_a_rules_file_is_reported_at_once() {
        let text = r#"
[rules.a]
decision = "block"
cards = "C1"
[rules.b]
decision = "review"
when = ["card_count_1y > 5", "night = 1", "amount > lots"]
colour = "red"
[rules.c]
decision = "review"
[other]
"#;
        let errs = parse_rules("r.toml", text, &names(), 1).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "rules.a.decision",
            "rules.a.cards",
            "rules.b.when[0]",
            "rules.b.when[1]",
            "rules.b.when[2]",
            "rules.b.colour",
            "rules.c",
            "other",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
        assert!(errs.iter().all(|e| e.file == "r.toml"));
        let unknown = errs.iter().find(|e| e.key == "rules.b.when[0]").unwrap();
        assert!(unknown.expected.contains("card_count_10m"), "{unknown:?}");
    }
}
