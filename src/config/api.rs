//! Settings of the scoring API: `[source] type = "api"` (limits on what a
//! request may carry and how many wait) and `[decisions]` (score bands).

use super::reader::Section;

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

/// A decision of the scoring API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let it through.
    Approve,
    /// Let it through, and send it to an analyst.
    Review,
    /// Refuse it.
    Decline,
}

/// Score bands of decisions (`[decisions]`): a score at or above `decline`
/// is declined, at or above `review` reviewed, else approved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decisions {
    /// Lowest score sent to review.
    pub review: f64,
    /// Lowest score declined.
    pub decline: f64,
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions {
            review: 0.5,
            decline: 0.9,
        }
    }
}

impl Decisions {
    /// The decision for `score`, and the reason code that made it.
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

/// `[decisions]`.
pub(super) fn read_decisions(s: &Section) -> Decisions {
    let d = Decisions::default();
    let out = Decisions {
        review: s.float("review", d.review, 0.0, 1.0),
        decline: s.float("decline", d.decline, 0.0, 1.0),
    };
    if out.review > out.decline {
        s.error(
            "decline",
            format!("a threshold at or above review ({})", out.review),
            Some(out.decline.to_string()),
        );
    }
    s.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_inclusive_at_their_thresholds() {
        let d = Decisions {
            review: 0.5,
            decline: 0.9,
        };
        assert_eq!(d.of(0.4999).0, Decision::Approve);
        assert_eq!(d.of(0.5).0, Decision::Review);
        assert_eq!(d.of(0.8999).0, Decision::Review);
        assert_eq!(d.of(0.9), (Decision::Decline, "score_at_decline"));
    }
}
