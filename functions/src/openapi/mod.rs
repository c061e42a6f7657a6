//! The OpenAPI 3.1 document of the route table. Every route's handler module declares its
//! `api()` (`ApiDoc`): the Rust types it parses and renders, its query parameters, the
//! statuses it answers. Schemas come from those types (`utoipa::ToSchema`); what the router
//! adds to every route of an access or envelope (credentials, rate limits, error envelopes)
//! is added here, from the route table, so the document cannot list a route that does not
//! exist or miss one that does.

mod page;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use http::Method;
use serde_json::{json, Map, Value};
use shared::idempotency::MAX_IDEMPOTENCY_KEY;
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

pub use page::docs_page;

use crate::http::{Access, Envelope, ErrorBody, StatusErrorBody, V1ErrorBody, MAX_BODY_BYTES};
use crate::routes::{Route, ROUTES};

type Schemas = Vec<(String, RefOr<Schema>)>;
/// Registers a type's schema (and those it refers to) and answers a reference to it.
type SchemaFn = fn(&mut Schemas) -> Value;

fn schema_of<T: ToSchema>(all: &mut Schemas) -> Value {
    T::schemas(all);
    all.push((T::name().into_owned(), T::schema()));
    json!({"$ref": format!("#/components/schemas/{}", T::name())})
}

fn list_of<T: ToSchema>(all: &mut Schemas) -> Value {
    json!({"type": "array", "items": schema_of::<T>(all)})
}

/// How a request body is sent.
#[derive(Clone, Copy)]
enum BodyKind {
    Json,
    /// An HTML form's fields.
    Form,
    /// A form's fields, or the same fields as JSON for scripts.
    FormOrJson,
}

#[derive(Clone, Copy)]
enum Content {
    Json(SchemaFn),
    Html,
    /// A redirect (`Location`), no body worth describing.
    Redirect,
}

struct Answer {
    status: u16,
    description: &'static str,
    content: Content,
}

struct Query {
    name: &'static str,
    description: &'static str,
    schema: Value,
}

/// What one route's handler takes and answers, as its module declares it.
pub struct ApiDoc {
    summary: &'static str,
    body: Option<(BodyKind, SchemaFn, bool)>,
    query: Vec<Query>,
    answers: Vec<Answer>,
    errors: Vec<u16>,
    idempotent_key: bool,
}

impl ApiDoc {
    pub fn new(summary: &'static str) -> Self {
        ApiDoc {
            summary,
            body: None,
            query: Vec::new(),
            answers: Vec::new(),
            errors: Vec::new(),
            idempotent_key: false,
        }
    }

    /// A required JSON body of type `T`.
    pub fn json_body<T: ToSchema>(mut self) -> Self {
        self.body = Some((BodyKind::Json, schema_of::<T>, true));
        self
    }

    /// An HTML form's fields (`application/x-www-form-urlencoded`), described by `T`.
    pub fn form_body<T: ToSchema>(mut self) -> Self {
        self.body = Some((BodyKind::Form, schema_of::<T>, false));
        self
    }

    /// A form's fields or the same as JSON, described by `T`; optional.
    pub fn form_or_json_body<T: ToSchema>(mut self) -> Self {
        self.body = Some((BodyKind::FormOrJson, schema_of::<T>, false));
        self
    }

    /// A query parameter with its JSON schema.
    pub fn query(mut self, name: &'static str, description: &'static str, schema: Value) -> Self {
        self.query.push(Query {
            name,
            description,
            schema,
        });
        self
    }

    /// Answers `T` as JSON with `status` (inside the route's envelope, if it has one).
    pub fn answers<T: ToSchema>(mut self, status: u16, description: &'static str) -> Self {
        self.answers.push(Answer {
            status,
            description,
            content: Content::Json(schema_of::<T>),
        });
        self
    }

    /// Answers a JSON array of `T` with `status`.
    pub fn answers_list<T: ToSchema>(mut self, status: u16, description: &'static str) -> Self {
        self.answers.push(Answer {
            status,
            description,
            content: Content::Json(list_of::<T>),
        });
        self
    }

    /// Answers an HTML page with `status`.
    pub fn html(mut self, status: u16, description: &'static str) -> Self {
        self.answers.push(Answer {
            status,
            description,
            content: Content::Html,
        });
        self
    }

    /// Answers a redirect (`Location` header) with `status`.
    pub fn redirect(mut self, status: u16, description: &'static str) -> Self {
        self.answers.push(Answer {
            status,
            description,
            content: Content::Redirect,
        });
        self
    }

    /// Error statuses the handler itself may answer (the router's own are added from the
    /// route's access and envelope).
    pub fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// Takes an `Idempotency-Key` header.
    pub fn idempotency_key(mut self) -> Self {
        self.idempotent_key = true;
        self
    }
}

/// The document's own top level, for `GET /openapi.json`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenApiDocument {
    /// `3.1.0`.
    openapi: String,
    #[schema(value_type = Object)]
    info: Value,
    #[schema(value_type = Object)]
    paths: Value,
    #[schema(value_type = Object)]
    components: Value,
}

/// The document, built once per process.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| build(ROUTES))
}

/// The document as served (`GET /openapi.json`).
pub fn document_json() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| document().to_string())
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "The request is invalid; `error` says what to fix. Nothing changed.",
        401 => "Credentials are missing or wrong.",
        403 => "Refused: another site's request, or not allowed for this caller.",
        404 => "Not found.",
        405 => "Method not allowed.",
        409 => "Conflicts with the current state.",
        408 => "The body did not arrive in time.",
        413 => "The body is larger than the limit.",
        415 => "The body must be JSON (`Content-Type: application/json`).",
        429 => "Too many requests; `Retry-After` says when to try again.",
        500 => "Internal error; `error_id` names it in the logs.",
        503 => "A dependency is unavailable or busy; try again.",
        _ => "Error.",
    }
}

/// The statuses the router itself may answer for `route` before or around its handler.
fn router_errors(route: &Route, has_body: bool) -> Vec<u16> {
    // Any store call may find the store busy or unavailable (503).
    let mut out = vec![500, 503];
    if has_body {
        // 408: the local server's limit on a slow body (API Gateway has its own).
        out.extend([400, 408, 413, 415]);
    }
    let writes = !matches!(route.method, Method::GET | Method::HEAD | Method::OPTIONS);
    match route.access {
        // Ambient credentials (the seat cookie) make a cross-site write a 403.
        Access::Public | Access::Seat if writes => out.push(403),
        Access::Public | Access::Seat => {}
        Access::Vm(_) => out.extend([400, 401]),
        Access::VmOrAdmin(_) | Access::Admin | Access::ApiKeyOrAdmin => {
            // Failed admin logins are throttled per address; admin writes from another
            // site are refused.
            out.extend([401, 403, 429]);
        }
        Access::ApiKey => out.push(401),
    }
    if route.envelope == Envelope::Success {
        out.push(429);
    }
    if !route.path_params().is_empty() {
        out.push(404);
    }
    out
}

fn security(access: Access) -> Value {
    match access {
        Access::Public => json!([]),
        Access::Seat => json!([{"seatCookie": []}, {}]),
        Access::Vm(_) => json!([{"vmToken": []}]),
        Access::VmOrAdmin(_) => json!([{"vmToken": []}, {"adminBasic": []}]),
        Access::Admin => json!([{"adminBasic": []}]),
        Access::ApiKey => json!([{"apiKey": []}]),
        Access::ApiKeyOrAdmin => json!([{"apiKey": []}, {"adminBasic": []}]),
    }
}

fn tag(route: &Route) -> &'static str {
    let p = route.path;
    if p == "/openapi.json" || p == "/docs" {
        "documentation"
    } else if p.starts_with("/api/v1/requests") {
        "GPU requests"
    } else if p.starts_with("/api/v1/api-keys") {
        "API keys"
    } else if p.starts_with("/api/v1/") {
        "offers and instances"
    } else if p.starts_with("/api/collect") || p == "/api/scp-client" {
        "participants' work"
    } else if route.envelope == Envelope::Status {
        "capacity pools"
    } else {
        match route.access {
            Access::Public | Access::Seat => "seats",
            Access::Vm(_) | Access::VmOrAdmin(_) => "VM agent",
            _ => "fleet (admin)",
        }
    }
}

fn operation_id(route: &Route) -> String {
    // Two paths of one function (aliases) need distinct ids.
    let same_function = ROUTES
        .iter()
        .filter(|r| r.function == route.function && r.method == route.method)
        .count();
    if same_function == 1 {
        route.function.to_string()
    } else {
        let suffix: String = route
            .path
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("{}{}", route.function, suffix.trim_end_matches('_'))
    }
}

fn wrap(envelope: Envelope, data: Value) -> Value {
    match envelope {
        Envelope::Plain => data,
        Envelope::Success => json!({
            "type": "object",
            "required": ["success", "message"],
            "properties": {
                "success": {"const": true},
                "message": {"type": "string"},
                "data": data,
            },
        }),
        Envelope::Status => json!({
            "type": "object",
            "required": ["status", "data", "message"],
            "properties": {
                "status": {"const": "success"},
                "message": {"type": "string"},
                "data": data,
            },
        }),
    }
}

/// Headers of an answer: the v1 API's rate-limit headers (on answers counted against a
/// limit: all but refused admin logins), `Retry-After` on a 429.
fn answer_headers(route: &Route, status: u16) -> Option<Value> {
    let mut headers = Map::new();
    let int =
        |description: &str| json!({"description": description, "schema": {"type": "integer"}});
    if route.envelope == Envelope::Success {
        headers.insert(
            "X-RateLimit-Limit".into(),
            int("Requests allowed per minute for this caller."),
        );
        headers.insert(
            "X-RateLimit-Remaining".into(),
            int("Requests left in the current minute."),
        );
        headers.insert(
            "X-RateLimit-Reset".into(),
            int("When the minute ends (Unix seconds)."),
        );
    }
    if status == 429 {
        headers.insert(
            "Retry-After".into(),
            int("Seconds to wait before trying again."),
        );
    }
    (!headers.is_empty()).then_some(Value::Object(headers))
}

/// Adds `more` to the object at `resp[key]`.
fn merge(resp: &mut Value, key: &str, more: Map<String, Value>) {
    if !resp[key].is_object() {
        resp[key] = json!({});
    }
    if let Some(all) = resp[key].as_object_mut() {
        all.extend(more);
    }
}

fn build(routes: &[Route]) -> Value {
    let mut schemas: Schemas = Vec::new();
    let plain_error = schema_of::<ErrorBody>(&mut schemas);
    let v1_error = schema_of::<V1ErrorBody>(&mut schemas);
    let status_error = schema_of::<StatusErrorBody>(&mut schemas);
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for route in routes {
        let doc = (route.api)();
        let mut op = Map::new();
        op.insert("operationId".into(), json!(operation_id(route)));
        op.insert("summary".into(), json!(doc.summary));
        op.insert("tags".into(), json!([tag(route)]));
        op.insert("security".into(), security(route.access));
        let mut parameters: Vec<Value> = route
            .path_params()
            .into_iter()
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 256}})
            })
            .collect();
        for q in &doc.query {
            parameters.push(json!({"name": q.name, "in": "query", "required": false,
                                   "description": q.description, "schema": q.schema}));
        }
        if doc.idempotent_key {
            parameters.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Repeating a request with the same key answers the first result (24 h).",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": "^[ \t!-~]+$"}}));
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some((kind, schema, required)) = doc.body {
            let schema = schema(&mut schemas);
            let mut content = Map::new();
            if let BodyKind::Json | BodyKind::FormOrJson = kind {
                content.insert("application/json".into(), json!({"schema": schema}));
            }
            if let BodyKind::Form | BodyKind::FormOrJson = kind {
                content.insert(
                    "application/x-www-form-urlencoded".into(),
                    json!({"schema": schema}),
                );
            }
            op.insert(
                "requestBody".into(),
                json!({
                    "required": required,
                    "description": format!("At most {MAX_BODY_BYTES} bytes."),
                    "content": content,
                }),
            );
        }
        // One status may answer JSON to scripts and HTML to browsers: their contents merge.
        let mut responses: BTreeMap<u16, Value> = BTreeMap::new();
        for a in &doc.answers {
            let content = match a.content {
                Content::Json(schema) => {
                    let data = schema(&mut schemas);
                    Some(json!({"application/json": {"schema": wrap(route.envelope, data)}}))
                }
                Content::Html => Some(json!({"text/html": {"schema": {"type": "string"}}})),
                Content::Redirect => None,
            };
            let resp = responses
                .entry(a.status)
                .or_insert_with(|| json!({"description": a.description}));
            if let Content::Redirect = a.content {
                resp["headers"]["Location"] = json!({"schema": {"type": "string"}});
            }
            if let Some(Value::Object(content)) = content {
                merge(resp, "content", content);
            }
        }
        let mut errors = router_errors(route, doc.body.is_some());
        errors.extend(&doc.errors);
        let error_schema = match route.envelope {
            Envelope::Plain => &plain_error,
            Envelope::Success => &v1_error,
            Envelope::Status => &status_error,
        };
        for status in errors {
            let resp = responses
                .entry(status)
                .or_insert_with(|| json!({"description": error_description(status)}));
            let has_json = resp["content"].get("application/json").is_some();
            if !has_json {
                let mut content = Map::new();
                content.insert("application/json".into(), json!({"schema": error_schema}));
                merge(resp, "content", content);
            }
        }
        for (status, resp) in responses.iter_mut() {
            if let Some(Value::Object(headers)) = answer_headers(route, *status) {
                merge(resp, "headers", headers);
            }
        }
        let responses: Map<String, Value> = responses
            .into_iter()
            .map(|(status, resp)| (status.to_string(), resp))
            .collect();
        op.insert("responses".into(), Value::Object(responses));
        let method = route.method.as_str().to_ascii_lowercase();
        paths
            .entry(route.path)
            .or_default()
            .insert(method, Value::Object(op));
    }
    let components: Map<String, Value> = schemas
        .into_iter()
        .map(|(name, schema)| {
            let schema = serde_json::to_value(schema).unwrap_or(Value::Null);
            (name, schema)
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gpufleet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Hands out GPU VMs to workshop participants, leases GPUs to API-key users with quotas, \
                runs instances from offers and shows the fleet as capacity pools. Generated from the route table \
                and the types the handlers parse and render.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "adminBasic": {"type": "http", "scheme": "basic",
                    "description": "The admin's user and password (GPUFLEET_ADMIN_USER, GPUFLEET_ADMIN_PASSWORD)."},
                "vmToken": {"type": "http", "scheme": "bearer",
                    "description": "The VM's own token, given to it at launch; valid only for its hostname."},
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "gpf_…",
                    "description": "A user's API key, created by an admin (`POST /api/v1/api-keys`)."},
                "seatCookie": {"type": "apiKey", "in": "cookie", "name": crate::http::SEAT_COOKIE,
                    "description": "A participant's seat, set when they claim a VM (or the seat link's token in the path)."},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_route_is_in_the_document_once() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
            .collect();
        assert_eq!(documented, routes);
        assert_eq!(routes.len(), ROUTES.len(), "a route is listed twice");
    }

    #[test]
    fn every_operation_is_complete_and_every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referred to, not defined"
            );
        }
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let what = format!("{method} {path}");
                assert!(
                    ids.insert(op["operationId"].to_string()),
                    "{what}: id repeats"
                );
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses
                        .keys()
                        .any(|s| s.starts_with('2') || s.starts_with('3')),
                    "{what}: no success answer"
                );
                assert!(responses.contains_key("500"), "{what}");
                let secured = !op["security"].as_array().unwrap().is_empty();
                if secured && op["security"][0].get("seatCookie").is_none() {
                    assert!(responses.contains_key("401"), "{what}: no 401");
                }
                if path.starts_with("/api/v1/")
                    && !path.starts_with("/api/v1/requests")
                    && !path.starts_with("/api/v1/api-keys")
                {
                    for (status, resp) in responses {
                        assert!(
                            resp["headers"]["X-RateLimit-Limit"].is_object(),
                            "{what} {status}"
                        );
                    }
                }
            }
        }
    }
}
