//! Serving an API's OpenAPI document: `/openapi.json` as the code generates
//! it, and a reference page at `/docs` rendered from that same document on
//! the server. The page is plain HTML and CSS from the binary, with no
//! script and nothing fetched from elsewhere, so it works on a store's LAN
//! with the internet down and on a phone.

use std::fmt::Write as _;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;
use shared::html::escape;
use utoipa::openapi::OpenApi;

/// Where the document and its reference page are served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
pub const PAGE_PATH: &str = "/docs";
pub const STYLE_PATH: &str = "/docs/style.css";

/// Browsers take each answer for the type it says, nothing else.
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// What the reference page may load: its own style sheet, nothing else.
const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The document as committed under `docs/openapi/`: pretty JSON with a
/// final newline, so a change to the API shows as a readable diff.
pub fn to_json(api: &OpenApi) -> String {
    let mut text = api
        .to_pretty_json()
        .expect("an OpenAPI document built from types always serializes");
    text.push('\n');
    text
}

/// The routes serving `api`: both answers are built once, here.
pub fn routes<S: Clone + Send + Sync + 'static>(api: &OpenApi) -> Router<S> {
    let json = to_json(api);
    let page = render_page(&serde_json::to_value(api).unwrap_or(Value::Null));
    Router::new()
        .route(
            DOCUMENT_PATH,
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [
                            (
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            ),
                            (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
                        ],
                        json,
                    )
                        .into_response()
                }
            }),
        )
        .route(
            PAGE_PATH,
            get(move || {
                let page = page.clone();
                async move {
                    (
                        [
                            (
                                header::CONTENT_SECURITY_POLICY,
                                HeaderValue::from_static(PAGE_POLICY),
                            ),
                            (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
                        ],
                        axum::response::Html(page),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            STYLE_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static("text/css")),
                        (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=3600"),
                        ),
                    ],
                    STYLE,
                )
                    .into_response()
            }),
        )
}

/// `GET /healthz`, the same on both servers: the process answers,
/// whatever the state of its database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process is up",
    description = "Answers while the process runs, whatever the state of its database.",
    responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"}))),
    security(())
)]
pub async fn healthz() -> axum::response::Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// A credential sent as `Authorization: Bearer ...`, described by `text`.
pub fn bearer(text: &str) -> utoipa::openapi::security::SecurityScheme {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(text))
            .build(),
    )
}

/// The HTTP methods an OpenAPI path item may hold, in the order shown.
const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// Every operation of `document` as (method, path, operation object).
fn each_operation(document: &Value) -> impl Iterator<Item = (&'static str, &String, &Value)> {
    document
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |method| item.get(*method).map(|op| (*method, path, op)))
        })
}

/// Every documented operation as (method in capitals, path).
pub fn operations(document: &Value) -> Vec<(String, String)> {
    each_operation(document)
        .map(|(method, path, _)| (method.to_ascii_uppercase(), path.clone()))
        .collect()
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// An anchor id from free text: letters and digits, the rest as `-`.
fn anchor(prefix: &str, name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{prefix}-{}", slug.trim_matches('-'))
}

/// Paragraphs of a description, escaped, with `code` spans kept.
fn prose(description: &str) -> String {
    let mut out = String::new();
    for paragraph in description.split("\n\n").filter(|p| !p.trim().is_empty()) {
        // A doc comment's line breaks are not the author's: one paragraph
        // reads as one line (and a raw newline would not survive escaping).
        let paragraph = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut html = String::new();
        for (i, part) in paragraph.split('`').enumerate() {
            if i % 2 == 1 {
                let _ = write!(html, "<code>{}</code>", escape(part));
            } else {
                html.push_str(&escape(part));
            }
        }
        let _ = write!(out, "<p>{html}</p>");
    }
    out
}

/// A schema's type in a few words, with named schemas as links.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!(
            "<a href=\"#{}\">{}</a>",
            anchor("schema", name),
            escape(name)
        );
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let joiner = if key == "allOf" { " and " } else { " or " };
            return options.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let kinds: Vec<&str> = match schema.get("type") {
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut words: Vec<String> = kinds
        .iter()
        .map(|kind| match *kind {
            "array" => format!(
                "array of {}",
                schema.get("items").map_or_else(|| "any".into(), type_of)
            ),
            kind => escape(kind),
        })
        .collect();
    if words.is_empty() {
        words.push("any".into());
    }
    let mut out = words.join(" or ");
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        let _ = write!(out, " ({})", escape(format));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        let _ = write!(out, " matching <code>{}</code>", escape(pattern));
    }
    for (key, before, after) in [
        ("minimum", "at least", ""),
        ("maximum", "at most", ""),
        ("minLength", "at least", " characters"),
        ("maxLength", "at most", " characters"),
        ("minItems", "at least", " items"),
        ("maxItems", "at most", " items"),
    ] {
        if let Some(bound) = schema.get(key) {
            let _ = write!(out, ", {before} {}{after}", escape(&bound.to_string()));
        }
    }
    out
}

/// A schema's description, or that of its first alternative (an optional
/// reference is written as `oneOf` of it and `null`, with the text inside).
fn description(schema: &Value) -> &str {
    let own = text(schema, "description");
    if !own.is_empty() {
        return own;
    }
    schema
        .get("oneOf")
        .and_then(Value::as_array)
        .and_then(|options| {
            options
                .iter()
                .map(|o| text(o, "description"))
                .find(|d| !d.is_empty())
        })
        .unwrap_or_default()
}

/// The schemas of a request or response body, by media type.
fn content(body: &Value) -> String {
    let Some(media) = body.get("content").and_then(Value::as_object) else {
        return String::new();
    };
    media
        .iter()
        .map(|(kind, entry)| {
            let schema = entry.get("schema").map_or_else(String::new, type_of);
            format!("<code>{}</code> {schema}", escape(kind))
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let id = anchor("op", &format!("{method}-{path}"));
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{id}\"><h3><span class=\"method {m}\">{M}</span> \
         <code>{path}</code></h3>",
        m = escape(method),
        M = escape(&method.to_ascii_uppercase()),
        path = escape(path),
    );
    let summary = text(op, "summary");
    if !summary.is_empty() {
        let _ = write!(out, "<p class=\"summary\">{}</p>", escape(summary));
    }
    out.push_str(&prose(text(op, "description")));
    if let Some(security) = op.get("security").and_then(Value::as_array) {
        let schemes: Vec<String> = security
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|requirement| requirement.keys().map(|k| escape(k)))
            .collect();
        if !schemes.is_empty() {
            let _ = write!(
                out,
                "<p><strong>Credentials:</strong> {}</p>",
                schemes.join(" or ")
            );
        }
    }
    if let Some(parameters) = op.get("parameters").and_then(Value::as_array) {
        out.push_str(
            "<h4>Parameters</h4><div class=\"scroll\"><table><thead><tr><th>Name</th>\
             <th>In</th><th>Type</th><th>Description</th></tr></thead><tbody>",
        );
        for parameter in parameters {
            let required = parameter.get("required").and_then(Value::as_bool) == Some(true);
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(text(parameter, "name")),
                if required { " <em>required</em>" } else { "" },
                escape(text(parameter, "in")),
                parameter.get("schema").map_or_else(String::new, type_of),
                prose(text(parameter, "description")),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    if let Some(body) = op.get("requestBody") {
        let _ = write!(
            out,
            "<h4>Request body</h4>{}<p>{}</p>",
            prose(text(body, "description")),
            content(body)
        );
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str(
            "<h4>Responses</h4><div class=\"scroll\"><table><thead><tr><th>Status</th>\
             <th>Meaning</th><th>Body</th></tr></thead><tbody>",
        );
        for (status, response) in responses {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(status),
                escape(text(response, "description")),
                content(response),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section>");
}

/// A table of an object schema's fields.
fn fields(out: &mut String, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Field</th><th>Type</th>\
         <th>Description</th></tr></thead><tbody>",
    );
    for (field, property) in properties {
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
            escape(field),
            if required.contains(&field.as_str()) {
                " <em>required</em>"
            } else {
                ""
            },
            type_of(property),
            prose(description(property)),
        );
    }
    out.push_str("</tbody></table></div>");
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        out,
        "<section class=\"schema\" id=\"{}\"><h3>{}</h3>{}",
        anchor("schema", name),
        escape(name),
        prose(text(schema, "description")),
    );
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // A type that flattens another: its fields, and those of the rest.
        for part in parts {
            if part.get("$ref").is_some() {
                let _ = write!(out, "<p>Every field of {}, and:</p>", type_of(part));
            } else {
                fields(out, part);
            }
        }
    } else if schema.get("properties").is_some() {
        fields(out, schema);
    } else {
        let _ = write!(out, "<p>{}</p>", type_of(schema));
    }
    out.push_str("</section>");
}

/// One operation of a path: its method, its path and its object.
type Operation = (String, String, Value);

/// The reference page of `document`, grouped by tag.
pub fn render_page(document: &Value) -> String {
    let info = document.get("info").cloned().unwrap_or(Value::Null);
    let title = text(&info, "title");
    let mut nav = String::new();
    let mut body = String::new();

    // Operations grouped by their first tag, in the document's order.
    let mut groups: Vec<(String, Vec<Operation>)> = Vec::new();
    for (method, path, op) in each_operation(document) {
        let tag = op
            .get("tags")
            .and_then(Value::as_array)
            .and_then(|t| t.first())
            .and_then(Value::as_str)
            .unwrap_or("other")
            .to_owned();
        let entry = (method.to_owned(), path.clone(), op.clone());
        match groups.iter_mut().find(|(name, _)| *name == tag) {
            Some((_, ops)) => ops.push(entry),
            None => groups.push((tag, vec![entry])),
        }
    }
    // In the order the document lists its tags (its paths come sorted).
    let listed: Vec<&str> = document
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().map(|t| text(t, "name")).collect())
        .unwrap_or_default();
    groups.sort_by_key(|(tag, _)| listed.iter().position(|t| t == tag).unwrap_or(usize::MAX));
    let tag_text = |name: &str| {
        document
            .get("tags")
            .and_then(Value::as_array)
            .and_then(|tags| tags.iter().find(|t| text(t, "name") == name))
            .map(|t| text(t, "description").to_owned())
            .unwrap_or_default()
    };
    for (tag, ops) in &groups {
        let _ = write!(
            nav,
            "<li><a href=\"#{}\">{}</a><ul>",
            anchor("tag", tag),
            escape(tag)
        );
        let _ = write!(
            body,
            "<h2 id=\"{}\">{}</h2>{}",
            anchor("tag", tag),
            escape(tag),
            prose(&tag_text(tag))
        );
        for (method, path, op) in ops {
            let _ = write!(
                nav,
                "<li><a href=\"#{}\"><span class=\"method {method}\">{}</span> {}</a></li>",
                anchor("op", &format!("{method}-{path}")),
                escape(&method.to_ascii_uppercase()),
                escape(path),
            );
            render_operation(&mut body, method, path, op);
        }
        nav.push_str("</ul></li>");
    }
    if let Some(schemas) = document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        nav.push_str("<li><a href=\"#schemas\">Schemas</a></li>");
        body.push_str("<h2 id=\"schemas\">Schemas</h2>");
        for (name, schema) in schemas {
            render_schema(&mut body, name, schema);
        }
    }
    if let Some(schemes) = document
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    {
        body.push_str("<h2 id=\"credentials\">Credentials</h2><dl>");
        for (name, scheme) in schemes {
            let _ = write!(
                body,
                "<dt><code>{}</code></dt><dd>{}</dd>",
                escape(name),
                prose(text(scheme, "description"))
            );
        }
        body.push_str("</dl>");
    }

    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} {version}: API reference</title>\
         <link rel=\"stylesheet\" href=\"{STYLE_PATH}\"></head>\
         <body><header><h1>{title} <small>{version}</small></h1>{description}\
         <p>The machine-readable document: <a href=\"{DOCUMENT_PATH}\"><code>{DOCUMENT_PATH}</code></a> \
         (OpenAPI {openapi}).</p></header><nav><details><summary>Contents</summary><ul>{nav}</ul></details></nav>\
         <main>{body}</main></body></html>",
        title = escape(title),
        version = escape(text(&info, "version")),
        description = prose(text(&info, "description")),
        openapi = escape(text(document, "openapi")),
    )
}

/// The page's whole style: one column that reads on a phone (tables scroll
/// inside their own box, the contents fold away, links are big enough to
/// tap) and on a desktop.
const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1b1f24;background:#fafafa}\
header{padding:1rem;background:#1f3a5f;color:#fff}header a{color:#cfe3ff}\
h1{margin:0;font-size:1.5rem}h1 small{font-weight:normal;opacity:.8}\
nav{padding:0 1rem;border-bottom:1px solid #ddd;background:#fff}\
summary{min-height:44px;display:flex;align-items:center;cursor:pointer;font-weight:600}\
nav ul{list-style:none;padding-left:.75rem;margin:0}nav details>ul{padding:0 0 .5rem}\
nav a{display:flex;align-items:center;gap:.5rem;min-height:44px;color:#1f3a5f;\
text-decoration:none;overflow-wrap:anywhere}\
main{padding:0 1rem 2rem;max-width:70rem;min-width:0}\
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}\
h3{margin:.25rem 0;font-size:1.05rem;overflow-wrap:anywhere}\
code{font-family:ui-monospace,monospace;font-size:.9em;overflow-wrap:anywhere}\
.method{display:inline-block;min-width:3.5rem;padding:0 .3rem;border-radius:4px;\
font:bold .8rem/1.6 ui-monospace,monospace;text-align:center;color:#fff;background:#555}\
.method.get{background:#1a6e3a}.method.post{background:#1f4f8f}.method.delete{background:#9b2226}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid #eee}\
td p{margin:0}em{color:#9b2226;font-style:normal;font-size:.8rem}";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "Example <API>", "version": "1.2.3"},
            "paths": {
                "/things/{id}": {
                    "get": {
                        "tags": ["things"],
                        "summary": "One thing",
                        "parameters": [{"name": "id", "in": "path", "required": true,
                                        "schema": {"type": "string"}}],
                        "responses": {"200": {"description": "The thing", "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
                    },
                    "post": {"tags": ["things"], "responses": {}}
                }
            },
            "components": {"schemas": {"Thing": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string", "description": "Its\n`name`", "maxLength": 20},
                               "other": {"oneOf": [{"$ref": "#/components/schemas/Thing"}, {"type": "null"}],
                                         "description": ""},
                               "tags": {"type": ["array", "null"], "items": {"type": "string"}}}
            }}}
        })
    }

    #[test]
    fn operations_lists_every_method_of_every_path() {
        assert_eq!(
            operations(&document()),
            vec![
                ("GET".to_owned(), "/things/{id}".to_owned()),
                ("POST".to_owned(), "/things/{id}".to_owned())
            ]
        );
    }

    #[test]
    fn the_page_shows_operations_and_schemas_escaped_and_loads_nothing_from_elsewhere() {
        let page = render_page(&document());
        assert!(page.contains("Example &lt;API&gt;"), "{page}");
        assert!(!page.contains("<API>"));
        assert!(page.contains("<code>/things/{id}</code>"));
        assert!(page.contains("href=\"#schema-Thing\">Thing</a>"));
        assert!(page.contains("<code>name</code> <em>required</em>"));
        assert!(page.contains("array of string or null"));
        assert!(page.contains("Its <code>name</code>"));
        assert!(page.contains("string, at most 20 characters"), "{page}");
        assert!(!page.contains("<script"), "the page needs no script");
        assert!(
            !page.contains("<style") && !page.contains("style="),
            "no inline style"
        );
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
