//! The OpenAPI document, generated from the handlers' annotations and the
//! types they use, so it cannot drift from the code. It knows the handler
//! modules; the router mounts it.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{events, executions, health, jobs, kill, logs, reap, stats, wait};
use tend_model::wire;

#[derive(OpenApi)]
#[openapi(
    info(title = "tend", description = "Tracked executions with a ledger that never lies."),
    paths(
        health::health, executions::list, executions::launch, executions::show, executions::events,
        logs::logs, kill::kill, kill::bulk, wait::wait, reap::reap, stats::stats, events::stream, crate::metrics::metrics,
        jobs::list, jobs::add, jobs::show, jobs::remove, jobs::run, jobs::pause, jobs::resume
    ),
    components(schemas(
        tend_model::Execution, tend_model::Event, tend_model::Status, tend_model::KillMethod,
        tend_model::ProcessIdentity, tend_model::KillRequested, wire::HealthReport,
        wire::HealthCheck, wire::HealthStatus, tend_model::run::RunOptions, kill::KillBody, kill::BulkKill, kill::BulkKilled,
        wire::Killed, wire::Reaped, wire::Stats, wire::Percentiles, wire::Counted, wire::Hour, wire::MarkedLost, wire::StrayProcess, crate::error::ErrorBody,
        tend_model::job::JobSpec, tend_model::job::JobDefinition, tend_model::job::Job,
        tend_model::job::JobView, tend_model::job::JobDetail, tend_model::job::JobEvent,
        tend_model::Concurrency, tend_model::CatchUp
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
        // Every operation can answer 401 (no or wrong token), 400 (bad
        // input: ids, query strings, bodies), 403 and 421 (the request
        // guard: a foreign Origin, a Host that does not name the daemon),
        // and a POST 408, 413 and 415 (its body: too slow, too large, not
        // declared JSON), all with the same JSON error body.
        for (path, item) in doc.paths.paths.iter_mut() {
            let by_id = path.contains("{id}");
            let by_name = path.contains("{name}");
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.delete, false),
            ];
            for (op, post) in ops.into_iter().filter_map(|(o, p)| Some((o.as_mut()?, p))) {
                let mut codes = vec![
                    ("400", "bad input; the body names the problem"),
                    ("401", "missing or wrong token"),
                    ("403", "sent from a web page of another origin"),
                    ("421", "the Host header does not name this daemon"),
                ];
                if post {
                    codes.extend([
                        ("408", "the body did not arrive within the body timeout"),
                        ("413", "the body is larger than 64 KiB"),
                        (
                            "415",
                            "the body is not declared Content-Type: application/json",
                        ),
                    ]);
                }
                if by_id {
                    codes.push(("404", "no execution has this id or prefix"));
                }
                if by_name {
                    codes.push(("404", "no job has this name"));
                }
                for (code, what) in codes {
                    op.responses
                        .responses
                        .entry(code.into())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(what)
                                    .content(
                                        "application/json",
                                        ContentBuilder::new()
                                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                                            .build(),
                                    )
                                    .build(),
                            )
                        });
                }
            }
        }
    }
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
