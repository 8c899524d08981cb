//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' types and
//! annotations (utoipa), never written by hand.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::Caller;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "walaudit",
        description = "The audit trail of a Postgres database and the checks on it: audit events, \
                       row histories, validation jobs, reconciliations. Every route but /healthz \
                       needs `Authorization: Bearer <token>`; roles: viewer < auditor < operator \
                       < admin."
    ),
    paths(
        super::metrics_text,
        super::ready,
        document,
        super::events::audit_events,
        super::events::tables,
        super::events::history,
        super::manage::list_jobs,
        super::manage::get_job,
        super::manage::create_job,
        super::manage::put_job,
        super::manage::delete_job,
        super::manage::run_job,
        super::manage::job_runs,
        super::manage::get_run,
        super::manage::list_alerts,
        super::manage::gate,
        super::manage::list_reconciliations,
        super::manage::get_reconciliation,
        super::manage::run_reconciliation,
        super::manage::reconciliation_reports,
        super::manage::get_report,
    ),
    modifiers(&Bearer),
    tags(
        (name = "events", description = "Audit events and row histories"),
        (name = "jobs", description = "Validation jobs, runs, alerts and gates"),
        (name = "reconciliations", description = "Reconciliations and their reports"),
        (name = "operations", description = "Metrics, readiness and this document"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token of `walaudit token create`"))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "This document", body = Object),
        (status = 401, description = "No token, or an unknown one", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn document(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
