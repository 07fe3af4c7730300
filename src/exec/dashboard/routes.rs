//! The dashboard's routes on the service's HTTP port: `GET /` (one
//! self-contained page: inline CSS and JS, SVG charts drawn in the browser;
//! it loads nothing but `/events` from its own server), `GET /events`
//! (server-sent events, one JSON [`Snapshot`](super::Snapshot) per tick)
//! and `GET /api/dashboard` (the latest snapshot).

use super::DashboardFeed;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use std::convert::Infallible;

/// The page (`src/exec/dashboard/page.html`).
pub const PAGE: &str = include_str!("page.html");

/// The browser may load nothing from elsewhere: scripts and styles are the
/// page's own, data comes from its server, the icon is inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'";

/// The paths these routes serve, for a 404's list.
pub const PATHS: &str = "GET / (dashboard), GET /events, GET /api/dashboard";

/// `/`, `/events` and `/api/dashboard` over `feed`.
pub fn routes(feed: DashboardFeed) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/api/dashboard", get(latest))
        .with_state(feed)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn latest(State(feed): State<DashboardFeed>) -> Response {
    let json = serde_json::to_string(&**feed.borrow()).expect("snapshots serialize");
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        json,
    )
        .into_response()
}

/// The latest snapshot at once, then each new one; the stream ends when
/// the engine thread does (its end of the feed is dropped). A client that
/// falls behind skips snapshots rather than queueing them.
async fn events(
    State(feed): State<DashboardFeed>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((feed, true), |(mut feed, first)| async move {
        if !first {
            feed.changed().await.ok()?;
        }
        let snapshot = feed.borrow_and_update().clone();
        let json = serde_json::to_string(&*snapshot).expect("snapshots serialize");
        Some((Ok(Event::default().data(json)), (feed, false)))
    });
    Sse::new(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_no_other_server() {
        for scheme in ["http://", "https://", "//"] {
            let outside = PAGE
                .match_indices(scheme)
                .filter(|(i, _)| {
                    // `//` comments in the script are not addresses.
                    scheme != "//" || PAGE[..*i].ends_with(['"', '\'', '(', '='])
                })
                .count();
            assert_eq!(outside, 0, "the page refers to {scheme}...");
        }
        assert!(
            PAGE.contains("new EventSource(\"events\")"),
            "data from /events"
        );
    }
}
