//! `GET /docs`: the document rendered as one self-contained page, grouped by tag, each
//! operation with its credentials, parameters, body and answers, and the schemas below.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::Value;

use super::document;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A schema in one line: references become links to the schema section.
fn schema_text(schema: &Value) -> String {
    const REF: &str = "{\"$ref\":\"#/components/schemas/";
    let text = serde_json::to_string(schema).unwrap_or_default();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some((before, after)) = rest.split_once(REF) {
        out.push_str(&escape(before));
        let Some((name, tail)) = after.split_once("\"}") else {
            out.push_str(&escape(after));
            return out;
        };
        let _ = write!(out, "<a href=\"#schema-{0}\">{0}</a>", escape(name));
        rest = tail;
    }
    out.push_str(&escape(rest));
    out
}

fn security_text(security: &Value) -> String {
    let names: Vec<String> = security
        .as_array()
        .into_iter()
        .flatten()
        .map(|req| {
            req.as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_else(|| "none".into())
        })
        .collect();
    if names.is_empty() {
        "anyone".into()
    } else {
        names.join(" or ")
    }
}

/// The page (rendered once per process).
pub fn docs_page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(render)
}

fn render() -> String {
    let doc = document();
    let mut by_tag: BTreeMap<String, Vec<(String, String, &Value)>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                by_tag.entry(tag).or_default().push((
                    method.to_ascii_uppercase(),
                    path.clone(),
                    op,
                ));
            }
        }
    }
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>gpufleet API reference</title><style>\
         body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1d2430}\
         h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}\
         details{border:1px solid #d0d7de;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}\
         summary{cursor:pointer}.m{display:inline-block;min-width:4.2rem;font-weight:600;font-family:monospace}\
         .GET{color:#0a6a2f}.POST{color:#8a4b00}.DELETE{color:#a4161a}code,pre{font-family:ui-monospace,monospace;font-size:.85rem}\
         pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.5rem;border-radius:4px}\
         table{border-collapse:collapse}td,th{text-align:left;padding:.2rem .6rem;vertical-align:top;border-bottom:1px solid #eee}\
         </style></head><body>",
    );
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        html,
        "<h1>{} API reference</h1><p>{}</p><p>The machine-readable document: \
         <a href=\"openapi.json\">openapi.json</a> (OpenAPI {}).</p>",
        escape(title),
        escape(doc["info"]["description"].as_str().unwrap_or("")),
        escape(doc["openapi"].as_str().unwrap_or("")),
    );
    html.push_str("<h2>Credentials</h2><table>");
    for (name, scheme) in doc["components"]["securitySchemes"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(name),
            escape(scheme["description"].as_str().unwrap_or("")),
        );
    }
    html.push_str("</table>");
    for (tag, ops) in &by_tag {
        let _ = write!(html, "<h2>{}</h2>", escape(tag));
        for (method, path, op) in ops {
            let _ = write!(
                html,
                "<details id=\"{id}\"><summary><span class=\"m {method}\">{method}</span> \
                 <code>{path}</code> — {summary}</summary><p>Credentials: {security}</p>",
                id = escape(op["operationId"].as_str().unwrap_or("")),
                path = escape(path),
                summary = escape(op["summary"].as_str().unwrap_or("")),
                security = escape(&security_text(&op["security"])),
            );
            if let Some(params) = op["parameters"].as_array() {
                html.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>");
                for p in params {
                    let _ = write!(
                        html,
                        "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                        escape(p["name"].as_str().unwrap_or("")),
                        escape(p["in"].as_str().unwrap_or("")),
                        schema_text(&p["schema"]),
                    );
                }
                html.push_str("</table>");
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media, body) in content {
                    let _ = write!(
                        html,
                        "<p>Body ({}):</p><pre>{}</pre>",
                        escape(media),
                        schema_text(&body["schema"])
                    );
                }
            }
            html.push_str("<table><tr><th>status</th><th>answer</th></tr>");
            for (status, resp) in op["responses"].as_object().into_iter().flatten() {
                let body = resp["content"]
                    .as_object()
                    .and_then(|c| c.iter().next())
                    .map(|(media, c)| {
                        format!(
                            "<br>{}: <code>{}</code>",
                            escape(media),
                            schema_text(&c["schema"])
                        )
                    })
                    .unwrap_or_default();
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}{}</td></tr>",
                    escape(status),
                    escape(resp["description"].as_str().unwrap_or("")),
                    body
                );
            }
            html.push_str("</table></details>");
        }
    }
    html.push_str("<h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
        let _ = write!(
            html,
            "<h3 id=\"schema-{0}\">{0}</h3><pre>{1}</pre>",
            escape(name),
            escape(&pretty)
        );
    }
    html.push_str("</body></html>");
    html
}
