//! The OpenAPI document, generated from the handlers' annotations and the
//! types they use, so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(title = "tend", description = "Tracked executions with a ledger that never lies."),
    paths(
        api::health, api::list, api::launch, api::show, api::events, api::logs, api::kill, api::wait,
        api::reap, api::stream, crate::metrics::metrics
    ),
    components(schemas(
        tend_model::Execution, tend_model::Event, tend_model::Status, tend_model::KillMethod,
        tend_model::ProcessIdentity, tend_model::KillRequested, api::Health, api::LaunchRequest,
        api::KillBody, api::Killed, api::Reaped
    )),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

/// The document as a value (also used by tests).
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}
