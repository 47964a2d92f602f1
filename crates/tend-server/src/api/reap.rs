//! `POST /api/v1/reap`: the reaper pass `tend reap` makes
//! ([`tend_supervisor::reap`]), now.

use axum::extract::State;
use axum::Json;
use tend_model::wire::Reaped;

use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/api/v1/reap", responses((status = 200, body = Reaped)), security(("token" = [])))]
pub(super) async fn reap(State(s): State<AppState>) -> Result<Json<Reaped>, ApiError> {
    s.blocking(|s, l| {
        let reaped = tend_supervisor::reap(l, &s.config().home, false, s.config().run.kill_grace)?;
        s.note_reaped(reaped.lost.len(), reaped.stragglers.len());
        Ok(Json(reaped))
    })
    .await
}
