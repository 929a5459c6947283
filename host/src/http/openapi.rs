//! The OpenAPI document of the admin API, generated from the handlers'
//! annotations and served at `/api/v1/openapi.json`.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wharf admin API",
        description = "Repositories, uploads, tasks and groups of a Wharf server."
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
        crate::groups::add_member,
        crate::groups::remove_member,
        crate::orphans::cleanup,
    ),
    components(schemas(
        crate::http::error::ApiErrorBody,
        crate::db::Task,
        crate::db::Repository,
        crate::db::Group
    ))
)]
pub struct ApiDoc;

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
