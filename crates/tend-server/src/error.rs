use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The JSON body of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One sentence saying what was wrong.
    pub error: String,
}

/// The API's one error type: a status and a sentence, sent as
/// `{"error": "…"}`. A 4xx says what was wrong with the request; a 5xx logs
/// the cause and sends a generic sentence.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// Any 4xx with the given sentence (the refusals of the request guard:
    /// 403, 405, 408, 413, 415, 421).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400 with the given sentence.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message:
                "missing or wrong API token: send Authorization: Bearer <token> (or x-api-key)"
                    .into(),
        }
    }

    /// 408: a wait ran out.
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: message.into(),
        }
    }

    /// 503: the daemon is stopping.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    /// 500, logging the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error; see the daemon's log".into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<tend_ledger::Error> for ApiError {
    fn from(e: tend_ledger::Error) -> Self {
        use tend_ledger::Error as E;
        match e {
            E::NotFound(_) => ApiError {
                status: StatusCode::NOT_FOUND,
                message: e.to_string(),
            },
            E::Ambiguous { .. } | E::BadId(_) => ApiError::bad_request(e.to_string()),
            E::IllegalTransition { .. } => ApiError {
                status: StatusCode::CONFLICT,
                message: e.to_string(),
            },
            other => ApiError::internal(other),
        }
    }
}

impl From<tend_supervisor::Error> for ApiError {
    fn from(e: tend_supervisor::Error) -> Self {
        match e {
            tend_supervisor::Error::Ledger(l) => l.into(),
            tend_supervisor::Error::Unavailable { .. } => ApiError::bad_request(e.to_string()),
            tend_supervisor::Error::Foreign { .. } | tend_supervisor::Error::OtherLedger { .. } => {
                ApiError {
                    status: StatusCode::CONFLICT,
                    message: e.to_string(),
                }
            }
            other => ApiError::internal(other),
        }
    }
}
