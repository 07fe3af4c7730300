//! Settings of the scoring API: `[source] type = "api"` (limits on what a
//! request may carry and how many wait) and `[decisions]` (score bands and
//! the rules file, read by [`super::rules`]).

use super::reader::Section;
use compact_str::CompactString;
use fraudstream_engine::decide::{Bands, Decider, RuleSet};
use std::path::PathBuf;

/// The scoring API as the source of transactions (`[source] type = "api"`):
/// transactions and labels arrive as HTTP requests on `service.listen`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiInput {
    /// Largest request body; larger is 413.
    pub max_body_bytes: usize,
    /// Most transactions (or labels) in one request; more is 413.
    pub max_batch: usize,
    /// Requests handled at once (decoding, waiting for the engine); more
    /// are answered 429 at once rather than queued.
    pub max_concurrent: usize,
    /// Requests queued for the engine thread; when full, 503 at once.
    pub queue: usize,
}

impl Default for ApiInput {
    fn default() -> Self {
        ApiInput {
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            max_concurrent: 256,
            queue: 64,
        }
    }
}

/// `[source]` keys of `type = "api"`.
pub(super) fn read_api_input(s: &Section) -> ApiInput {
    let d = ApiInput::default();
    let out = ApiInput {
        max_body_bytes: s.int("max_body_bytes", d.max_body_bytes as i64, 256, 1 << 30) as usize,
        max_batch: s.int("max_batch", d.max_batch as i64, 1, 100_000) as usize,
        max_concurrent: s.int("max_concurrent", d.max_concurrent as i64, 1, 100_000) as usize,
        queue: s.int("queue", d.queue as i64, 1, 100_000) as usize,
    };
    s.finish();
    out
}

/// Decisions of the scoring API (`[decisions]`): the score bands, and the
/// rules evaluated with the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Decisions {
    /// Whether scores carry decisions: a `[decisions]` table, or the
    /// scoring API.
    pub enabled: bool,
    /// Score bands.
    pub bands: Bands,
    /// The rules file, if any (reloaded when it changes).
    pub rules_path: Option<PathBuf>,
    /// How often the rules file is checked for changes; 0: never.
    pub reload_ms: i64,
    /// The rules as read with the topology (version 1; empty without a file).
    pub rules: RuleSet,
}

impl Decisions {
    /// What the card stages decide with, when they do.
    pub fn decider(&self) -> Option<Decider> {
        self.enabled.then(|| Decider {
            bands: self.bands,
            rules: self.rules.clone(),
        })
    }
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions {
            enabled: false,
            bands: Bands::default(),
            rules_path: None,
            reload_ms: 1000,
            rules: RuleSet::default(),
        }
    }
}

/// `[decisions]`; the rules file is read for dense features named `features`.
pub(super) fn read_decisions(s: &Section, features: &[CompactString]) -> Decisions {
    let d = Decisions::default();
    let bands = Bands {
        review: s.float("review", d.bands.review, 0.0, 1.0),
        decline: s.float("decline", d.bands.decline, 0.0, 1.0),
    };
    if bands.review > bands.decline {
        s.error(
            "decline",
            format!("a threshold at or above review ({})", bands.review),
            Some(bands.decline.to_string()),
        );
    }
    let rules_path = s
        .opt_str("rules")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let reload_ms = s.duration("reload", d.reload_ms, 0);
    let rules = match &rules_path {
        Some(p) => match super::rules::read_rules(p, features, 1) {
            Ok(r) => r,
            Err(errors) => {
                s.errors().extend(errors);
                RuleSet::default()
            }
        },
        None => RuleSet::default(),
    };
    s.finish();
    Decisions {
        enabled: s.present(),
        bands,
        rules_path,
        reload_ms,
        rules,
    }
}
