//! The API's own description: the OpenAPI document and a page to read it.

pub mod docs_page;
pub mod openapi_json;
