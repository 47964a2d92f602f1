//! `GET /api/v1/events`: every transition, as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::AppState;

#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, description = "server-sent events: one `transition` event (an Execution as JSON) per status change", content_type = "text/event-stream")),
    security(("token" = [])))]
pub(super) async fn stream(
    State(s): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let mut transitions = BroadcastStream::new(s.subscribe());
    // Forward until the client goes or the daemon stops.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = transitions.next() => match m {
                    Some(m) => if tx.send(m).await.is_err() { return },
                    None => return,
                },
                _ = s.stopped() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).filter_map(|m| {
        m.ok().map(|e| {
            Ok(SseEvent::default()
                .event("transition")
                .id(format!("{}-{}", e.id, e.version))
                .json_data(&*e)
                .expect("executions serialise"))
        })
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(30)))
}
