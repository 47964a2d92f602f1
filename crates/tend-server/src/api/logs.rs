//! An execution's output: `GET /api/v1/executions/{id}/logs`, a byte range
//! or (with `follow`) a stream until the execution ends.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{resolve, ApiQuery, IdPath};
use crate::{ApiError, AppState};

/// Largest log read without `follow`.
const MAX_LOG_READ: u64 = 16 << 20;

/// Which log and how much.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// `stdout` (default) or `stderr`.
    #[param(pattern = "^(stdout|stderr)$")]
    pub stream: Option<String>,
    /// Keep the response open and stream output until the execution ends.
    #[serde(default)]
    pub follow: bool,
    /// Start at this byte.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub offset: Option<u64>,
    /// At most this many bytes (default and maximum 16 MiB) without `follow`.
    #[param(minimum = 1, maximum = 16777216)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", params(IdPath, LogsQuery),
    responses((status = 200, description = "output", content_type = "text/plain"), (status = 404, description = "unknown id")),
    security(("token" = [])))]
pub(super) async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let stderr = match q.stream.as_deref() {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream: '{other}' is not stdout or stderr"
            )))
        }
    };
    if q.offset.is_some_and(|o| o > i64::MAX as u64) {
        return Err(ApiError::bad_request(
            "offset: must be at most 9223372036854775807",
        ));
    }
    if q.limit.is_some_and(|l| l == 0 || l > MAX_LOG_READ) {
        return Err(ApiError::bad_request(format!(
            "limit: must be between 1 and {MAX_LOG_READ}"
        )));
    }
    let limit = q.limit.unwrap_or(MAX_LOG_READ);
    let offset = q.offset.unwrap_or(0);
    let e = s.blocking(move |_, l| resolve(l, &id)).await?;
    // The path comes from the ledger row, never from the request.
    let path = std::path::PathBuf::from(if stderr {
        &e.stderr_path
    } else {
        &e.stdout_path
    });
    if !q.follow {
        let data = tokio::task::spawn_blocking(move || read_range(&path, offset, limit))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response());
    }
    let rx = s.subscribe();
    let body =
        axum::body::Body::from_stream(crate::logs::follow_stream(s.clone(), e, path, offset, rx));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

fn read_range(path: &std::path::Path, offset: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if offset >= f.metadata()?.len() {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out)?;
    Ok(out)
}
