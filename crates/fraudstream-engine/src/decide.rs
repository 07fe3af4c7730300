//! Decisions at authorization time: owns the score bands (approve / review
//! / decline) and the rules evaluated with the model, each with a reason
//! code.
//!
//! A rule matches a transaction when every part it gives holds: its card is
//! in `cards`, its merchant in `merchants`, and every condition of `when`
//! (a feature the engine computed for it, or its amount, compared with a
//! number). How they combine with the model's band:
//!
//! 1. a matching `decline` rule declines (a block list wins over all);
//! 2. else a matching `approve` rule approves (an allow list overrides the
//!    model);
//! 3. else the most severe of the model's band and the matching `review`
//!    rules.
//!
//! The reasons are the codes of every matching rule, then the model's band
//! (`score_below_review`, `score_at_review`, `score_at_decline`). A rule
//! set is plain data, evaluated in the card stage with the score;
//! replacing it is how rules are reloaded.

use crate::Named;
use compact_str::CompactString;
use serde::Serialize;
use std::collections::HashSet;

/// A decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let it through.
    Approve,
    /// Let it through, and send it to an analyst.
    Review,
    /// Refuse it.
    Decline,
}

impl Named for Decision {
    const ALL: &'static [Self] = &[Decision::Approve, Decision::Review, Decision::Decline];
    fn name(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Review => "review",
            Decision::Decline => "decline",
        }
    }
}

/// Score bands: a score at or above `decline` is declined, at or above
/// `review` reviewed, else approved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bands {
    /// Lowest score sent to review.
    pub review: f64,
    /// Lowest score declined.
    pub decline: f64,
}

impl Default for Bands {
    fn default() -> Self {
        Bands {
            review: 0.5,
            decline: 0.9,
        }
    }
}

impl Bands {
    /// The model's decision for `score`, and its reason code.
    pub fn of(&self, score: f64) -> (Decision, &'static str) {
        if score >= self.decline {
            (Decision::Decline, "score_at_decline")
        } else if score >= self.review {
            (Decision::Review, "score_at_review")
        } else {
            (Decision::Approve, "score_below_review")
        }
    }
}

/// A comparison of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Every operator as written in a rule.
    pub const ALL: [(&'static str, Op); 6] = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
    ];

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// What a condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// The transaction's amount, as given.
    Amount,
    /// A dense feature, by its index in the feature space.
    Feature(usize),
}

/// `operand op value`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    /// What is compared.
    pub operand: Operand,
    /// How.
    pub op: Op,
    /// With what.
    pub value: f64,
}

/// One rule: its reason code, its decision and what it matches.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Reason code (the rule's name).
    pub code: CompactString,
    /// Its decision when it matches.
    pub decision: Decision,
    /// Cards it applies to (`None`: any).
    pub cards: Option<HashSet<CompactString>>,
    /// Merchants it applies to (`None`: any).
    pub merchants: Option<HashSet<CompactString>>,
    /// Conditions that must all hold.
    pub when: Vec<Condition>,
}

/// A transaction as rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// Card id, as given.
    pub card_id: &'a str,
    /// Merchant id, as given.
    pub merchant_id: &'a str,
    /// Amount, as given.
    pub amount: f64,
    /// The dense features the engine scored it with.
    pub features: &'a [f32],
}

impl Rule {
    /// Whether every part of the rule holds for `f`.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        self.cards.as_ref().map_or(true, |c| c.contains(f.card_id))
            && self
                .merchants
                .as_ref()
                .map_or(true, |m| m.contains(f.merchant_id))
            && self.when.iter().all(|c| {
                let v = match c.operand {
                    Operand::Amount => f.amount,
                    Operand::Feature(i) => f.features.get(i).map_or(f64::NAN, |&v| f64::from(v)),
                };
                c.op.holds(v, c.value)
            })
    }
}

/// The rules in force, with the version of their file (1 for the first
/// loaded, one more at each reload; 0: no rules).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    /// Version.
    pub version: u64,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// What a card stage decides with: the bands and the rules in force.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decider {
    /// Score bands.
    pub bands: Bands,
    /// Rules (empty: the band alone decides).
    pub rules: RuleSet,
}

impl Decider {
    /// The decision for a transaction scored `score`, with `facts`.
    pub fn decide(&self, score: f64, facts: &Facts<'_>) -> Verdict {
        self.rules.decide(&self.bands, score, facts)
    }
}

/// A decision with its reasons.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Codes of the matching rules, then the model's band.
    pub reasons: Vec<CompactString>,
}

impl RuleSet {
    /// The decision for a transaction scored `score`, with `facts`.
    pub fn decide(&self, bands: &Bands, score: f64, facts: &Facts<'_>) -> Verdict {
        let (model, band) = bands.of(score);
        let mut reasons = Vec::new();
        let (mut declined, mut approved, mut worst) = (false, false, model);
        for r in self.rules.iter().filter(|r| r.matches(facts)) {
            reasons.push(r.code.clone());
            match r.decision {
                Decision::Decline => declined = true,
                Decision::Approve => approved = true,
                Decision::Review => worst = worst.max(Decision::Review),
            }
        }
        reasons.push(CompactString::const_new(band));
        let decision = if declined {
            Decision::Decline
        } else if approved {
            Decision::Approve
        } else {
            worst
        };
        Verdict { decision, reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(code: &str, decision: Decision) -> Rule {
        Rule {
            code: code.into(),
            decision,
            cards: None,
            merchants: None,
            when: Vec::new(),
        }
    }

    fn facts<'a>(card: &'a str, amount: f64, features: &'a [f32]) -> Facts<'a> {
        Facts {
            card_id: card,
            merchant_id: "M1",
            amount,
            features,
        }
    }

    #[test]
    fn a_block_list_wins_then_an_allow_list_then_the_most_severe() {
        let bands = Bands::default();
        let mut blocked = rule("blocked", Decision::Decline);
        blocked.cards = Some(["C9".into()].into_iter().collect());
        let mut trusted = rule("trusted", Decision::Approve);
        trusted.merchants = Some(["M1".into()].into_iter().collect());
        let mut velocity = rule("velocity", Decision::Review);
        velocity.when = vec![Condition {
            operand: Operand::Feature(0),
            op: Op::Gt,
            value: 5.0,
        }];
        let set = RuleSet {
            version: 1,
            rules: vec![blocked.clone(), velocity.clone()],
        };
        // No rule matches: the model's band.
        let v = set.decide(&bands, 0.95, &facts("C1", 10.0, &[1.0]));
        assert_eq!(v.decision, Decision::Decline);
        assert_eq!(v.reasons, ["score_at_decline"]);
        // A review rule raises an approval to review.
        let v = set.decide(&bands, 0.1, &facts("C1", 10.0, &[6.0]));
        assert_eq!(v.decision, Decision::Review);
        assert_eq!(v.reasons, ["velocity", "score_below_review"]);
        // The block list declines whatever the score.
        let v = set.decide(&bands, 0.0, &facts("C9", 10.0, &[0.0]));
        assert_eq!(v.decision, Decision::Decline);
        // An allow list approves a high score, but not a blocked card.
        let set = RuleSet {
            version: 2,
            rules: vec![blocked, trusted, velocity],
        };
        assert_eq!(
            set.decide(&bands, 0.99, &facts("C1", 10.0, &[9.0]))
                .decision,
            Decision::Approve
        );
        assert_eq!(
            set.decide(&bands, 0.0, &facts("C9", 10.0, &[0.0])).decision,
            Decision::Decline
        );
    }

    #[test]
    fn conditions_compare_the_amount_and_features_and_all_must_hold() {
        let mut r = rule("big_at_night", Decision::Review);
        r.when = vec![
            Condition {
                operand: Operand::Amount,
                op: Op::Ge,
                value: 1000.0,
            },
            Condition {
                operand: Operand::Feature(1),
                op: Op::Eq,
                value: 1.0,
            },
        ];
        assert!(r.matches(&facts("C1", 1000.0, &[0.0, 1.0])));
        assert!(!r.matches(&facts("C1", 999.0, &[0.0, 1.0])));
        assert!(!r.matches(&facts("C1", 5000.0, &[0.0, 0.0])));
        // A feature the vector does not have never matches.
        r.when[1].operand = Operand::Feature(7);
        assert!(!r.matches(&facts("C1", 5000.0, &[0.0, 1.0])));
    }
}
