use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The JSON body of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One sentence saying what was wrong.
    pub error: String,
    /// The request field that was refused, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The API's one error type: a status and a sentence, sent as
/// `{"error": "…"}`. A 4xx says what was wrong with the request; a 5xx logs
/// the cause and sends a generic sentence.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    /// Any 4xx with the given sentence (the refusals of the request guard:
    /// 403, 405, 408, 413, 415, 421).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400 with the given sentence.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 for one refused field: `{"error": "field: sentence", "field":
    /// "field"}`, so a person reads it whole and a program finds the field.
    pub fn field(field: &'static str, sentence: impl std::fmt::Display) -> Self {
        ApiError {
            field: Some(field),
            ..ApiError::bad_request(format!("{field}: {sentence}"))
        }
    }

    /// 400 for a run option refused by the validator `tend run` shares, in
    /// the CLI's words.
    pub fn option(e: tend_model::run::OptionError) -> Self {
        ApiError::field(e.field, e)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token: send Authorization: Bearer <token> (or x-api-key)",
        )
    }

    /// 408: a wait ran out.
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, message.into())
    }

    /// 503: the daemon is stopping.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message.into())
    }

    /// 500, logging the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the daemon's log",
        )
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
            Json(ErrorBody {
                error: self.message,
                field: self.field.map(str::to_string),
            }),
        )
            .into_response()
    }
}

impl From<tend_ledger::Error> for ApiError {
    fn from(e: tend_ledger::Error) -> Self {
        use tend_ledger::Error as E;
        match e {
            E::NotFound(_) | E::NoJob(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            E::JobExists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            E::Ambiguous { .. } | E::BadId(_) => ApiError::bad_request(e.to_string()),
            E::IllegalTransition { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            // Transient: the client may try again, as the CLI would.
            E::Busy { .. } => ApiError::unavailable(e.to_string()),
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
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}
