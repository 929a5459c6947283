//! The OpenAPI document of the admin API, generated from the handlers'
//! annotations and served at `/api/v1/openapi.json`; [`super::docs`]
//! renders it as a page at `/api/v1/docs`.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wharf admin API",
        description = "Repositories, uploads, tasks, groups, users, roles and permissions of a \
            Wharf server. Log in with `POST /api/v1/login` (HTTP basic) and send the token as \
            `Authorization: Bearer <token>`; what each endpoint needs is in docs/access.md."
    ),
    paths(
        crate::repos::create,
        crate::repos::list,
        crate::repos::show,
        crate::repos::update,
        crate::repos::delete,
        crate::repos::content,
        crate::repos::import,
        crate::repos::sync,
        crate::repos::publish,
        crate::repos::copy,
        crate::repos::remove,
        crate::repos::tag,
        crate::repos::retain,
        crate::remotes::create,
        crate::remotes::list,
        crate::remotes::show,
        crate::remotes::update,
        crate::remotes::remove,
        crate::versions::list,
        crate::versions::show,
        crate::versions::diff,
        crate::versions::restore,
        crate::uploads::create,
        crate::uploads::status,
        crate::uploads::put_chunk,
        crate::uploads::delete,
        crate::tasks::api::list,
        crate::tasks::api::show,
        crate::tasks::api::cancel,
        crate::groups::create,
        crate::groups::list,
        crate::groups::show,
        crate::groups::update,
        crate::groups::remove,
        crate::schedules::create,
        crate::schedules::list,
        crate::schedules::show,
        crate::schedules::update,
        crate::schedules::remove,
        crate::groups::add_member,
        crate::groups::remove_member,
        crate::orphans::cleanup,
        crate::fsck::start,
        crate::plugins::api::list, crate::plugins::api::install, crate::plugins::api::remove,
        crate::events::api::create, crate::events::api::list, crate::events::api::remove,
        crate::auth::api::login,
        crate::auth::api::logout,
        crate::auth::api::me,
        crate::auth::api::change_own_password,
        crate::auth::api::create_user,
        crate::auth::api::list_users,
        crate::auth::api::show_user,
        crate::auth::api::update_user,
        crate::auth::api::delete_user,
        crate::auth::api::create_role,
        crate::auth::api::list_roles,
        crate::auth::api::show_role,
        crate::auth::api::delete_role,
        crate::auth::api::add_role_user,
        crate::auth::api::remove_role_user,
        crate::auth::api::list_permissions,
        crate::auth::api::grant,
        crate::auth::api::revoke,
        crate::auth::registry_token::token,
    ),
    components(schemas(
        crate::http::ApiErrorBody,
        wharf_store::db::Task,
        wharf_store::db::Repository,
        wharf_store::db::Group,
        wharf_store::db::Role,
        wharf_store::db::Permission,
        wharf_store::db::Operation,
        wharf_store::db::Schedule,
        wharf_store::db::ScheduledJob,
        wharf_store::db::ScheduleClaim
    )),
    tags(
        (name = "repositories", description = "Repositories of any content type: create, change, list their content and versions, and start the long operations (import, sync, publish, copy, remove, tag, restore, retain), each a task."),
        (name = "remotes", description = "Remotes: upstream settings (feed, credentials, CA, TLS switch, proxy, download concurrency, rate limit) repositories of one content type share through their importer setting `remote`."),
        (name = "uploads", description = "Resumable chunked uploads, then imported into a repository."),
        (name = "tasks", description = "Long operations: their state, live progress, result or error; cancel."),
        (name = "groups", description = "Repository groups, with members and notes."),
        (name = "orphans", description = "Content no repository holds any more."),
        (name = "blobs", description = "The stored blobs: a check of their bytes against their names."),
        (name = "schedules", description = "Recurring syncs, publishes and orphan cleanups (ISO 8601 repeating intervals), each run a task, run once per due time whatever the number of nodes."),
        (name = "plugins", description = "Content-type plugins: list, install (hot-load, upgrade), remove."),
        (name = "events", description = "Event listeners (http, amqp) told when tasks and repositories change."),
        (name = "auth", description = "Login tokens, users, roles and permissions (docs/access.md)."),
    ),
    modifiers(&Security),
    security(("token" = []), ("basic" = []))
)]
pub struct ApiDoc;

/// The two ways to authenticate: a login token or HTTP basic.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
