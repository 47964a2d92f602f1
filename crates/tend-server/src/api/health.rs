//! `GET /api/v1/health`: the report `tend health` makes
//! ([`tend_supervisor::health::check`]), with the daemon's uptime.

use axum::extract::State;
use axum::Json;
use tend_model::wire::HealthReport;
use tend_supervisor::health::Thresholds;

use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = HealthReport)), security(("token" = [])))]
pub(super) async fn health(State(s): State<AppState>) -> Result<Json<HealthReport>, ApiError> {
    s.blocking(|s, l| {
        let c = s.config();
        let thresholds = Thresholds {
            long_running_after: c.long_running_after,
            long_running_count: c.long_running_alert,
        };
        let mut report = tend_supervisor::health::check(l, &c.home, &c.store, &thresholds)?;
        report.uptime_s = Some(s.uptime_s());
        Ok(Json(report))
    })
    .await
}
