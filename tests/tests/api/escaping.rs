//! A hostname or email carrying markup or quotes is shown as text on every page.

use shared::domain::{Assignment, TokenHash, Vm, VmChange, VmStatus};

use crate::helpers::*;

const EVIL_HOST: &str = "vm-<script>alert(\"host\")</script>'x";
const EVIL_EMAIL: &str = "\"><img src=x onerror=alert(1)>@evil.org";

#[tokio::test]
async fn markup_in_hostnames_and_emails_is_escaped_everywhere() {
    let app = spawn_app().await;
    // Stored directly: the API would never accept these, but a page must not trust that.
    let mut vm = Vm::new(
        EVIL_HOST.into(),
        TokenHash::of("t"),
        app.state.clock.now_millis(),
    );
    vm.assignment = Some(Assignment {
        email: EVIL_EMAIL.into(),
        crd_command: "x".into(),
        pin: "123456".into(),
        assigned_at: 1,
        seat_hash: None,
        command_at: 1,
    });
    vm.metrics
        .fields
        .insert("agent_duration_seconds".into(), 3.0);
    app.state.store.insert_vm(&vm).await.unwrap();
    app.state
        .store
        .update_vm(EVIL_HOST, &VmChange::Status(VmStatus::Running), 2)
        .await
        .unwrap();
    app.state
        .store
        .append_logs(EVIL_HOST, &["<b>log</b>".to_string()], 1 << 20, 3)
        .await
        .unwrap();
    let encoded = EVIL_HOST
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('"', "%22")
        .replace('\'', "%27")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('/', "%2F");
    let pages = [
        "/admin".to_string(),
        "/admin/instances".into(),
        "/admin/metrics".into(),
        format!("/admin/logs/{encoded}"),
    ];
    for page in pages {
        let (status, html) = app.admin_get(&page, false).await;
        assert_eq!(status, 200, "{page}: {html}");
        assert!(
            !html.contains("<script>alert"),
            "{page} has raw markup from a hostname"
        );
        assert!(
            !html.contains("<img src=x"),
            "{page} has raw markup from an email"
        );
        assert!(
            html.contains("&lt;script&gt;alert") || html.contains("&#60;script&#62;alert"),
            "{page} shows the hostname as text"
        );
        assert!(!html.contains("\"host\")</script>"), "{page}");
    }
    // The JSON the dashboard renders from carries the raw text; its script uses textContent.
    let (_, json) = app.admin_get("/admin/instances", true).await;
    assert!(
        json.contains("vm-<script>alert"),
        "JSON is data, not markup"
    );
    let (_, dashboard) = app.admin_get("/admin", false).await;
    assert!(
        !dashboard.contains("innerHTML"),
        "the dashboard never parses data as HTML"
    );
}
