//! Launch, destroy and reconcile on AWS, against the emulator: the real launch and destroy
//! handlers, SQS, the provisioning function, EC2 and DynamoDB, through the real SDKs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_ec2::types::{Filter, InstanceStateName, ResourceType, Tag, TagSpecification};
use base64::Engine as _;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::adapters::aws::RequestStats;
use shared::adapters::{Ec2Compute, Ec2Config, PollingNotifier, SqsQueue, SystemClock};
use shared::config::Config;
use shared::domain::{TokenHash, VmStatus};
use shared::ports::{ComputeProvider, Instance, LaunchError, LaunchSpec, Market};
use shared::state::AdminCredentials;
use shared::AppState;

use crate::helpers::*;

const API_URL: &str = "https://api.example.test";

struct Aws {
    state: AppState,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    ami: String,
    ec2_stats: Arc<RequestStats>,
    deployment: String,
}

/// A deployment on the emulator. `wrap` may put a fault injector around the EC2 adapter.
async fn aws_with(
    tweak: impl FnOnce(&mut Config, &mut HashMap<&'static str, String>),
    wrap: impl FnOnce(Ec2Compute) -> Arc<dyn ComputeProvider>,
) -> Aws {
    let sdk = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = dynamo_store().await;
    let deployment = format!("test-{}", uuid::Uuid::new_v4().simple());
    let queue_url = sqs
        .create_queue()
        .queue_name(&deployment)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let ami = emulator_ami(&ec2).await;
    let mut config = Config::from_lookup(|_| None).unwrap();
    config.api_url = Some(API_URL.into());
    config.deployment = deployment.clone();
    config.reconcile_grace = Duration::ZERO;
    config.launch_attempts = 3;
    let mut ec2_env: HashMap<&'static str, String> = HashMap::from([
        ("GPUFLEET_AMI", ami.clone()),
        (
            "GPUFLEET_AGENT_URL",
            "https://downloads.example.test/gpufleet".to_string(),
        ),
    ]);
    tweak(&mut config, &mut ec2_env);
    let ec2_config = Ec2Config::from_lookup(&deployment, |k| ec2_env.get(k).cloned()).unwrap();
    let compute = Ec2Compute::new(ec2.clone(), ec2_config);
    let ec2_stats = compute.stats();
    let state = AppState {
        store: Arc::new(store),
        compute: wrap(compute),
        queue: Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone())),
        notifier: Arc::new(PollingNotifier {
            interval: Duration::from_millis(50),
        }),
        clock: Arc::new(SystemClock),
        work: Arc::new(s3_work_store().await),
        network: Arc::new(shared::adapters::NoNetwork("no network in this test")),
        clouds: Default::default(),
        admin: Arc::new(AdminCredentials::new(ADMIN_USER, ADMIN_PASSWORD)),
        config: Arc::new(config),
    };
    Aws {
        state,
        ec2,
        sqs,
        queue_url,
        ami,
        ec2_stats,
        deployment,
    }
}

async fn aws() -> Aws {
    aws_with(|_, _| {}, |c| Arc::new(c)).await
}

fn admin_request(method: &str, path: &str, body: &str) -> lambda_http::Request {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"));
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Basic {basic}"))
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::Text(body.to_string()))
        .unwrap()
}

fn body_json(resp: &functions::Response) -> Value {
    let bytes: &[u8] = resp.body().as_ref();
    serde_json::from_slice(bytes).unwrap()
}

impl Aws {
    /// `POST /api/launch` through the real Lambda handler.
    async fn launch(&self, n: u32) -> Value {
        let resp = crate::helpers::serve_in_process(
            self.state.clone(),
            admin_request("POST", "/api/launch", &format!("num_vms={n}")),
        )
        .await;
        assert_eq!(resp.status(), 202, "{:?}", resp.body());
        body_json(&resp)
    }

    /// Receives `n` messages from the queue, as the Lambda event source would deliver them.
    async fn receive(&self, n: usize) -> Vec<Value> {
        let mut records = Vec::new();
        for _ in 0..50 {
            if records.len() >= n {
                break;
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                )
                .send()
                .await
                .unwrap();
            for m in out.messages() {
                let attributes: HashMap<String, String> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "awsRegion": "us-east-1",
                }));
            }
        }
        assert_eq!(records.len(), n, "messages on the queue");
        records
    }

    /// The provisioning Lambda's handler on one batch.
    async fn provision(&self, records: &[Value]) -> SqsBatchResponse {
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        functions::provision::handle_batch(&self.state, event).await
    }

    async fn provision_all(&self, records: &[Value]) {
        for batch in records.chunks(10) {
            let response = self.provision(batch).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }

    /// This deployment's instances that are not ending.
    async fn live_instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:gpufleet:deployment")
                    .values(&self.deployment)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect()
    }

    async fn state_of(&self, id: &str) -> InstanceStateName {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0]
            .state()
            .unwrap()
            .name()
            .unwrap()
            .clone()
    }

    /// An instance started behind gpufleet's back, with the given tags.
    async fn foreign_instance(&self, tags: &[(&str, &str)]) -> String {
        let mut req = self
            .ec2
            .run_instances()
            .image_id(&self.ami)
            .instance_type("t3.micro".into())
            .min_count(1)
            .max_count(1);
        if !tags.is_empty() {
            let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
            for (k, v) in tags {
                spec = spec.tags(Tag::builder().key(*k).value(*v).build());
            }
            req = req.tag_specifications(spec.build());
        }
        req.send().await.unwrap().instances()[0]
            .instance_id()
            .unwrap()
            .to_string()
    }
}

fn tag<'a>(i: &'a aws_sdk_ec2::types::Instance, key: &str) -> Option<&'a str> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_ten_tagged_instances_and_redelivery_starts_no_more() {
    let aws = aws().await;
    let launched = aws.launch(10).await;
    let op_id = launched["operation_id"].as_str().unwrap().to_string();
    let records = aws.receive(10).await;
    aws.provision_all(&records).await;

    let instances = aws.live_instances().await;
    assert_eq!(instances.len(), 10);
    let vms = aws.state.store.list_vms().await.unwrap();
    assert_eq!(vms.len(), 10);
    for vm in &vms {
        let id = vm.instance_id.as_deref().expect("instance id recorded");
        let instance = instances
            .iter()
            .find(|i| i.instance_id() == Some(id))
            .expect("our instance");
        assert_eq!(
            tag(instance, "gpufleet:hostname"),
            Some(vm.hostname.as_str())
        );
        assert_eq!(tag(instance, "gpufleet:operation"), Some(op_id.as_str()));
        assert_eq!(tag(instance, "Name"), Some(vm.hostname.as_str()));
        // user_data: gzip inside base64; hostname, API URL, and the token whose hash we keep.
        let attr = aws
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let encoded = attr.user_data().and_then(|u| u.value()).expect("user_data");
        let gz = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert!(gz.len() < 16 * 1024);
        let mut script = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut script)
            .unwrap();
        assert!(script.contains(&format!("GPUFLEET_HOSTNAME={}\n", vm.hostname)));
        assert!(script.contains(&format!("GPUFLEET_ALLOCATOR_URL={API_URL}\n")));
        let token = script
            .lines()
            .find_map(|l| l.strip_prefix("GPUFLEET_AGENT_TOKEN="))
            .expect("token line");
        assert_eq!(TokenHash::of(token), vm.token_hash, "the VM's own token");
    }
    assert_eq!(aws.ec2_stats.snapshot()["RunInstances"].0, 10);

    // Every message delivered again, and the whole batch replayed: still ten machines.
    let redelivered: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["attributes"]["ApproximateReceiveCount"] = json!("2");
            r
        })
        .collect();
    aws.provision_all(&redelivered).await;
    aws.provision_all(&records).await;
    assert_eq!(aws.live_instances().await.len(), 10);
    assert_eq!(
        aws.ec2_stats.snapshot()["RunInstances"].0,
        10,
        "no RunInstances for a launched VM"
    );
}

#[tokio::test]
async fn a_poisoned_message_fails_alone() {
    let aws = aws().await;
    aws.launch(2).await;
    let mut records = aws.receive(2).await;
    let mut poison = records[0].clone();
    poison["messageId"] = json!("poison-1");
    poison["body"] = json!("{\"v\":1,\"kind\":\"format_disk\"}");
    records.insert(1, poison);
    let response = aws.provision(&records).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["poison-1"]);
    assert_eq!(aws.live_instances().await.len(), 2);
}

#[tokio::test]
async fn an_invalid_instance_type_ends_in_error_with_the_reason() {
    let aws = aws_with(
        |_, env| {
            env.insert("GPUFLEET_INSTANCE_TYPE", "p9.bogus".into());
        },
        |c| Arc::new(c),
    )
    .await;
    aws.launch(2).await;
    let records = aws.receive(2).await;
    aws.provision_all(&records).await;
    for vm in aws.state.store.list_vms().await.unwrap() {
        assert_eq!(vm.status, VmStatus::Error);
        let reason = vm.status_reason.unwrap_or_default();
        assert!(reason.contains("InvalidInstanceType"), "{reason}");
    }
    assert!(aws.live_instances().await.is_empty());
}

/// The real EC2 adapter with one fault injected at the port (for what the emulator cannot
/// produce: spot capacity errors, machines that will not end, a destroy racing a launch).
struct Faulty {
    inner: Ec2Compute,
    fault: Fault,
}

enum Fault {
    /// Spot has no capacity (the emulator's spot always has).
    NoSpotCapacity,
    /// Termination is never confirmed.
    WontDie,
    /// The VM's record is deleted right after its machine starts, as a destroy landing
    /// mid-launch would.
    DeleteRecordDuringLaunch(Arc<dyn shared::ports::Store>),
}

fn faulty(fault: Fault) -> impl FnOnce(Ec2Compute) -> Arc<dyn ComputeProvider> {
    |inner| Arc::new(Faulty { inner, fault })
}

#[async_trait]
impl ComputeProvider for Faulty {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, LaunchError> {
        match &self.fault {
            Fault::NoSpotCapacity if spec.market == Market::Spot => Err(LaunchError::Capacity(
                "InsufficientInstanceCapacity: no spot here".into(),
            )),
            Fault::DeleteRecordDuringLaunch(store) => {
                let id = self.inner.launch(spec).await?;
                store.delete_vm(&spec.hostname, 0).await?;
                Ok(id)
            }
            _ => self.inner.launch(spec).await,
        }
    }
    async fn find_by_hostname(&self, hostname: &str) -> shared::Result<Option<Instance>> {
        self.inner.find_by_hostname(hostname).await
    }
    async fn list_machines(&self) -> shared::Result<Vec<Instance>> {
        self.inner.list_machines().await
    }
    async fn terminate(&self, ids: &[String]) -> shared::Result<Vec<String>> {
        match self.fault {
            Fault::WontDie => Ok(Vec::new()),
            _ => self.inner.terminate(ids).await,
        }
    }

    fn tags(&self) -> Option<&dyn shared::ports::MachineTags> {
        None
    }
}

#[tokio::test]
async fn spot_without_capacity_falls_back_to_on_demand_when_allowed() {
    let aws = aws_with(
        |c, _| c.market = Market::Spot,
        faulty(Fault::NoSpotCapacity),
    )
    .await;
    aws.launch(2).await;
    let records = aws.receive(2).await;
    aws.provision_all(&records).await;
    let instances = aws.live_instances().await;
    assert_eq!(instances.len(), 2);
    assert!(
        instances.iter().all(|i| i.instance_lifecycle().is_none()),
        "on-demand"
    );

    // Fallback not allowed: retried, then the VM ends in error with the reason.
    let aws = aws_with(
        |c, _| {
            c.market = Market::Spot;
            c.spot_fallback = false;
        },
        faulty(Fault::NoSpotCapacity),
    )
    .await;
    aws.launch(1).await;
    let records = aws.receive(1).await;
    let response = aws.provision(&records).await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "retried by redelivery"
    );
    let mut last = records.clone();
    last[0]["attributes"]["ApproximateReceiveCount"] = json!("3");
    aws.provision_all(&last).await;
    let vm = &aws.state.store.list_vms().await.unwrap()[0];
    assert_eq!(vm.status, VmStatus::Error);
    assert!(
        vm.status_reason
            .as_deref()
            .unwrap_or_default()
            .contains("insufficient capacity"),
        "{vm:?}"
    );
}

#[tokio::test]
async fn destroy_ends_every_tagged_instance_and_nothing_else() {
    let aws = aws().await;
    aws.launch(3).await;
    aws.provision_all(&aws.receive(3).await).await;
    let ours: Vec<String> = aws
        .live_instances()
        .await
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    // An orphan of ours (no record), an untagged machine, another deployment's machine.
    let orphan = aws
        .foreign_instance(&[
            ("gpufleet:deployment", &aws.deployment),
            ("gpufleet:hostname", "ghost"),
        ])
        .await;
    let untagged = aws.foreign_instance(&[]).await;
    let other = aws
        .foreign_instance(&[("gpufleet:deployment", "someone-else")])
        .await;

    let resp =
        crate::helpers::serve_in_process(aws.state.clone(), admin_request("POST", "/destroy", ""))
            .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    assert_eq!(body_json(&resp)["operation"]["status"], "succeeded");
    for id in ours.iter().chain([&orphan]) {
        let state = aws.state_of(id).await;
        assert!(
            matches!(
                state,
                InstanceStateName::ShuttingDown | InstanceStateName::Terminated
            ),
            "{id}: {state:?}"
        );
    }
    for id in [&untagged, &other] {
        assert_eq!(
            aws.state_of(id).await,
            InstanceStateName::Running,
            "{id} untouched"
        );
    }
    assert!(aws.state.store.list_vms().await.unwrap().is_empty());
}

#[tokio::test]
async fn records_stay_until_termination_is_confirmed_and_in_use_needs_confirmation() {
    let aws = aws_with(|_, _| {}, faulty(Fault::WontDie)).await;
    aws.launch(2).await;
    aws.provision_all(&aws.receive(2).await).await;
    let resp =
        crate::helpers::serve_in_process(aws.state.clone(), admin_request("POST", "/destroy", ""))
            .await;
    assert_eq!(resp.status(), 200);
    let vms = aws.state.store.list_vms().await.unwrap();
    assert_eq!(vms.len(), 2, "not confirmed gone: kept");
    assert!(vms.iter().all(|v| v.status == VmStatus::Error
        && v.status_reason.as_deref()
            == Some("termination not confirmed; the machine may still run")));

    // A VM in use: 409 with its name, unless confirmed.
    let aws = self::aws().await;
    aws.launch(1).await;
    aws.provision_all(&aws.receive(1).await).await;
    let vm = &aws.state.store.list_vms().await.unwrap()[0];
    aws.state
        .store
        .update_vm(&vm.hostname, &shared::domain::VmChange::InUse(true), 1)
        .await
        .unwrap();
    let resp =
        crate::helpers::serve_in_process(aws.state.clone(), admin_request("POST", "/destroy", ""))
            .await;
    assert_eq!(resp.status(), 409);
    assert!(body_json(&resp)["error"]
        .as_str()
        .unwrap()
        .contains(&vm.hostname));
    assert_eq!(
        aws.live_instances().await.len(),
        1,
        "nothing was terminated"
    );
    let resp = crate::helpers::serve_in_process(
        aws.state.clone(),
        admin_request("POST", "/destroy", "confirm_in_use=yes"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(aws.live_instances().await.is_empty());
}

#[tokio::test]
async fn reconcile_ends_orphans_and_marks_vanished_machines() {
    let aws = aws().await;
    aws.launch(2).await;
    aws.provision_all(&aws.receive(2).await).await;
    let orphan = aws
        .foreign_instance(&[
            ("gpufleet:deployment", &aws.deployment),
            ("gpufleet:hostname", "ghost"),
        ])
        .await;
    let other = aws
        .foreign_instance(&[("gpufleet:deployment", "someone-else")])
        .await;
    let vms = aws.state.store.list_vms().await.unwrap();
    let victim = vms[0].instance_id.clone().unwrap();
    aws.ec2
        .terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .unwrap();

    let resp = crate::helpers::serve_in_process(
        aws.state.clone(),
        admin_request("POST", "/api/reconcile", ""),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let report = body_json(&resp);
    assert_eq!(report["orphans_terminated"], json!([orphan]));
    assert_eq!(report["vanished_marked"], json!([vms[0].hostname]));
    assert!(matches!(
        aws.state_of(&orphan).await,
        InstanceStateName::ShuttingDown | InstanceStateName::Terminated
    ));
    assert_eq!(aws.state_of(&other).await, InstanceStateName::Running);
    let marked = aws
        .state
        .store
        .get_vm(&vms[0].hostname)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marked.status, VmStatus::Error);
    let kept = aws
        .state
        .store
        .get_vm(&vms[1].hostname)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.status,
        VmStatus::Initializing,
        "the healthy one is untouched"
    );
}

/// Measurement (printed, not asserted on time): launch 100 VMs through the handler, then
/// the provisioner drains the queue in batches of 10; time to the last RunInstances and
/// EC2 calls per VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_one_hundred_measurement() {
    let aws = aws_with(|c, _| c.max_launch = 100, |c| Arc::new(c)).await;
    let started = Instant::now();
    aws.launch(100).await;
    let accepted = started.elapsed();
    let records = aws.receive(100).await;
    let mut tasks = tokio::task::JoinSet::new();
    for batch in records.chunks(10) {
        let (state, batch) = (aws.state.clone(), batch.to_vec());
        tasks.spawn(async move {
            let event: SqsEvent = serde_json::from_value(json!({ "Records": batch })).unwrap();
            functions::provision::handle_batch(&state, event).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().batch_item_failures.is_empty());
    }
    let done = started.elapsed();
    let stats = aws.ec2_stats.snapshot();
    let calls: u64 = stats.values().map(|(n, _)| n).sum();
    println!(
        "MEASURE launch 100: 202 after {accepted:.2?}; all RunInstances done after {done:.2?} (10 batches of 10 in parallel, emulator serialises requests); EC2 calls: {stats:?} = {:.2} per VM",
        calls as f64 / 100.0
    );
    assert_eq!(aws.live_instances().await.len(), 100);
    assert_eq!(stats["RunInstances"].0, 100);
}

#[tokio::test]
async fn a_vm_destroyed_during_its_launch_leaves_no_machine() {
    let aws = aws().await;
    aws.launch(1).await;
    let records = aws.receive(1).await;
    // Destroy runs after the record exists but before the provisioner got to it.
    let hostname = aws.state.store.list_vms().await.unwrap()[0]
        .hostname
        .clone();
    let inner = Ec2Compute::new(
        aws.ec2.clone(),
        Ec2Config::from_lookup(&aws.deployment, |k| match k {
            "GPUFLEET_AMI" => Some(aws.ami.clone()),
            "GPUFLEET_AGENT_URL" => Some("https://downloads.example.test/gpufleet".into()),
            _ => None,
        })
        .unwrap(),
    );
    let mut state = aws.state.clone();
    state.compute = faulty(Fault::DeleteRecordDuringLaunch(aws.state.store.clone()))(inner);
    let job = shared::domain::Job::from_message(records[0]["body"].as_str().unwrap()).unwrap();
    let outcome = shared::usecases::provisioning::run_job((&state).into(), &job, 1).await;
    assert_eq!(outcome, shared::usecases::provisioning::JobOutcome::Done);
    assert!(aws.state.store.get_vm(&hostname).await.unwrap().is_none());
    assert!(
        aws.live_instances().await.is_empty(),
        "the machine was ended at once"
    );
}

#[tokio::test]
async fn a_retried_job_comes_back_later_not_at_once() {
    let aws = aws_with(
        |c, _| {
            c.market = Market::Spot;
            c.spot_fallback = false;
        },
        faulty(Fault::NoSpotCapacity),
    )
    .await;
    // With a visibility timeout of 0 a failed message would be back at once.
    aws.sqs
        .set_queue_attributes()
        .queue_url(&aws.queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap();
    aws.launch(1).await;
    let records = aws.receive(1).await;
    let response = aws.provision(&records).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    let again = aws
        .sqs
        .receive_message()
        .queue_url(&aws.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert!(
        again.messages().is_empty(),
        "the retry waits for its backoff (30 s after the first attempt)"
    );
    assert_eq!(shared::ports::retry_delay(1), Duration::from_secs(30));
    assert_eq!(shared::ports::retry_delay(3), Duration::from_secs(120));
    assert_eq!(shared::ports::retry_delay(20), Duration::from_secs(900));
}

fn shapes(spec: &[(&str, u32)]) -> Vec<shared::domain::requests::GpuShape> {
    spec.iter()
        .map(|(t, g)| shared::domain::requests::GpuShape {
            instance_type: (*t).into(),
            gpus: *g,
        })
        .collect()
}

fn caller(user: &str) -> shared::domain::api_keys::Caller {
    shared::domain::api_keys::Caller {
        user_id: user.into(),
        gpu_quota: 8,
        budget_usd: None,
        key_id: format!("key-of-{user}"),
    }
}

/// A GPU request on AWS: the create records it and queues it; the provisioner plans 5 GPUs
/// as 4 + 1 and launches tagged instances of those types through the same two-phase path;
/// the agents' reports complete it; the lease expires and the instances are terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gpu_request_launches_tagged_instances_and_its_lease_ends_on_aws() {
    use shared::usecases::{requests, vm_agent};
    let aws = aws_with(
        |config, _| config.gpu_shapes = shapes(&[("g4dn.xlarge", 1), ("g4dn.12xlarge", 4)]),
        |c| Arc::new(c),
    )
    .await;
    let body = json!({"user_id": "gina", "gpu_count": 5, "duration_hours": 1});
    let created = requests::create(
        (&aws.state).into(),
        &caller("gina"),
        new_request(&body),
        None,
    )
    .await
    .unwrap();
    let id = created.request.request_id.clone();
    // The provisioning job, then the two launch jobs it queued.
    let jobs = aws.receive(1).await;
    aws.provision_all(&jobs).await;
    let launches = aws.receive(2).await;
    aws.provision_all(&launches).await;

    let instances = aws.live_instances().await;
    assert_eq!(instances.len(), 2);
    let mut types: Vec<String> = instances
        .iter()
        .map(|i| i.instance_type().unwrap().as_str().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["g4dn.12xlarge", "g4dn.xlarge"]);
    for i in &instances {
        assert_eq!(tag(i, "gpufleet:request"), Some(id.as_str()));
        assert!(tag(i, "gpufleet:lease-expires").unwrap().ends_with('Z'));
    }
    let r = aws.state.store.get_request(&id).await.unwrap().unwrap();
    assert_eq!(r.status.as_str(), "provisioning");

    // Each machine's agent reports running with the token its user_data carried.
    for launch in &launches {
        let job: Value = serde_json::from_str(launch["body"].as_str().unwrap()).unwrap();
        let vm = vm_agent::authenticate(
            &*aws.state.store,
            job["hostname"].as_str().unwrap(),
            job["token"].as_str(),
        )
        .await
        .unwrap();
        vm_agent::report(
            (&aws.state).into(),
            &vm,
            shared::domain::VmChange::Status(VmStatus::Running),
        )
        .await
        .unwrap();
    }
    let r = aws.state.store.get_request(&id).await.unwrap().unwrap();
    assert_eq!(r.status.as_str(), "completed", "{r:?}");
    let access = r.access.unwrap();
    let mut ids: Vec<&str> = access
        .hosts
        .iter()
        .map(|h| h.instance_id.as_str())
        .collect();
    ids.sort();
    let mut live: Vec<&str> = instances.iter().map(|i| i.instance_id().unwrap()).collect();
    live.sort();
    assert_eq!(ids, live);
    assert_eq!(access.hosts.iter().map(|h| h.gpus).sum::<u32>(), 5);
    assert!(access.hosts.iter().all(|h| h.address.is_some()));
    assert_eq!(aws.state.store.gpus_in_use("gina").await.unwrap(), 5);

    // An hour later the scheduled reconcile ends the lease: terminated (verified), expired,
    // quota back.
    let clock = Arc::new(shared::adapters::OffsetClock::default());
    clock.advance(Duration::from_secs(3600 + 60));
    let mut later = aws.state.clone();
    later.clock = clock;
    let report = shared::usecases::reconcile::reconcile(&later)
        .await
        .unwrap();
    assert_eq!(report.requests.expired, std::slice::from_ref(&id));
    assert!(aws.live_instances().await.is_empty());
    for i in &instances {
        let state = aws.state_of(i.instance_id().unwrap()).await;
        assert!(matches!(
            state,
            InstanceStateName::ShuttingDown | InstanceStateName::Terminated
        ));
    }
    let r = aws.state.store.get_request(&id).await.unwrap().unwrap();
    assert_eq!(r.status.as_str(), "expired");
    assert_eq!(aws.state.store.gpus_in_use("gina").await.unwrap(), 0);
    assert!(aws.state.store.list_vms().await.unwrap().is_empty());
}

/// An instance type EC2 refuses: the machine is marked `error` and the sweep fails the
/// request with the reason, ending what was started.
#[tokio::test]
async fn a_gpu_request_ec2_refuses_fails_with_the_reason() {
    use shared::usecases::requests;
    let aws = aws_with(
        |config, _| config.gpu_shapes = shapes(&[("p9.bogus", 1)]),
        |c| Arc::new(c),
    )
    .await;
    let body = json!({"user_id": "hal", "gpu_count": 2, "duration_hours": 1});
    let id = requests::create(
        (&aws.state).into(),
        &caller("hal"),
        new_request(&body),
        None,
    )
    .await
    .unwrap()
    .request
    .request_id;
    let jobs = aws.receive(1).await;
    aws.provision_all(&jobs).await;
    let launches = aws.receive(2).await;
    aws.provision_all(&launches).await;
    let report = requests::sweep((&aws.state).into()).await.unwrap();
    assert_eq!(report.failed, std::slice::from_ref(&id));
    let r = aws.state.store.get_request(&id).await.unwrap().unwrap();
    assert_eq!(r.status.as_str(), "failed");
    assert!(r.error_msg.unwrap().contains("InvalidInstanceType"));
    assert_eq!(aws.state.store.gpus_in_use("hal").await.unwrap(), 0);
    assert!(aws.live_instances().await.is_empty());
}

/// The queue is gone: the create answers 500 without internals, and the request it recorded
/// is failed at once (quota freed), never left pending with nothing queued.
#[tokio::test]
async fn a_request_that_cannot_be_queued_is_a_500_and_leaves_nothing_pending() {
    let aws = aws().await;
    let mut state = aws.state.clone();
    let missing = format!("{}-missing", aws.queue_url);
    state.queue = Arc::new(SqsQueue::new(aws.sqs.clone(), missing));
    let (key, plain) = shared::domain::ApiKey::generate("ivy", "", 8, 1);
    state.store.insert_api_key(&key).await.unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("/api/v1/requests")
        .header("authorization", format!("Bearer {plain}"))
        .header("content-type", "application/json")
        .body(Body::Text(
            json!({"user_id": "ivy", "gpu_count": 2, "duration_hours": 1}).to_string(),
        ))
        .unwrap();
    let resp = crate::helpers::serve_in_process(state.clone(), req).await;
    assert_eq!(resp.status(), 500);
    let body = body_json(&resp);
    assert!(body["error_id"].is_string(), "{body}");
    assert!(
        !body.to_string().contains("missing"),
        "no internals: {body}"
    );
    let listed = state.store.list_requests(Some("ivy"), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status.as_str(), "failed");
    assert_eq!(state.store.gpus_in_use("ivy").await.unwrap(), 0);
}

fn new_request(body: &Value) -> shared::domain::requests::NewRequest {
    shared::domain::requests::NewRequest::parse(body, 24).expect("a valid request")
}

#[tokio::test]
async fn a_spot_launch_is_priced_at_the_spot_price_and_its_spend_outlives_destroy() {
    let aws = aws_with(|config, _| config.market = Market::Spot, |c| Arc::new(c)).await;
    let spot = aws
        .state
        .compute
        .spot_price("g4dn.xlarge")
        .await
        .unwrap()
        .expect("the emulator quotes spot prices");
    assert!(spot > 0.0);
    aws.launch(2).await;
    aws.provision_all(&aws.receive(2).await).await;
    let vms = aws.state.store.list_vms().await.unwrap();
    assert_eq!(vms.len(), 2);
    for vm in &vms {
        let metering = vm.metering.as_ref().expect("metered from its launch");
        let price = metering.price.as_ref().expect("priced");
        assert_eq!(
            price.usd_per_hour, spot,
            "the spot price, not the list price"
        );
        assert!(price.source.contains("spot price at launch"), "{price:?}");
    }
    assert!(aws.ec2_stats.snapshot()["DescribeSpotPriceHistory"].0 >= 2);

    let resp =
        crate::helpers::serve_in_process(aws.state.clone(), admin_request("POST", "/destroy", ""))
            .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    assert!(aws.state.store.list_vms().await.unwrap().is_empty());
    // The ledger keeps each machine's spend, once, at its launch price.
    let ledger = aws.state.store.ended_spend(0).await.unwrap();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    for record in &ledger {
        assert_eq!(record.price.as_ref().unwrap().usd_per_hour, spot);
        assert!(record.ended_at.is_some());
        assert!(vms.iter().any(|vm| vm.hostname == record.name));
    }
}
