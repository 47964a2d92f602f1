//! Bearer-token authentication for every endpoint.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// Lets a request through only with the daemon's token, given as
/// `Authorization: Bearer T` or `x-api-key: T`. The comparison takes the
/// same time whatever the token's prefix, and the token is never logged.
/// There is no way to switch this off (issue 8: an empty `TEND_TOKEN` used
/// to).
pub async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let want = state.token();
    let headers = req.headers();
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(want.as_bytes())) => Ok(next.run(req).await),
        _ => Err(ApiError::unauthorized()),
    }
}
