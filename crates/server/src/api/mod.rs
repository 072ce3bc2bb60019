//! Routes, grouped as in the HTTP contract (the README's API sections).

mod alarms;
mod cobot;
mod controllers;
mod crm;
mod decisions;
mod directory;
mod door_modes;
mod doorbell;
mod events;
mod guests;
mod lockcloud;
mod lockdown;
pub(crate) mod lookup;
pub(crate) mod ops;
mod scim;
mod signed;
mod sites;
mod slack;
mod visit;
mod webhooks;
mod zones;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "lintel", description = "The self-hosted access-control hub: directory, decisions, doors, events."),
    modifiers(&BearerAuth),
    tags(
        (name = "directory", description = "People, credentials, sites, doors, groups and grants"),
        (name = "decisions", description = "May this credential open this door now?"),
        (name = "doors", description = "Running a building: lockdown, emergency release, holds, holidays, door inputs, alarms and anti-passback zones"),
        (name = "events", description = "The event log and attendance"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "integrations", description = "The membership platform's webhooks and sync; the inbox and outbox of work with other systems"),
        (name = "signed operations", description = "Users' keys and the operations they sign: unlock, share, remove; the user directory"),
        (name = "slack", description = "The Slack app: slash commands, events, the doorbell and its Open door button"),
        (name = "scim", description = "SCIM 2.0 provisioning (RFC 7643, 7644): identity providers create, change, deactivate and remove users and groups"),
        (name = "webhooks", description = "Outbound webhooks: endpoints that receive lintel's events, signed per Standard Webhooks"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("admin", bearer.clone());
        components.add_security_scheme("personal_secret", bearer.clone());
        // Users (not admins): a personal secret or an OpenID Connect ID token.
        components.add_security_scheme("user", bearer.clone());
        // An identity provider: a token with the scim scope.
        components.add_security_scheme("scim", bearer);
    }
}

/// The answers any route can give, added where a route's own annotation does not name
/// them: the extractors and the token check answer the same way on every route.
pub fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in &mut doc.paths.paths {
        // SCIM answers with its own error documents, each route listing them.
        if path.starts_with("/scim/") {
            continue;
        }
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in operations.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_input = op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            add_problem(op, 400, "malformed request: a parameter, the body or a header");
            if secured {
                add_problem(op, 401, "no token, or a token that is not valid here");
                add_problem(op, 429, "too many failed attempts; try again after Retry-After seconds");
            }
            if has_input {
                add_problem(op, 422, "well-formed, but not valid");
            }
            if op.request_body.is_some() {
                add_problem(op, 413, "larger than max_body_bytes");
                add_problem(op, 415, "a body of another content type than documented");
            }
            if path.starts_with("/hooks/") {
                add_problem(op, 404, "this integration is not configured");
            }
        }
    }
}

fn add_problem(op: &mut Operation, status: u16, description: &str) {
    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        ResponseBuilder::new()
            .description(description)
            .content(lintel_proto::PROBLEM_CONTENT_TYPE, content)
            .build()
            .into()
    });
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(directory::create_person, directory::list_people))
        .routes(routes!(directory::get_person, directory::patch_person, directory::delete_person))
        .routes(routes!(directory::issue_credential, directory::list_credentials))
        .routes(routes!(directory::get_credential, directory::revoke_credential))
        .routes(routes!(directory::start_enrolment))
        .routes(routes!(directory::get_enrolment))
        .routes(routes!(directory::create_door, directory::list_doors))
        .routes(routes!(directory::get_door, directory::patch_door, directory::delete_door))
        .routes(routes!(sites::create_site, sites::list_sites))
        .routes(routes!(sites::get_site, sites::patch_site, sites::delete_site))
        .routes(routes!(directory::create_group, directory::list_groups))
        .routes(routes!(directory::get_group, directory::delete_group))
        .routes(routes!(directory::add_member, directory::remove_member))
        .routes(routes!(directory::create_grant, directory::list_grants))
        .routes(routes!(directory::get_grant, directory::patch_grant, directory::delete_grant))
        .routes(routes!(guests::issue_guest_pass, guests::list_guest_passes))
        .routes(routes!(guests::get_guest_pass, guests::revoke_guest_pass))
        .routes(routes!(lockdown::start, lockdown::list))
        .routes(routes!(lockdown::lift))
        .routes(routes!(door_modes::hold, door_modes::end_hold))
        .routes(routes!(door_modes::list_holidays, door_modes::add_holiday))
        .routes(routes!(door_modes::import_holidays))
        .routes(routes!(door_modes::delete_holiday))
        .routes(routes!(door_modes::raise_emergency, door_modes::reset_emergency))
        .routes(routes!(alarms::report_input))
        .routes(routes!(alarms::list_alarms))
        .routes(routes!(alarms::ack_alarm))
        .routes(routes!(zones::list_zones))
        .routes(routes!(zones::get_zone, zones::put_zone, zones::delete_zone))
        .routes(routes!(zones::forgive))
        .routes(routes!(controllers::list_controllers))
        .routes(routes!(decisions::decide))
        .routes(routes!(decisions::admin_open))
        .routes(routes!(decisions::open_with_secret))
        .routes(routes!(events::list_events))
        .routes(routes!(events::stream_events))
        .routes(routes!(events::attendance))
        .routes(routes!(events::audit))
        .routes(routes!(events::audit_csv))
        .routes(routes!(events::events_csv_export))
        .routes(routes!(directory::people_csv_export))
        .routes(routes!(slack::commands))
        .routes(routes!(slack::events))
        .routes(routes!(slack::interactions))
        .routes(routes!(doorbell::ring))
        .routes(routes!(alarms::input_hook, alarms::input_hook_by_get))
        .routes(routes!(doorbell::snapshot))
        .routes(routes!(slack::reconcile_now))
        .routes(routes!(signed::add_lock_admin, signed::remove_lock_admin))
        .routes(routes!(signed::list_lock_admins))
        .routes(routes!(signed::me))
        .routes(routes!(signed::register_key, signed::list_keys))
        .routes(routes!(signed::revoke_key))
        .routes(routes!(signed::lookup_user))
        .routes(routes!(signed::shareable_locks))
        .routes(routes!(signed::submit_operation))
        .routes(routes!(cobot::webhook))
        .routes(routes!(lockcloud::webhook))
        .routes(routes!(cobot::sync_now))
        .routes(routes!(cobot::subscribe))
        .routes(routes!(cobot::outbox))
        .routes(routes!(cobot::retry_outbox))
        .routes(routes!(cobot::inbox))
        .routes(routes!(crm::issue_card))
        .routes(routes!(crm::photo))
        .routes(routes!(visit::page))
        .routes(routes!(visit::script))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::patch_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::rotate_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::replay_delivery))
        .routes(routes!(webhooks::resend))
        .routes(routes!(scim::service_provider_config))
        .routes(routes!(scim::resource_types))
        .routes(routes!(scim::resource_type))
        .routes(routes!(scim::schemas))
        .routes(routes!(scim::schema_by_id))
        .routes(routes!(scim::search_all))
        .routes(routes!(scim::scim_list_users, scim::scim_create_user))
        .routes(routes!(scim::scim_search_users))
        .routes(routes!(scim::scim_search_groups))
        .routes(routes!(scim::scim_get_user, scim::scim_replace_user, scim::scim_patch_user, scim::scim_delete_user))
        .routes(routes!(scim::scim_list_groups, scim::scim_create_group))
        .routes(routes!(
            scim::scim_get_group,
            scim::scim_replace_group,
            scim::scim_patch_group,
            scim::scim_delete_group
        ))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}
