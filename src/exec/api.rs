//! The scoring API: the engine answering HTTP requests at authorization
//! time (`source.type = "api"`).
//!
//! ```text
//! client ─► handler: body limit, decode (every error at once) ─► bounded queue ─► engine thread
//!   ▲        (429 when max_concurrent requests are in, 503 when the queue is full)   │ admit, score,
//!   └──────────────────────── one-shot reply: score, decision, reasons ◄──────────────┘ decide, learn
//!                                                                                     └─► sinks
//! ```
//!
//! One engine thread owns the engine, as in the service: requests are
//! answered in the order they reach its queue, and a card's transactions
//! share one history whatever request carried them. Handlers only decode
//! and wait; they never touch engine state. Nothing queues without bound:
//! a request beyond `max_concurrent` in flight is answered 429 at once, one
//! that finds the engine's queue (`queue` requests) full 503, both with
//! `Retry-After`.
//!
//! Endpoints (besides `/health`, `/metrics` and the live dashboard at `/`,
//! which the engine thread publishes to every 500 ms:
//! [`crate::exec::dashboard`]):
//!
//! - `POST /v1/score`: one transaction (the JSON object of the transactions
//!   topic) or an array of them; answers each with its score, decision,
//!   reason codes, top feature contributions (alerts), model version and
//!   the time spent in the engine. An invalid request is refused whole, 400
//!   (not JSON) or 422 (a field), listing every bad record with its index,
//!   field and reason; the engine's own refusals (an event too far ahead,
//!   an amount out of bounds) answer that transaction with an `error`.
//! - `POST /v1/labels`: one label or an array (the labels topic's objects),
//!   learnt through the same path as the label topic; answers how many
//!   joined a scored transaction.
//! - `GET /v1/cards/{id}/features` and `/v1/merchants/{id}/features`
//!   (`?at=`): the rolling features a transaction at that time would get,
//!   read without changing anything.
//!
//! Decisions combine the model's score band with the rules of
//! [`fraudstream_engine::decide`]; a rules file that changes is reloaded,
//! validated first, by a watcher thread.

// The `Err` of the request steps is the answer to send (an axum
// `Response`), built only on the error path: its size costs nothing there.
#![allow(clippy::result_large_err)]

use crate::config::{ApiInput, SourceConfig, Topology};
use crate::connectors::sinks::report::{InputCounts, RunReport};
use crate::connectors::sinks::{Output, SinkWriter};
use crate::connectors::sources::decode::{refused, truncate, RawRecord, RecordKind, Reject};
use crate::connectors::sources::fluvio::record_decoder;
use crate::exec::dashboard::Dashboard;
use crate::exec::outputs::{publish_report, run_report, save_model, start_engine};
use crate::exec::rules_watch::RulesWatch;
use crate::exec::service::http::{self, now_ms, Health, Limits, Phase};
use crate::exec::service::prometheus::publish_engine;
use crate::exec::service::TICK;
use anyhow::Context;
use axum::body::{to_bytes, Body};
use axum::extract::Path;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use compact_str::CompactString;
use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use fraudstream_engine::decide::RuleSet;
use fraudstream_engine::engine::{Engine, LabelResult};
use fraudstream_engine::event::{DeadLetter, Event, Label, RejectKind, Score, Transaction};
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// Outputs per batch handed to the sink writer.
const SINK_BATCH: usize = 256;
/// Longest raw record kept in a dead letter.
const RAW_MAX: usize = 4096;
/// `Retry-After` (seconds) of a 429 or 503.
const RETRY_AFTER: &str = "1";

/// Work for the engine thread.
pub(crate) enum Work {
    /// Score these, reply with one answer each (with the feature vector
    /// when asked).
    Score(Vec<Transaction>, bool, oneshot::Sender<Vec<Scored>>),
    /// Look up the rolling features of a card or merchant.
    Lookup(Entity, String, Option<i64>, oneshot::Sender<Option<Looked>>),
    /// Learn these, reply with the counts.
    Labels(Vec<Label>, oneshot::Sender<LabelsAnswer>),
    /// Records a handler refused (answered 4xx): to the dead letters.
    Rejected(Vec<DeadLetter>),
    /// Finish: the service is stopping.
    Stop,
}

/// Let `event` into the engine, or refuse it: then the problem to answer
/// with (at `index` of its request), and the event back; its dead letter
/// is written and counted.
fn admit(
    engine: &Engine,
    event: Event,
    index: Option<usize>,
    input: &mut InputCounts,
    emit: &mut dyn FnMut(Output) -> anyhow::Result<()>,
) -> anyhow::Result<Result<Event, (Problem, Event)>> {
    let Err(refusal) = engine.admit(&event) else {
        return Ok(Ok(event));
    };
    let problem = Problem {
        index,
        kind: refusal.kind.as_str(),
        reason: refusal.reason.clone(),
    };
    let dead = refused(&event, refusal);
    input.count_dead_letter(&dead);
    emit(Output::DeadLetter(dead))?;
    Ok(Err((problem, event)))
}

/// What a feature lookup is about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entity {
    Card,
    Merchant,
}

/// A feature lookup's answer.
#[derive(Debug, Serialize)]
pub(crate) struct Looked {
    /// The card or merchant id, as asked.
    id: String,
    /// The time the features are as of (epoch ms).
    at: i64,
    /// Each feature by name.
    pub(crate) features: serde_json::Map<String, serde_json::Value>,
}

/// One transaction's answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Scored {
    /// Scored and decided.
    Answer(Box<Answer>),
    /// Refused by the engine (the reason is also a dead letter).
    Refused {
        tx_id: serde_json::Value,
        error: Problem,
    },
}

/// A scored transaction: the score record of the scores topic (with its
/// decision and reason codes), the rules' version and the engine time.
#[derive(Debug, Serialize)]
pub(crate) struct Answer {
    #[serde(flatten)]
    pub(crate) score: Score,
    /// Version of the rules that decided (0: no rules file).
    rules_version: u64,
    /// Time spent in the engine (admit, score, decide), in microseconds.
    engine_us: f64,
    /// The dense features it was scored with, by name (`?features=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a labels request did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LabelsAnswer {
    /// Labels in the request.
    labels: usize,
    /// Joined to a transaction scored here and learnt from.
    joined: usize,
    /// For no transaction the engine holds (unknown, or expired).
    unknown: usize,
    /// For a transaction already labelled.
    duplicate: usize,
    /// Refused by the engine (each in `errors`).
    refused: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<Problem>,
}

/// Why a record (or a request) was refused.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Problem {
    /// Position in the request's array (absent for a single record).
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    /// Machine-readable kind (`malformed`, `missing_field`, `invalid_field`,
    /// `bad_timestamp`, `future_timestamp`, `too_large`, `busy`, ...).
    kind: &'static str,
    /// What was wrong, naming the field.
    reason: String,
}

/// What the handlers share.
#[derive(Clone)]
struct Api {
    queue: Sender<Work>,
    slots: Arc<Semaphore>,
    input: ApiInput,
    /// Where the limits are set, for messages: `source` (an API-only
    /// topology) or `api` (beside a Fluvio source).
    section: &'static str,
}

/// The `/v1` routes over an engine thread's queue.
fn routes(api: Api) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/v1/labels", post(labels))
        .route("/v1/cards/{id}/features", get(card_features))
        .route("/v1/merchants/{id}/features", get(merchant_features))
        .with_state(api)
}

/// An error answer: `status`, `{"errors": [...]}`.
fn problems(status: StatusCode, errors: Vec<Problem>) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "errors": errors }).to_string(),
    )
        .into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER),
        );
    }
    r
}

fn problem(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Response {
    problems(
        status,
        vec![Problem {
            index: None,
            kind,
            reason: reason.into(),
        }],
    )
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn count(path: &'static str, status: StatusCode) {
    metrics::counter!("fraudstream_api_requests_total", "path" => path, "status" => status.as_str().to_string())
        .increment(1);
}

/// The records of a request body: one JSON object, or an array of them.
/// `Err` is the answer to give (400 or 413).
fn records<'b>(body: &'b [u8], api: &Api) -> Result<(Vec<&'b str>, bool), Response> {
    let max_batch = api.input.max_batch;
    let text = std::str::from_utf8(body).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(trimmed).map_err(|e| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("the body is not a JSON array of objects: {e}"),
                )
            })?;
        if items.is_empty() {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty",
                "the array holds no record",
            ));
        }
        if items.len() > max_batch {
            return Err(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "{} records in one request, more than {}.max_batch = {max_batch}",
                    items.len(),
                    api.section
                ),
            ));
        }
        Ok((items.iter().map(|r| r.get()).collect(), true))
    } else {
        Ok((vec![text], false))
    }
}

/// Read the body within the limit; `Err` is 413.
async fn body_bytes(body: Body, api: &Api) -> Result<axum::body::Bytes, Response> {
    let max = api.input.max_body_bytes;
    to_bytes(body, max).await.map_err(|_| {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than {}.max_body_bytes = {max}",
                api.section
            ),
        )
    })
}

/// A slot among `max_concurrent`, or 429.
fn slot(api: &Api) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    api.slots.clone().try_acquire_owned().map_err(|_| {
        problem(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            format!(
                "{} requests in flight, {}.max_concurrent; retry shortly",
                api.input.max_concurrent, api.section
            ),
        )
    })
}

/// Queue `work` for the engine, or 503.
fn enqueue(api: &Api, work: Work) -> Result<(), Response> {
    match api.queue.try_send(work) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the engine's queue is full ({}.queue = {} requests); retry shortly",
                api.section, api.input.queue
            ),
        )),
        Err(TrySendError::Disconnected(_)) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the engine has stopped",
        )),
    }
}

/// Queue the work `make` builds around a one-shot reply, and wait for the
/// engine's answer (503 when the queue is full or the engine stopped).
async fn ask_engine<T>(
    api: &Api,
    make: impl FnOnce(oneshot::Sender<T>) -> Work,
) -> Result<T, Response> {
    let (reply, wait) = oneshot::channel();
    enqueue(api, make(reply))?;
    wait.await.map_err(|_| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the engine stopped before answering",
        )
    })
}

/// Decode every record of `texts` with `build`; all problems at once.
fn decode_all<T>(
    texts: &[&str],
    many: bool,
    kind: RecordKind,
    build: impl Fn(&crate::connectors::sources::decode::Decoder, &RawRecord<'_>) -> Result<T, Reject>,
) -> (Vec<T>, Vec<(Problem, DeadLetter)>) {
    let decoder = record_decoder(kind);
    let mut rec = RawRecord::default();
    let mut ok = Vec::with_capacity(texts.len());
    let mut bad = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let got = decoder
            .decode_json(text, &mut rec)
            .and_then(|()| build(&decoder, &rec));
        match got {
            Ok(v) => ok.push(v),
            Err(r) => bad.push((
                Problem {
                    index: many.then_some(i),
                    kind: r.kind.as_str(),
                    reason: r.reason.clone(),
                },
                DeadLetter {
                    source: "api".into(),
                    line: Some(i as u64 + 1),
                    kind: r.kind,
                    reason: r.reason,
                    raw: truncate(text, RAW_MAX).to_string(),
                },
            )),
        }
    }
    (ok, bad)
}

/// Answer a request with invalid records: 400 (one is not JSON) or 422,
/// listing each, and the
/// records to the dead letters (best effort: a full queue drops them from
/// the file, never from the answer or the count).
fn refuse(api: &Api, bad: Vec<(Problem, DeadLetter)>) -> Response {
    let (problems_, dead): (Vec<Problem>, Vec<DeadLetter>) = bad.into_iter().unzip();
    for d in &dead {
        metrics::counter!("fraudstream_api_rejected_total", "kind" => d.kind.as_str()).increment(1);
    }
    let _ = api.queue.try_send(Work::Rejected(dead));
    // Not JSON at all is a bad request; JSON with a bad field, unprocessable.
    let status = if problems_
        .iter()
        .any(|p| p.kind == RejectKind::Malformed.as_str())
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    problems(status, problems_)
}

/// The value of `key` in a query string (`a=1&b=2`), if given.
fn query_value<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `?features=true`, or a 400.
fn wants_features(uri: &Uri) -> Result<bool, Response> {
    match query_value(uri, "features") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(problem(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("features: expected true or false, found {v}"),
        )),
    }
}

async fn score(State(api): State<Api>, uri: Uri, body: Body) -> Response {
    const PATH: &str = "/v1/score";
    let answer = async {
        let with_features = wants_features(&uri)?;
        let _slot = slot(&api)?;
        let bytes = body_bytes(body, &api).await?;
        let (texts, many) = records(&bytes, &api)?;
        let (txs, bad) = decode_all(&texts, many, RecordKind::Transaction, |d, r| {
            d.transaction(r).map(|(t, _)| t)
        });
        if !bad.is_empty() {
            return Err(refuse(&api, bad));
        }
        let scored = ask_engine(&api, |reply| Work::Score(txs, with_features, reply)).await?;
        let status = match (&scored[..], many) {
            ([Scored::Refused { .. }], false) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::OK,
        };
        let body = if many {
            serde_json::json!({ "results": scored }).to_string()
        } else {
            serde_json::to_string(&scored[0]).expect("answers serialize")
        };
        Ok(json(status, body))
    }
    .await;
    let r = answer.unwrap_or_else(|r| r);
    count(PATH, r.status());
    r
}

async fn labels(State(api): State<Api>, body: Body) -> Response {
    const PATH: &str = "/v1/labels";
    let answer = async {
        let _slot = slot(&api)?;
        let bytes = body_bytes(body, &api).await?;
        let (texts, many) = records(&bytes, &api)?;
        let (labels, bad) = decode_all(&texts, many, RecordKind::Label, |d, r| d.label(r));
        if !bad.is_empty() {
            return Err(refuse(&api, bad));
        }
        let done = ask_engine(&api, |reply| Work::Labels(labels, reply)).await?;
        let status = if done.refused == done.labels {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        Ok(json(
            status,
            serde_json::to_string(&done).expect("answers serialize"),
        ))
    }
    .await;
    let r = answer.unwrap_or_else(|r| r);
    count(PATH, r.status());
    r
}

async fn card_features(State(api): State<Api>, Path(id): Path<String>, uri: Uri) -> Response {
    lookup(api, Entity::Card, id, uri, "/v1/cards/{id}/features").await
}

async fn merchant_features(State(api): State<Api>, Path(id): Path<String>, uri: Uri) -> Response {
    lookup(
        api,
        Entity::Merchant,
        id,
        uri,
        "/v1/merchants/{id}/features",
    )
    .await
}

/// A feature lookup: `?at=` (epoch ms or RFC 3339; default the stream's
/// newest time).
async fn lookup(api: Api, entity: Entity, id: String, uri: Uri, path: &'static str) -> Response {
    let answer = async {
        let _slot = slot(&api)?;
        let at = match query_value(&uri, "at") {
            None => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .ok()
                    .or_else(|| {
                        crate::connectors::sources::decode::parse_rfc3339(
                            &v.replace("%3A", ":").replace("%2B", "+"),
                        )
                    })
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| {
                        problem(
                            StatusCode::BAD_REQUEST,
                            "invalid_parameter",
                            format!(
                                "at: expected epoch milliseconds or an RFC 3339 time, found {v}"
                            ),
                        )
                    })?,
            ),
        };
        let looked = ask_engine(&api, |reply| Work::Lookup(entity, id.clone(), at, reply)).await?;
        match looked {
            Some(l) => Ok(json(
                StatusCode::OK,
                serde_json::to_string(&l).expect("answers serialize"),
            )),
            None => {
                let what = match entity {
                    Entity::Card => "card",
                    Entity::Merchant => "merchant",
                };
                Err(problem(
                    StatusCode::NOT_FOUND,
                    "unknown_entity",
                    format!("no state for {what} {id}: never seen, or evicted"),
                ))
            }
        }
    }
    .await;
    let r = answer.unwrap_or_else(|r| r);
    count(path, r.status());
    r
}

/// Named values as a JSON object (non-finite values as null).
pub(crate) fn named(
    pairs: impl IntoIterator<Item = (CompactString, f32)>,
) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(f64::from(v))))
        .collect()
}

/// What the engine thread ends with.
struct Finished {
    engine: Engine,
    sinks: SinkWriter,
    input: InputCounts,
    events: u64,
}

/// What answers the API's work beside an engine: the engine thread of an
/// API-only topology ([`run`]) or of the Fluvio service
/// ([`crate::exec::service::engine_thread`]). It owns no engine; each
/// piece of work is handed the engine, the counts and where outputs go.
pub(crate) struct Answering {
    /// Dense feature names (for `?features=true`).
    names: Vec<CompactString>,
    /// Contributions listed per answer (`engine.explain_top`).
    explain_top: usize,
}

/// The state a piece of API work is answered with.
pub(crate) struct Beside<'a> {
    pub engine: &'a mut Engine,
    /// Valid inputs and dead letters, counted.
    pub input: &'a mut InputCounts,
    /// Fed each score.
    pub dashboard: &'a mut Dashboard,
    pub health: &'a Health,
}

/// What a piece of API work came to.
pub(crate) enum Handled {
    /// Answered; this many events (transactions and labels) taken.
    Events(u64),
    /// The API-only service is stopping.
    Stop,
}

impl Answering {
    /// For the engine of `t`.
    pub(crate) fn new(t: &Topology) -> Self {
        Answering {
            names: fraudstream_engine::features::feature_space(&t.features)
                .names()
                .to_vec(),
            explain_top: t.engine.stage.explain_top,
        }
    }

    /// Do `work` and answer it; its outputs (scores, dead letters) go to
    /// `emit` in order.
    pub(crate) fn handle(
        &self,
        work: Work,
        at: Beside<'_>,
        emit: &mut dyn FnMut(Output) -> anyhow::Result<()>,
    ) -> anyhow::Result<Handled> {
        let Beside {
            engine,
            input,
            dashboard,
            health,
        } = at;
        engine.set_wall_clock(now_ms());
        let mut events = 0u64;
        match work {
            Work::Stop => return Ok(Handled::Stop),
            Work::Rejected(dead) => {
                for d in dead {
                    input.count_dead_letter(&d);
                    emit(Output::DeadLetter(d))?;
                }
            }
            Work::Lookup(entity, id, at, reply) => {
                let at = at.or(engine.newest_ts()).unwrap_or(0);
                let found = match entity {
                    Entity::Card => engine.card_features(&id, at),
                    Entity::Merchant => engine.merchant_features(&id, at),
                };
                let _ = reply.send(found.map(|f| Looked {
                    id,
                    at,
                    features: named(f),
                }));
            }
            Work::Score(txs, with_features, reply) => {
                let mut answers = Vec::with_capacity(txs.len());
                for tx in txs {
                    events += 1;
                    let started = Instant::now();
                    let tx = match admit(engine, Event::Transaction(tx), None, input, emit)? {
                        Ok(Event::Transaction(tx)) => tx,
                        Ok(Event::Label(_)) => unreachable!("a transaction stays one"),
                        Err((error, event)) => {
                            let tx_id = match &event {
                                Event::Transaction(tx) => serde_json::to_value(&tx.tx_id),
                                Event::Label(l) => serde_json::to_value(&l.tx_id),
                            };
                            answers.push(Scored::Refused {
                                tx_id: tx_id.unwrap_or_default(),
                                error,
                            });
                            continue;
                        }
                    };
                    input.transactions += 1;
                    // The card stage decides (bands and rules) with the score.
                    let score = engine.score(tx);
                    let engine_us = started.elapsed().as_secs_f64() * 1e6;
                    let features = with_features.then(|| {
                        named(
                            self.names
                                .iter()
                                .cloned()
                                .zip(engine.last_features().dense.iter().copied()),
                        )
                    });
                    dashboard.observe(&score);
                    emit(Output::Score(score.clone()))?;
                    // Every answer is explained, not only alerts (the
                    // records written keep the engine's rule: alerts).
                    let mut score = score;
                    if score.top_features.is_empty() {
                        score.top_features = engine.explain_last(self.explain_top);
                    }
                    answers.push(Scored::Answer(Box::new(Answer {
                        score,
                        rules_version: engine.rules_version(),
                        engine_us,
                        features,
                    })));
                }
                health.scored.fetch_add(answers.len() as i64, Relaxed);
                // The client may have gone: its answer is dropped, the work stands.
                let _ = reply.send(answers);
            }
            Work::Labels(labels, reply) => {
                let mut done = LabelsAnswer {
                    labels: labels.len(),
                    ..LabelsAnswer::default()
                };
                for (i, label) in labels.into_iter().enumerate() {
                    events += 1;
                    let label = match admit(engine, Event::Label(label), Some(i), input, emit)? {
                        Ok(Event::Label(label)) => label,
                        Ok(Event::Transaction(_)) => unreachable!("a label stays one"),
                        Err((error, _)) => {
                            done.refused += 1;
                            done.errors.push(error);
                            continue;
                        }
                    };
                    input.labels += 1;
                    match engine.label(&label) {
                        LabelResult::Joined => done.joined += 1,
                        LabelResult::Unknown => done.unknown += 1,
                        LabelResult::Duplicate => done.duplicate += 1,
                    }
                }
                let _ = reply.send(done);
            }
        }
        Ok(Handled::Events(events))
    }
}

/// What the API-only engine thread decides and answers with.
struct Settings {
    /// Rules reloaded since the start.
    reloads: Receiver<RuleSet>,
    answering: Answering,
    health: Arc<Health>,
    /// Stop after this long without work.
    idle: Option<Duration>,
    /// The live dashboard, published every [`TICK`].
    dashboard: Dashboard,
}

/// The API-only engine thread: take work in queue order until told to
/// stop (or, with `idle`, until no work came for that long). Every
/// [`TICK`], busy or not, the engine's metrics and the dashboard are
/// published (woken for it when no work comes, so a scrape is at most a
/// tick behind and no request pays for it). Rules reloaded arrive on
/// `reloads` and apply from the next request on.
fn engine_loop(
    mut engine: Engine,
    mut sinks: SinkWriter,
    rx: Receiver<Work>,
    settings: Settings,
) -> anyhow::Result<Finished> {
    let Settings {
        reloads,
        answering,
        health,
        idle,
        mut dashboard,
    } = settings;
    let mut input = InputCounts::default();
    let mut events = 0u64;
    let mut last_work = Instant::now();
    let mut next_tick = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_tick {
            publish_engine(&mut engine);
            dashboard.publish(now_ms(), &engine, &input, Vec::new());
            next_tick = now + TICK;
        }
        let mut wait = next_tick - now;
        if let Some(d) = idle {
            let left = (last_work + d).saturating_duration_since(now);
            if left.is_zero() {
                break;
            }
            wait = wait.min(left);
        }
        let work = match rx.recv_timeout(wait) {
            Ok(w) => w,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        last_work = Instant::now();
        while let Ok(r) = reloads.try_recv() {
            engine.set_rules(r);
        }
        let at = Beside {
            engine: &mut engine,
            input: &mut input,
            dashboard: &mut dashboard,
            health: &health,
        };
        match answering.handle(work, at, &mut |o| sinks.push(o))? {
            Handled::Stop => break,
            Handled::Events(n) => events += n,
        }
    }
    publish_engine(&mut engine);
    Ok(Finished {
        engine,
        sinks,
        input,
        events,
    })
}

/// The scoring API beside another source (`[api]` with a Fluvio source):
/// the `/v1` routes, and the queue of their work, which the service's
/// engine thread answers with [`Answering`] between its batches.
pub(crate) fn beside_stream(limits: &ApiInput) -> (Router, Receiver<Work>) {
    let (queue, rx) = bounded::<Work>(limits.queue);
    let api = Api {
        queue,
        slots: Arc::new(Semaphore::new(limits.max_concurrent)),
        input: limits.clone(),
        section: "api",
    };
    (routes(api), rx)
}

/// Options of an API run.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// No address line or summary on the terminal.
    pub quiet: bool,
}

/// Serve the scoring API of `t` until SIGINT/SIGTERM (or `stop_when_idle`);
/// returns the report of what it scored.
pub fn run(t: &Topology, opts: &ApiOptions) -> anyhow::Result<RunReport> {
    let SourceConfig::Api(input) = &t.source else {
        anyhow::bail!("{}: source.type is not \"api\"", t.file);
    };
    let listen = t
        .service
        .listen
        .clone()
        .context("service.listen: the scoring API needs an address")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("fraudstream-io")
        .build()?;
    let engine = start_engine(t)?;
    let sinks = SinkWriter::start(&t.sinks, SINK_BATCH)?;
    let (queue, rx) = bounded::<Work>(input.queue);
    let health = Arc::new(Health::default());
    let idle = (t.service.stop_when_idle_ms > 0)
        .then(|| Duration::from_millis(t.service.stop_when_idle_ms as u64));
    let started = Instant::now();
    let (watcher, reloads) = RulesWatch::start(t)?;
    let engine_health = health.clone();
    let (dashboard, feed) = Dashboard::new("api");
    let answering = Answering::new(t);
    let thread = std::thread::Builder::new()
        .name("fraudstream-engine".into())
        .spawn(move || {
            let settings = Settings {
                reloads,
                answering,
                health: engine_health,
                idle,
                dashboard,
            };
            engine_loop(engine, sinks, rx, settings)
        })?;
    let api = Api {
        queue: queue.clone(),
        slots: Arc::new(Semaphore::new(input.max_concurrent)),
        input: input.clone(),
        section: "source",
    };
    // Signals are caught from before the address is printed.
    let stop = {
        let _in_runtime = rt.enter();
        crate::exec::service::Shutdown::install()
    };
    let bound = rt.block_on(http::serve(
        &listen,
        health.clone(),
        crate::exec::service::prometheus::recorder(),
        Limits::of(&t.service),
        Some(routes(api)),
        Some(feed),
    ))?;
    health.set_phase(Phase::Running);
    if !opts.quiet {
        eprintln!(
            "fraudstream: scoring API on http://{bound} (POST /v1/score, POST /v1/labels; \
             live dashboard at /); SIGINT or SIGTERM stops it"
        );
    }
    rt.block_on(async {
        let mut stop = Box::pin(stop.wait());
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if thread.is_finished() {
                        break;
                    }
                }
            }
        }
    });
    health.set_phase(Phase::Stopping);
    watcher.stop();
    // Blocks only while the queue is full; the thread is taking from it.
    let _ = queue.send(Work::Stop);
    drop(queue);
    let finished = match thread.join() {
        Ok(r) => r?,
        Err(panic) => anyhow::bail!(
            "the engine thread panicked: {}",
            crate::panic_message(&*panic)
        ),
    };
    rt.shutdown_background();
    let Finished {
        engine,
        sinks,
        input,
        events,
    } = finished;
    let written = sinks.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    save_model(t, &engine)?;
    let report = run_report(t, &engine, input, events, seconds, written);
    publish_report(t, &report, opts.quiet)?;
    Ok(report)
}
