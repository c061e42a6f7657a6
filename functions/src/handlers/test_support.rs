//! Handler-test helpers: a real SQLite store in a temp dir, and the sample API Gateway
//! events from `events/` (the same files `cargo lambda invoke --data-file` uses).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shared::adapters::InProcessQueue;
use shared::adapters::{InProcessNotifier, SqliteStore, SystemClock};
use shared::config::Config;
use shared::domain::{TokenHash, Vm, VmChange, VmStatus};
use shared::ports::{ComputeProvider, Instance, InstanceState, LaunchError, LaunchSpec};
use shared::state::AdminCredentials;
use shared::AppState;

use crate::http::{Request, Response};

/// Matches the `Authorization: Basic` header in the admin sample events.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password";

/// Records launches and terminations (the real agent-process provider is exercised by the
/// integration tests in `tests/`).
#[derive(Default)]
pub struct RecordingCompute {
    launched: Mutex<Vec<String>>,
    terminated: Mutex<Vec<String>>,
}

impl RecordingCompute {
    pub fn launched(&self) -> Vec<String> {
        self.launched.lock().unwrap().clone()
    }
    pub fn terminated(&self) -> Vec<String> {
        self.terminated.lock().unwrap().clone()
    }
}

#[async_trait]
impl ComputeProvider for RecordingCompute {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, LaunchError> {
        self.launched.lock().unwrap().push(spec.hostname.clone());
        Ok(format!("i-{}", spec.hostname))
    }
    async fn find_by_hostname(&self, _hostname: &str) -> shared::Result<Option<Instance>> {
        Ok(None)
    }
    async fn list_machines(&self) -> shared::Result<Vec<Instance>> {
        let terminated = self.terminated();
        Ok(self
            .launched()
            .into_iter()
            .map(|h| Instance {
                id: format!("i-{h}"),
                state: if terminated.contains(&format!("i-{h}")) {
                    InstanceState::Terminated
                } else {
                    InstanceState::Running
                },
                hostname: Some(h),
                launched_at: 0,
                address: Some("127.0.0.1".into()),
            })
            .collect())
    }
    async fn terminate(&self, instance_ids: &[String]) -> shared::Result<Vec<String>> {
        self.terminated
            .lock()
            .unwrap()
            .extend(instance_ids.iter().cloned());
        Ok(instance_ids.to_vec())
    }

    fn tags(&self) -> Option<&dyn shared::ports::MachineTags> {
        None
    }
}

pub struct TestState {
    pub state: AppState,
    pub compute: Arc<RecordingCompute>,
    /// The work store behind `state.work`, to play the part of the upload URLs.
    pub work: shared::adapters::LocalWorkStore,
    _dir: tempfile::TempDir,
}

impl TestState {
    pub fn new() -> Self {
        Self::with_long_poll_secs(25)
    }

    pub fn with_long_poll_secs(secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.long_poll = Duration::from_secs(secs);
        config.api_url = Some("http://127.0.0.1:9".into());
        let compute = Arc::new(RecordingCompute::default());
        let (queue, worker) = InProcessQueue::new();
        let work = shared::adapters::LocalWorkStore::new(
            dir.path().join("collected"),
            "http://127.0.0.1:9",
            Arc::new(SystemClock),
        );
        let state = AppState {
            store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
            compute: compute.clone(),
            queue: Arc::new(queue),
            notifier: Arc::new(InProcessNotifier::default()),
            clock: Arc::new(SystemClock),
            config: Arc::new(config),
            network: Arc::new(shared::adapters::NoNetwork("no network in this test")),
            clouds: Arc::new(shared::state::Clouds::new(vec![Arc::new(
                shared::adapters::LocalCloud::default(),
            )])),
            admin: Arc::new(AdminCredentials::new(ADMIN_USER, ADMIN_PASSWORD)),
            work: Arc::new(work.clone()),
        };
        worker.start(state.clone());
        TestState {
            state,
            compute,
            work,
            _dir: dir,
        }
    }

    /// An initializing VM whose token is `token-<hostname>`.
    pub async fn vm(&self, hostname: &str) {
        let vm = Vm::new(
            hostname.into(),
            TokenHash::of(&format!("token-{hostname}")),
            1,
        );
        self.state.store.insert_vm(&vm).await.unwrap();
    }

    /// A running VM that just called (so it is alive and free).
    pub async fn running_vm(&self, hostname: &str) {
        self.vm(hostname).await;
        self.state
            .store
            .update_vm(
                hostname,
                &VmChange::Status(VmStatus::Running),
                self.state.clock.now_millis(),
            )
            .await
            .unwrap();
    }

    /// Waits until the provisioner (in-process queue) launched `n` machines.
    pub async fn launched(&self, n: usize) {
        for _ in 0..200 {
            if self.compute.launched().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} of {n} launched", self.compute.launched().len());
    }

    pub async fn claim(&self, email: &str) {
        shared::usecases::participant::claim_vm(
            (&self.state).into(),
            shared::usecases::participant::ClaimInput {
                email,
                crd_command: "--code=4/abc",
                join_code: None,
                seat_token: None,
                client_ip: "127.0.0.1",
            },
        )
        .await
        .unwrap();
    }
}

/// Loads `events/<name>` as an API Gateway HTTP API (v2) request.
pub fn event(name: &str) -> Request {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn body_text(resp: &Response) -> String {
    let bytes: &[u8] = resp.body().as_ref();
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn body_json(resp: &Response) -> serde_json::Value {
    serde_json::from_str(&body_text(resp)).unwrap()
}

/// `state` with only the ports function `name` is granted on AWS (`catalog::FUNCTIONS`); the
/// others are `NotGranted`, so a handler that uses one fails here as it would on Lambda.
pub fn as_granted_to(state: &AppState, name: &str) -> AppState {
    let function = crate::catalog::function(name).unwrap_or_else(|| panic!("no function {name}"));
    let mut state = state.clone();
    if function.ec2 == crate::catalog::Ec2Access::None {
        state.compute = Arc::new(shared::adapters::NotGranted("EC2"));
    }
    if !function.uses_queue() {
        state.queue = Arc::new(shared::adapters::NotGranted("the launch queue"));
    }
    if function.clouds == crate::catalog::CloudAccess::None {
        state.clouds = Arc::new(shared::state::Clouds::default());
    }
    state
}

/// Serves `req` as a deployment does: the route its method and path match, through the
/// router's whole pipeline (origin check, authentication, envelope).
pub async fn serve(state: AppState, req: Request) -> Response {
    let path = req.uri().path().to_string();
    match crate::routes::find(req.method(), &path) {
        crate::routes::Match::Found(route, _) => {
            crate::router::serve_route(route, state, req).await
        }
        _ => panic!("no route for {} {path}", req.method()),
    }
}
