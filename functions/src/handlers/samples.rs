//! Every sample event in `events/` (the files `cargo lambda invoke --data-file` sends) runs
//! through its function's handler, with the answer each sample is meant to get, and with
//! only the ports its catalogue entry grants.

use std::collections::BTreeMap;

use shared::domain::api_keys::hash_key;
use shared::domain::ApiKey;

use super::test_support::{as_granted_to, event, TestState};
use crate::catalog::{Trigger, FUNCTIONS};
use crate::routes::ROUTES;

/// The status each HTTP sample should get on a fresh state with vm-1 running and the
/// sample API key registered.
fn expected() -> BTreeMap<&'static str, u16> {
    BTreeMap::from([
        ("health/ok.json", 200),
        // No log shipped yet: "not available yet", by design.
        ("get-vm-logs/vm-1.json", 503),
        ("reconcile-now/run.json", 200),
        ("create-request/four-gpus.json", 201),
        ("list-requests/mine.json", 200),
        ("get-request/no-key.json", 401),
        ("release-request/release.json", 404),
        ("create-api-key/alice.json", 201),
        ("create-api-key/no-auth.json", 401),
        ("list-api-keys/all.json", 200),
        ("revoke-api-key/revoke.json", 404),
        ("list-providers/mine.json", 200),
        ("search-offers/a10g-under-2.json", 200),
        ("search-offers/bad-price.json", 400),
        ("list-instances/mine.json", 200),
        // No cloud is configured in this state: a 400 naming the provider.
        ("create-instance/vast.json", 400),
        ("get-instance/unknown.json", 404),
        ("start-instance/no-key.json", 401),
        ("stop-instance/unknown.json", 404),
        ("destroy-instance/unknown.json", 404),
        ("command-log/first-page.json", 200),
        ("command-log/bad-cursor.json", 400),
        ("clear-log/clear.json", 200),
        ("gpu-types/all.json", 200),
        ("get-aggregates/t4.json", 200),
        ("get-aggregates/unknown-kind.json", 404),
        ("contract-aggregates/t4.json", 200),
        ("host-vms/vm-1.json", 200),
        ("preview-migration/vm-1-to-spot.json", 200),
        ("execute-migration/no-key.json", 401),
        ("get-target-aggregate/vm-1.json", 200),
        ("preview-runpod-launch/vm-1.json", 200),
        ("execute-runpod-launch/bad-image.json", 400),
        // No EC2 network in this state: a 503 saying so.
        ("network-show/storage.json", 503),
        ("port-create/no-auth.json", 401),
        ("server-add-network/attach.json", 503),
        ("server-get-uuid/no-auth.json", 401),
        ("server-status/status.json", 503),
        ("firewall-get-attachments/sg.json", 503),
        ("firewall-update-attachments/no-vm-ids.json", 400),
        ("list-images/bad-region.json", 400),
        // Seats nobody holds (vm-1 is free): the same "no seat" 404 for every credential.
        ("seat-page/cookie.json", 404),
        ("seat-page/link.json", 404),
        ("seat-command/send.json", 404),
        ("seat-move/move.json", 404),
        ("reissue-seat/reissue.json", 404),
        ("move-seat/move.json", 404),
    ])
}

#[tokio::test]
async fn every_http_sample_event_gets_a_deliberate_answer() {
    let expected = expected();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut ran = 0;
    for function in FUNCTIONS.iter().filter(|f| f.trigger == Trigger::Http) {
        let route = ROUTES.iter().find(|r| r.function == function.name).unwrap();
        let folder = format!("{dir}/{}", function.name);
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{folder}: every function has sample events ({e})"))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{folder} is empty");
        for file in files {
            let name = format!("{}/{file}", function.name);
            let t = TestState::with_long_poll_secs(1);
            t.running_vm("vm-1").await;
            let (mut key, _) = ApiKey::generate("alice", "sample", 8, 1);
            key.key_hash = hash_key(&format!("gpf_{}", "ab".repeat(32)));
            t.state.store.insert_api_key(&key).await.unwrap();
            // Only the ports the function is granted on AWS: using another is a 500.
            let state = as_granted_to(&t.state, function.name);
            let resp = crate::router::serve_route(route, state, event(&name)).await;
            let status = resp.status().as_u16();
            match expected.get(name.as_str()) {
                Some(want) => assert_eq!(status, *want, "{name}"),
                None => assert!(status < 500, "{name}: {status}"),
            }
            ran += 1;
        }
    }
    assert!(ran >= 30, "{ran} samples");
}
