//! `GET /api/v1/stats`: the figures of `tend stats`, computed by the ledger.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use tend_model::wire::Stats;
use utoipa::ToSchema;

use super::extract::{duration, ApiQuery};
use crate::{ApiError, AppState};

/// Which executions to count.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Only created within this long (`7d`; default `1d`).
    #[param(pattern = r"^(0|([0-9]{1,9}(ms|s|m|h|d)){1,4})$")]
    pub since: Option<String>,
    /// Glob on the name.
    pub name: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/stats", params(StatsQuery),
    responses((status = 200, body = Stats), (status = 400, description = "bad filter")), security(("token" = [])))]
pub(super) async fn stats(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let since = duration("since", &q.since)?.unwrap_or(std::time::Duration::from_secs(86_400));
    if let Some(n) = &q.name {
        tend_model::Glob::parse(n).map_err(|e| ApiError::field("name", e))?;
    }
    let since_ms = tend_ledger::ms_ago(since);
    s.blocking(move |_, l| Ok(Json(l.stats(Some(since_ms), q.name.as_deref())?)))
        .await
}
