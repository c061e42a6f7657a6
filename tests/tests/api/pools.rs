//! Capacity pools over HTTP on the local server (utilisation of a fleet built here against
//! hand-computed figures, preview, execute with and without force, recommendations, auth),
//! and a migration on the EC2 emulator (store and pool tag moved and verified, logged).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shared::config::Config;
use shared::domain::{Assignment, GpuRequest, NewRequest, TokenHash, Vm, VmChange, VmStatus};

use crate::helpers::*;

fn fleet_config(c: &mut Config) {
    c.instance_type = "g5.xlarge".into();
    c.pools = shared::domain::pools::parse_pools(
        "A10G-n3=A10G/ondemand,Contract-A10G-Acme=A10G/contracts/acme/Investors",
    )
    .unwrap();
}

impl TestApp {
    async fn pools_get(&self, key: &str, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn pools_post(&self, auth: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).json(&body);
        req = match auth {
            Some("admin") => self.admin(req),
            Some(key) => req.bearer_auth(key),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// w1..w6: workshop VMs (g5.xlarge, one A10G); w1 and w2 claimed; w3 moved to spot, w4 to
/// the contract pool, w5 to A10G-n3; `lease-0`: machine 0 of a 4-GPU request (g5.12xlarge).
async fn build_fleet(app: &TestApp) {
    for n in 1..=6 {
        app.register_vm(&format!("w{n}")).await;
    }
    app.claim("ann@example.org", CRD).await;
    app.claim("bob@example.org", CRD).await;
    let store = &app.state.store;
    store.move_host("w3", None, "A10G-spot", 1).await.unwrap();
    store
        .move_host("w4", None, "Contract-A10G-Acme", 1)
        .await
        .unwrap();
    store.move_host("w5", None, "A10G-n3", 1).await.unwrap();
    let request = GpuRequest::new(
        "6f1c2b9e-8d4a-4c3b-9e2f-1a2b3c4d5e6f".into(),
        &NewRequest {
            user_id: "carol".into(),
            gpu_count: 4,
            duration_hours: 1,
        },
        1,
    );
    store.create_request(&request, 8, None, None).await.unwrap();
    let mut vm = Vm::new("lease-0".into(), TokenHash::of("x"), 1);
    vm.assignment = Some(Assignment::lease(&request.request_id, 0, 1));
    store.insert_vm(&vm).await.unwrap();
    store
        .update_vm("lease-0", &VmChange::Status(VmStatus::Running), 2)
        .await
        .unwrap();
}

fn hosts_of(v: &Value) -> Vec<String> {
    let mut h: Vec<String> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap().to_string())
        .collect();
    h.sort();
    h
}

#[tokio::test]
async fn utilisation_figures_match_a_fleet_built_by_hand() {
    let app = spawn_app_with(Options {
        config: Some(fleet_config),
        ..Options::default()
    })
    .await;
    build_fleet(&app).await;
    let key = app.api_key("ops", 8).await;

    let (s, types) = app.pools_get(&key, "/api/gpu-types").await;
    assert_eq!(s, 200, "{types}");
    assert_eq!(types["status"], "success");
    assert_eq!(
        types["data"],
        json!([{
            "name": "A10G", "display_name": "A10G",
            "aggregates": {
                "ondemand": ["A10G-n3", "A10G-ondemand"],
                "spot": ["A10G-spot"],
                "contracts": ["Contract-A10G-Acme"],
                "runpod": ["A10G-runpod"],
            }
        }])
    );

    let (s, agg) = app.pools_get(&key, "/api/aggregates/A10G").await;
    assert_eq!(s, 200, "{agg}");
    let d = &agg["data"];
    // On-demand: w1, w2 (claimed, 1 GPU each), w6 (idle), lease-0 (4 of 4) in A10G-ondemand,
    // w5 (idle) in A10G-n3: 6 of 8.
    assert_eq!(d["ondemand"]["name"], "A10G-n3");
    assert_eq!(
        hosts_of(&d["ondemand"]),
        ["lease-0", "w1", "w2", "w5", "w6"]
    );
    assert_eq!(
        d["ondemand"]["gpu_summary"],
        json!({"gpu_used": 6, "gpu_capacity": 8, "gpu_usage_ratio": "6/8", "gpu_usage_percentage": 75.0})
    );
    assert_eq!(
        d["ondemand"]["variants"][0]["gpu_summary"]["gpu_usage_ratio"],
        "0/1"
    );
    assert_eq!(
        d["ondemand"]["variants"][1]["gpu_summary"]["gpu_usage_ratio"],
        "6/7"
    );
    assert_eq!(hosts_of(&d["spot"]), ["w3"]);
    assert_eq!(d["spot"]["gpu_summary"]["gpu_usage_ratio"], "0/1");
    assert_eq!(d["contracts"]["gpu_summary"]["gpu_usage_ratio"], "0/1");
    assert_eq!(d["runpod"]["gpu_summary"]["gpu_usage_ratio"], "0/0");
    assert_eq!(
        d["gpu_overview"],
        json!({"gpu_used": 6, "gpu_capacity": 10, "gpu_usage_ratio": "6/10", "gpu_usage_percentage": 60.0})
    );
    let lease = d["ondemand"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hostname"] == "lease-0")
        .unwrap()
        .clone();
    assert_eq!(lease["gpu_capacity"], 4);
    assert_eq!(
        lease["tenant"], "other",
        "ops sees carol's lease as anonymous usage"
    );
    assert_eq!(lease["instance_type"], "g5.12xlarge");

    let (s, spot) = app.pools_get(&key, "/api/aggregates/A10G/spot").await;
    assert_eq!(s, 200);
    assert_eq!(spot["data"]["name"], "A10G-spot");
    let (s, contracts) = app.pools_get(&key, "/api/contract-aggregates/A10G").await;
    assert_eq!(s, 200);
    assert_eq!(contracts["data"][0]["aggregate"], "Contract-A10G-Acme");
    assert_eq!(
        contracts["data"][0]["tenant_info"],
        json!({"primary_tenant": "acme", "owner_group": "Investors"})
    );
    assert_eq!(hosts_of(&contracts["data"][0]), ["w4"]);
    assert_eq!(contracts["data"][0]["hosts"][0]["owner_group"], "Investors");

    let (s, vms) = app.pools_get(&key, "/api/host-vms/lease-0").await;
    assert_eq!(s, 200);
    assert_eq!(vms["data"]["total_vms"], 1);
    assert_eq!(vms["data"]["vms"][0]["flavor"], "g5.12xlarge");
    assert_eq!(vms["data"]["vms"][0]["tenant"], "other");
    assert_eq!(vms["data"]["vms"][0]["id"], "");
    assert!(!vms.to_string().contains("carol"), "{vms}");
    // carol herself and an admin see whose it is.
    let carol = app.api_key("carol", 8).await;
    let (_, mine) = app.pools_get(&carol, "/api/host-vms/lease-0").await;
    assert_eq!(mine["data"]["vms"][0]["tenant"], "carol");
    let (_, all) = app.admin_get("/api/host-vms/lease-0", true).await;
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["data"]["vms"][0]["tenant"], "carol");
    assert_ne!(all["data"]["vms"][0]["id"], "");
    let (_, vms) = app.pools_get(&key, "/api/host-vms/w3").await;
    assert_eq!(vms["data"]["total_vms"], 0);

    for path in [
        "/api/aggregates/H100",
        "/api/aggregates/A10G/cheap",
        "/api/contract-aggregates/H100",
        "/api/host-vms/nope",
    ] {
        let (s, b) = app.pools_get(&key, path).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(b["status"], "error");
        assert!(b["error"].is_string() && !b["details"].is_null());
    }
}

#[tokio::test]
async fn migrations_are_previewed_refused_forced_and_recommended() {
    let app = spawn_app_with(Options {
        config: Some(fleet_config),
        ..Options::default()
    })
    .await;
    build_fleet(&app).await;
    let key = app.api_key("ops", 8).await;
    let key = key.as_str();
    let moves = |host: &str, from: &str, to: &str| json!({"host": host, "source_aggregate": from, "target_aggregate": to});

    // Preview: commands and validation, nothing changes.
    let before = app.state.store.host_pools().await.unwrap();
    let (s, p) = app
        .pools_post(
            Some("admin"),
            "/api/preview-migration",
            moves("w6", "A10G-ondemand", "A10G-spot"),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        p["data"]["commands"],
        json!(["record w6 in A10G-spot (no cloud tag: local machine)"])
    );
    let v = &p["data"]["validation"];
    assert_eq!(
        (
            v["source_exists"].clone(),
            v["target_exists"].clone(),
            v["host_in_source"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(v["has_live_allocations"], false);
    let (_, p) = app
        .pools_post(
            Some("admin"),
            "/api/preview-migration",
            moves("w1", "A10G-spot", "A10G-runpod"),
        )
        .await;
    assert_eq!(p["data"]["validation"]["host_in_source"], false);
    assert_eq!(p["data"]["validation"]["has_live_allocations"], true);
    assert_eq!(
        app.state.store.host_pools().await.unwrap(),
        before,
        "preview changed nothing"
    );

    // Execute an idle host: moved and verified.
    let (s, e) = app
        .pools_post(
            Some("admin"),
            "/api/execute-migration",
            moves("w6", "A10G-ondemand", "A10G-spot"),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["data"]["target_aggregate"], "A10G-spot");
    assert!(e["data"]["execution_time"].as_str().unwrap().ends_with('s'));
    assert_eq!(
        app.state.store.host_pools().await.unwrap()["w6"],
        "A10G-spot"
    );
    // The same move again: the host is no longer in the source.
    let (s, _) = app
        .pools_post(
            Some("admin"),
            "/api/execute-migration",
            moves("w6", "A10G-ondemand", "A10G-spot"),
        )
        .await;
    assert_eq!(s, 400);

    // A host with a claimed seat: refused; force is for admins only.
    let (s, e) = app
        .pools_post(
            Some("admin"),
            "/api/execute-migration",
            moves("w1", "A10G-ondemand", "A10G-spot"),
        )
        .await;
    assert_eq!(s, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("live allocation"));
    let mut forced = moves("w1", "A10G-ondemand", "A10G-spot");
    forced["force"] = json!(true);
    let (s, _) = app
        .pools_post(Some(key), "/api/execute-migration", forced.clone())
        .await;
    assert_eq!(s, 401, "moving hosts is an admin action");
    assert!(!app
        .state
        .store
        .host_pools()
        .await
        .unwrap()
        .contains_key("w1"));
    let (s, e) = app
        .pools_post(Some("admin"), "/api/execute-migration", forced)
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["data"]["forced"], true);

    // Unknown host or pool: 404; a pool of another GPU type is refused.
    let (s, _) = app
        .pools_post(
            Some("admin"),
            "/api/execute-migration",
            moves("nope", "A10G-ondemand", "A10G-spot"),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .pools_post(
            Some("admin"),
            "/api/preview-migration",
            moves("w2", "A10G-ondemand", "Nowhere"),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .pools_post(
            Some("admin"),
            "/api/execute-migration",
            json!({"host": "w2"}),
        )
        .await;
    assert_eq!(s, 400);

    // Recommendations.
    for (host, want) in [
        ("w5", "A10G-spot"),          // idle, on-demand variant → spot
        ("w2", "A10G-ondemand"),      // a claimed seat stays
        ("w4", "Contract-A10G-Acme"), // reserved by contract
        ("w3", "A10G-spot"),          // already spot
        ("lease-0", "A10G-ondemand"), // leased to a request
    ] {
        let (s, t) = app
            .pools_post(
                Some(key),
                "/api/get-target-aggregate",
                json!({"hostname": host, "gpu_type": "A10G"}),
            )
            .await;
        assert_eq!(s, 200, "{host}: {t}");
        assert_eq!(t["data"]["recommended_aggregate"], want, "{host}");
        assert!(!t["data"]["reasoning"].as_str().unwrap().is_empty());
    }
    let (s, _) = app
        .pools_post(
            Some(key),
            "/api/get-target-aggregate",
            json!({"hostname": "w5", "gpu_type": "H100"}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn every_capacity_route_needs_credentials() {
    let app = spawn_app_with(Options {
        config: Some(fleet_config),
        ..Options::default()
    })
    .await;
    build_fleet(&app).await;
    let capacity: Vec<_> = functions::routes::ROUTES
        .iter()
        .filter(|r| {
            [
                "/api/gpu-types",
                "/api/aggregates",
                "/api/contract-aggregates",
                "/api/host-vms",
                "/api/preview-migration",
                "/api/execute-migration",
                "/api/get-target-aggregate",
                "/api/preview-runpod-launch",
                "/api/execute-runpod-launch",
                "/api/openstack/",
                "/api/hyperstack/",
                "/api/command-log",
                "/api/clear-log",
            ]
            .iter()
            .any(|p| r.path.starts_with(p))
        })
        .collect();
    assert_eq!(capacity.len(), 20);
    for (n, route) in capacity.into_iter().enumerate() {
        let path = route
            .path
            .replace("{gpu_type}", "A10G")
            .replace("{aggregate_type}", "spot")
            .replace("{hostname}", "w3");
        for auth in [None, Some("Bearer gpf_nope"), Some("Basic YWRtaW46bm8=")] {
            let client = if auth.is_some_and(|a| a.starts_with("Basic")) {
                client_from(40 + n as u8) // one address per route: below the login throttle
            } else {
                app.client.clone()
            };
            let mut req = client
                .request(route.method.clone(), app.url(&path))
                .json(&json!({"host": "w3", "source_aggregate": "A10G-spot", "target_aggregate": "A10G-runpod", "hostname": "w3", "gpu_type": "A10G"}));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{} {path} {auth:?}", route.method);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["status"], "error");
        }
    }
    assert_eq!(
        app.state.store.host_pools().await.unwrap()["w3"],
        "A10G-spot"
    );
}

/// On EC2: a launched VM is moved; its instance's `gpufleet:pool` tag and the store both say
/// the target, and the command log has the tag command under the admin.
#[tokio::test]
async fn a_migration_on_ec2_moves_the_tag_and_the_record() {
    use shared::adapters::{AuditedCompute, CommandLogger, Dialect, DynamoStore};
    let sdk = crate::helpers::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let store: Arc<DynamoStore> = Arc::new(dynamo_store().await);
    let ami = emulator_ami(&ec2).await;
    let deployment = format!("pools-{}", uuid::Uuid::new_v4().simple());
    let env = std::collections::HashMap::from([
        ("GPUFLEET_AMI", ami),
        (
            "GPUFLEET_AGENT_URL",
            "https://downloads.example.test/gpufleet".to_string(),
        ),
    ]);
    let ec2_config =
        shared::adapters::Ec2Config::from_lookup(&deployment, |k| env.get(k).cloned()).unwrap();
    let clock: Arc<dyn shared::ports::Clock> = Arc::new(shared::adapters::SystemClock);
    let compute = AuditedCompute::new(
        Arc::new(shared::adapters::Ec2Compute::new(ec2.clone(), ec2_config)),
        CommandLogger::new(store.clone(), clock.clone()),
        Dialect::Aws,
    );
    let mut config = Config::from_lookup(|_| None).unwrap();
    config.deployment = deployment;
    config.admin_user = ADMIN_USER.into();
    config.api_url = Some("https://api.example.test".into());
    let state = shared::AppState {
        store: store.clone(),
        compute: Arc::new(compute),
        queue: Arc::new(shared::adapters::NotGranted("queue")),
        notifier: Arc::new(shared::adapters::PollingNotifier {
            interval: Duration::from_millis(50),
        }),
        clock,
        work: Arc::new(shared::adapters::NotGranted("the work store")),
        network: Arc::new(shared::adapters::NoNetwork("no network in this test")),
        clouds: Default::default(),
        admin: Arc::new(shared::state::AdminCredentials::new(
            ADMIN_USER,
            ADMIN_PASSWORD,
        )),
        config: Arc::new(config),
    };
    // A VM launched through the provisioning path (two-phase, tagged).
    let hostname = format!(
        "gpufleet-vm-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let token = shared::domain::VmToken::generate();
    state
        .store
        .insert_vm(&Vm::new(hostname.clone(), TokenHash::of(token.as_str()), 1))
        .await
        .unwrap();
    let spec = shared::ports::LaunchSpec {
        hostname: hostname.clone(),
        token,
        allocator_url: "https://api.example.test".into(),
        operation_id: "op-1".into(),
        client_token: hostname.clone(),
        market: shared::ports::Market::OnDemand,
        instance_type: None,
        lease: None,
        image: None,
        pool: None,
    };
    let instance_id = state.compute.launch(&spec).await.unwrap();
    state
        .store
        .update_vm(
            &hostname,
            &VmChange::Launched {
                instance_id: instance_id.clone(),
                price: None,
                owner: None,
            },
            2,
        )
        .await
        .unwrap();

    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"))
    };
    let body =
        json!({"host": hostname, "source_aggregate": "T4-ondemand", "target_aggregate": "T4-spot"});
    let request = |path: &str| {
        http::Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/json")
            .body(lambda_http::Body::Text(body.to_string()))
            .unwrap()
    };
    let preview =
        crate::helpers::serve_in_process(state.clone(), request("/api/preview-migration")).await;
    assert_eq!(preview.status(), 200);
    let preview: Value = serde_json::from_slice(preview.body().as_ref()).unwrap();
    assert_eq!(
        preview["data"]["commands"],
        json!([format!(
            "aws ec2 create-tags --resources {instance_id} --tags Key=gpufleet:pool,Value=T4-spot"
        )])
    );
    let resp = functions::router::serve_route(
        functions::routes::of_function("execute-migration").expect("route"),
        state.clone(),
        request("/api/execute-migration"),
    )
    .await;
    let status = resp.status();
    let result: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        result["data"]["verified"],
        json!({"store": "T4-spot", "tag": "T4-spot"})
    );
    let tags = ec2
        .describe_tags()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(&instance_id)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("key")
                .values("gpufleet:pool")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].value(), Some("T4-spot"));
    assert_eq!(
        state.store.host_pools().await.unwrap()[&hostname],
        "T4-spot"
    );
    let log = state.store.list_commands(10, None, None).await.unwrap();
    assert_eq!(
        log[0].command,
        format!(
            "aws ec2 create-tags --resources {instance_id} --tags Key=gpufleet:pool,Value=T4-spot"
        )
    );
    assert_eq!(log[0].user, "admin:admin");
    assert!(log[1].command.starts_with("aws ec2 run-instances"));
    assert_eq!(log[1].user, "system");

    // A launch onto the host's runpod pool: the given image, the host's type, the pool tag.
    let launch =
        json!({"hostname": hostname, "image_name": "RunPod", "image_id": emulator_ami(&ec2).await});
    let resp = functions::router::serve_route(
        functions::routes::of_function("execute-runpod-launch").expect("route"),
        state.clone(),
        http::Request::builder()
            .method("POST")
            .uri("/api/execute-runpod-launch")
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/json")
            .body(lambda_http::Body::Text(launch.to_string()))
            .unwrap(),
    )
    .await;
    let status = resp.status();
    let launched: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(status, 200, "{launched}");
    let new_id = launched["data"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = ec2
        .describe_instances()
        .instance_ids(&new_id)
        .send()
        .await
        .unwrap();
    let i = d.reservations()[0].instances()[0].clone();
    assert_eq!(i.image_id(), launch["image_id"].as_str());
    assert_eq!(i.instance_type().unwrap().as_str(), "g4dn.xlarge");
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("gpufleet:pool") && t.value() == Some("T4-runpod")));
    assert_eq!(
        state.store.host_pools().await.unwrap()[launched["data"]["vm_id"].as_str().unwrap()],
        "T4-runpod"
    );
    state
        .compute
        .terminate(&[instance_id, new_id])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_launch_onto_a_hosts_runpod_pool_is_previewed_masked_and_executed() {
    let app = spawn_app_with(Options {
        config: Some(fleet_config),
        ..Options::default()
    })
    .await;
    build_fleet(&app).await;
    let key = app.api_key("ops", 8).await;
    let body = json!({"hostname": "w6", "image_name": "RunPod Ubuntu 22.04", "image_id": "ami-0123456789abcdef0"});
    let (s, _) = app
        .pools_post(Some(&key), "/api/preview-runpod-launch", body.clone())
        .await;
    assert_eq!(s, 401, "launching onto hosts is an admin action");
    let (s, p) = app
        .pools_post(Some("admin"), "/api/preview-runpod-launch", body.clone())
        .await;
    assert_eq!(s, 200, "{p}");
    let masked = p["data"]["masked_command"].as_str().unwrap();
    assert!(masked.contains("--image-id ami-0123456789abcdef0 --instance-type g5.xlarge"));
    assert!(masked.contains("GPUFLEET_AGENT_TOKEN=****"));
    assert_eq!(p["data"]["estimated_resources"]["gpu_count"], 1);
    assert_eq!(p["data"]["estimated_resources"]["aggregate"], "A10G-runpod");
    let vms_before = app.state.store.list_vms().await.unwrap().len();

    // Launching needs an admin; bad input changes nothing.
    let (s, _) = app
        .pools_post(Some(&key), "/api/execute-runpod-launch", body.clone())
        .await;
    assert_eq!(s, 401);
    for bad in [
        json!({"hostname": "w6", "image_name": "x", "image_id": "img-123456"}),
        json!({"hostname": "w6", "image_id": "ami-0123"}),
    ] {
        let (s, _) = app
            .pools_post(Some("admin"), "/api/execute-runpod-launch", bad)
            .await;
        assert_eq!(s, 400);
    }
    let (s, _) = app
        .pools_post(
            Some("admin"),
            "/api/execute-runpod-launch",
            json!({"hostname": "nope", "image_name": "x", "image_id": "ami-0123"}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(app.state.store.list_vms().await.unwrap().len(), vms_before);

    let (s, e) = app
        .pools_post(Some("admin"), "/api/execute-runpod-launch", body)
        .await;
    assert_eq!(s, 200, "{e}");
    let vm = e["data"]["vm_id"].as_str().unwrap().to_string();
    assert_eq!(e["data"]["aggregate"], "A10G-runpod");
    assert_eq!(e["data"]["status"], "BUILDING");
    // A real agent process boots and reports; the host sits in the runpod pool.
    eventually(Duration::from_secs(60), "the launched VM runs", || async {
        app.state
            .store
            .get_vm(&vm)
            .await
            .unwrap()
            .is_some_and(|v| v.status == VmStatus::Running)
    })
    .await;
    let (_, runpod) = app.pools_get(&key, "/api/aggregates/A10G/runpod").await;
    assert_eq!(hosts_of(&runpod["data"]), std::slice::from_ref(&vm));
    let log = app.state.store.list_commands(5, None, None).await.unwrap();
    assert!(log
        .iter()
        .any(|c| c.command == format!("start agent process for {vm}") && c.user == "admin:admin"));
}
