//! The claim: atomic under a burst, one VM per email, only assignable VMs.

use std::collections::HashSet;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_claims_for_fifty_vms() {
    race_over_http(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_claims_for_fifty_vms_on_dynamodb() {
    race_over_http(spawn_app_on_dynamodb().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_email_in_parallel_gets_one_vm_on_dynamodb() {
    same_email_over_http(spawn_app_on_dynamodb().await).await;
}

async fn race_over_http(app: TestApp) {
    for i in 0..50 {
        app.register_vm(&format!("race-{i:02}")).await;
    }
    assert_eq!(app.free_count().await, 50);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = app.url("/api/request_vm");
        tasks.spawn(async move {
            let email = format!("person{i}@workshop.org");
            let html = client
                .post(url)
                .form(&[("email", email.as_str()), ("crd_command", CRD)])
                .send()
                .await
                .expect("claim")
                .text()
                .await
                .expect("body");
            html
        });
    }
    let mut hostnames = Vec::new();
    let mut no_vm = 0;
    while let Some(html) = tasks.join_next().await {
        let html = html.expect("task");
        match assigned_hostname(&html) {
            Some(h) => hostnames.push(h),
            None => {
                assert!(html.contains("no VM is available"), "{html}");
                no_vm += 1;
            }
        }
    }
    let distinct: HashSet<_> = hostnames.iter().collect();
    assert_eq!(hostnames.len(), 50);
    assert_eq!(distinct.len(), 50, "a VM went to two people");
    assert_eq!(no_vm, 150);
    assert_eq!(app.free_count().await, 0);
    // Every VM is assigned to exactly one of the emails that got it.
    let emails: HashSet<String> = app
        .state
        .store
        .list_vms()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|v| v.assignment.map(|a| a.email))
        .collect();
    assert_eq!(emails.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_email_in_parallel_gets_one_vm() {
    same_email_over_http(spawn_app().await).await;
}

async fn same_email_over_http(app: TestApp) {
    for i in 0..5 {
        app.register_vm(&format!("same-{i}")).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let client = app.client.clone();
        let url = app.url("/request_vm");
        // Differently cased, the same person.
        let email = if i % 2 == 0 {
            "Ada@Example.org"
        } else {
            "ada@example.org"
        };
        tasks.spawn(async move {
            client
                .post(url)
                .form(&[("email", email), ("crd_command", CRD)])
                .send()
                .await
                .expect("claim")
                .text()
                .await
                .expect("body")
        });
    }
    let mut got = Vec::new();
    let mut held_elsewhere = 0;
    while let Some(html) = tasks.join_next().await {
        let html = html.expect("task");
        match assigned_hostname(&html) {
            Some(hostname) => got.push((hostname, assigned_pin(&html).expect("pin"))),
            None => {
                // The other nine did not prove the seat is theirs: no hostname, no PIN.
                assert!(html.contains("already has a VM"), "{html}");
                assert!(assigned_pin(&html).is_none());
                held_elsewhere += 1;
            }
        }
    }
    assert_eq!(got.len(), 1, "one VM for one person: {got:?}");
    assert_eq!(held_elsewhere, 9);
    assert_eq!(app.free_count().await, 4);
}

#[tokio::test]
async fn only_assignable_vms_are_counted_and_claimed() {
    let app = spawn_app().await;
    let (_, t_unhealthy) = app.register_vm("unhealthy").await;
    app.report(
        &t_unhealthy,
        "/api/gpu_health",
        serde_json::json!({"hostname": "unhealthy", "gpu_status": "unhealthy"}),
    )
    .await;
    app.register_initializing_vm("initializing").await;
    let (_, t_error) = app.register_initializing_vm("errored").await;
    app.report(
        &t_error,
        "/api/vm-status",
        serde_json::json!({"hostname": "errored", "status": "error"}),
    )
    .await;
    let (_, t_reboot) = app.register_vm("rebooting").await;
    app.report(
        &t_reboot,
        "/api/vm-status",
        serde_json::json!({"hostname": "rebooting", "status": "rebooting"}),
    )
    .await;
    assert_eq!(app.free_count().await, 0);
    let html = app.claim("nobody@example.org", CRD).await;
    assert!(html.contains("no VM is available"), "{html}");

    app.register_vm("good").await;
    assert_eq!(app.free_count().await, 1);
    let html = app.claim("somebody@example.org", CRD).await;
    assert_eq!(assigned_hostname(&html).as_deref(), Some("good"));
    let pin = assigned_pin(&html).expect("pin");
    assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(app.free_count().await, 0);
}

#[tokio::test]
async fn pins_are_fresh_per_assignment() {
    let app = spawn_app().await;
    for i in 0..40 {
        app.register_vm(&format!("pin-{i:02}")).await;
    }
    let mut pins = HashSet::new();
    for i in 0..40 {
        let html = app.claim(&format!("p{i}@example.org"), CRD).await;
        pins.insert(assigned_pin(&html).expect("pin"));
    }
    // 40 draws from a million: a constant or a counter-like PIN would collapse.
    assert!(pins.len() >= 39, "{pins:?}");
}

#[tokio::test]
async fn the_home_page_shows_the_free_count() {
    let app = spawn_app().await;
    app.register_vm("home-1").await;
    app.register_vm("home-2").await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"free-count\">2<"), "{html}");
    assert!(html.contains("name=\"crd_command\""));
}
