//! `spawn_app()`: a local server on 127.0.0.1:0 with its own data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shared::adapters::OffsetClock;

use gpufleet::server::{self, RunningServer, ServerOptions};
use serde_json::Value;
use shared::config::Config;
use shared::domain::{Vm, VmToken};
use shared::AppState;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-password";
pub const CRD: &str = "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0AbCd-ef_GH\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)";

/// The `gpufleet` CLI built for these tests (same code as the real binary).
pub fn agent_program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gpufleet-test-agent"))
}

pub struct TestApp {
    pub url: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    server: Option<RunningServer>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Options {
    pub long_poll_secs: u64,
    pub max_launch: u32,
    pub log_cap_bytes: usize,
    /// Another store than SQLite in the temp dir (the DynamoDB runs).
    pub store: Option<std::sync::Arc<dyn shared::ports::Store>>,
    /// The server's clock: tests advance it to expire leases.
    pub clock: Arc<OffsetClock>,
    /// Adjusts the configuration before the server starts.
    pub config: Option<fn(&mut Config)>,
    /// Another agent program for the local VMs (a missing one forces launch failures).
    pub agent_program: Option<PathBuf>,
    /// The GPU clouds of the offers API (default: the local one).
    pub clouds: Option<Vec<Arc<dyn shared::ports::GpuCloud>>>,
    /// Network and firewall operations (default: none, as in local mode).
    pub network: Option<Arc<dyn shared::ports::NetworkProvider>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            long_poll_secs: 25,
            max_launch: 100,
            log_cap_bytes: 1 << 20,
            store: None,
            clock: Arc::new(OffsetClock::default()),
            config: None,
            agent_program: None,
            clouds: None,
            network: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = spawn_app_in(dir.path(), options).await;
    app._dir = Some(dir);
    app
}

/// The same server, with its state in a fresh DynamoDB table in the emulator.
pub async fn spawn_app_on_dynamodb() -> TestApp {
    spawn_app_with(Options {
        store: Some(std::sync::Arc::new(dynamo_store().await)),
        ..Options::default()
    })
    .await
}

/// A server over an existing data directory (to test restarts).
pub async fn spawn_app_in(data_dir: &Path, options: Options) -> TestApp {
    let mut config = Config::from_lookup(|_| None).expect("default config");
    config.admin_user = ADMIN_USER.into();
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config.data_dir = data_dir.to_path_buf();
    config.long_poll = Duration::from_secs(options.long_poll_secs);
    config.max_launch = options.max_launch;
    config.log_cap_bytes = options.log_cap_bytes;
    if let Some(adjust) = options.config {
        adjust(&mut config);
    }
    let server = server::start(ServerOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        config,
        agent_program: options.agent_program.clone().unwrap_or_else(agent_program),
        agent_args: vec![
            "--gpu".into(),
            "healthy".into(),
            "--watch-interval-secs".into(),
            "1".into(),
            "--give-up-after-secs".into(),
            "60".into(),
        ],
        kill_agents_on_drop: true,
        store: options.store.clone(),
        sweep_every: Duration::from_millis(200),
        clock: Some(options.clock.clone()),
        clouds: options.clouds.clone(),
        network: options.network.clone(),
        limits: Default::default(),
    })
    .await
    .expect("server starts");
    TestApp {
        url: server.url.clone(),
        state: server.state.clone(),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            // Below the server's idle timeout: never reuse a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        data_dir: data_dir.to_path_buf(),
        server: Some(server),
        _dir: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    pub fn admin(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
    }

    /// Registers a VM record (as a launch would) and reports `running` through the API
    /// with its own token. Returns (hostname, token).
    pub async fn register_vm(&self, hostname: &str) -> (String, String) {
        let (hostname, token) = self.register_initializing_vm(hostname).await;
        self.report(
            &token,
            "/api/vm-status",
            serde_json::json!({"hostname": hostname, "status": "running"}),
        )
        .await;
        (hostname, token)
    }

    pub async fn register_initializing_vm(&self, hostname: &str) -> (String, String) {
        let token = VmToken::generate();
        let vm = Vm::new(
            hostname.to_string(),
            token.hash(),
            self.state.clock.now_millis(),
        );
        self.state.store.insert_vm(&vm).await.expect("insert VM");
        (hostname.to_string(), token.as_str().to_string())
    }

    /// A VM report that must succeed.
    pub async fn report(&self, token: &str, path: &str, body: Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("report");
        assert_eq!(
            resp.status(),
            200,
            "{path} {body}: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// Submits the claim form; returns the HTML.
    pub async fn claim(&self, email: &str, crd_command: &str) -> String {
        let resp = self
            .client
            .post(self.url("/api/request_vm"))
            .form(&[("email", email), ("crd_command", crd_command)])
            .send()
            .await
            .expect("claim");
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("body")
    }

    /// Claims as a browser would and returns the page and the seat token the seat cookie
    /// carries (none when nothing was assigned).
    pub async fn claim_seat(&self, email: &str, crd_command: &str) -> (String, Option<String>) {
        let resp = self
            .client
            .post(self.url("/api/request_vm"))
            .form(&[("email", email), ("crd_command", crd_command)])
            .send()
            .await
            .expect("claim");
        assert_eq!(resp.status(), 200);
        let seat = seat_cookie(&resp);
        (resp.text().await.expect("body"), seat)
    }

    /// GET as admin, returning status and body.
    pub async fn admin_get(&self, path: &str, accept_json: bool) -> (u16, String) {
        let mut req = self.admin(self.client.get(self.url(path)));
        if accept_json {
            req = req.header("accept", "application/json");
        }
        let resp = req.send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    pub async fn free_count(&self) -> u64 {
        let body: Value = self
            .client
            .get(self.url("/api/unassigned_vms_count"))
            .send()
            .await
            .expect("count")
            .json()
            .await
            .expect("json");
        body["count"].as_u64().expect("count is a number")
    }
}

/// The hostname shown on a success page, if the claim succeeded.
pub fn assigned_hostname(html: &str) -> Option<String> {
    let start = html.find("id=\"hostname\">")? + "id=\"hostname\">".len();
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_string())
}

pub fn assigned_pin(html: &str) -> Option<String> {
    let start = html.find("id=\"pin\">")? + "id=\"pin\">".len();
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_string())
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client whose connections come from 127.0.0.`n` (per-address limits, such as the
/// failed-login throttle, count each address apart).
pub fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, n]))
        .build()
        .expect("client")
}

/// The AWS emulator (moto) the test command starts; DynamoDB tests need it.
pub fn aws_endpoint() -> String {
    std::env::var("GPUFLEET_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "the DynamoDB tests need the AWS emulator: run scripts/test.sh, or start \
             `scripts/moto_server.py 5000` (in the .venv it creates) and set \
             GPUFLEET_TEST_AWS_ENDPOINT=http://127.0.0.1:5000"
        )
    })
}

/// A DynamoDB store on a fresh table in the emulator, through the real SDK over HTTP.
pub async fn dynamo_store() -> shared::adapters::DynamoStore {
    dynamo_store_and_table().await.0
}

/// The SDK's configuration for the emulator (the tests' fixed credentials and region).
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// The same, with a client and the table's name (to touch items behind the store's back).
pub async fn dynamo_store_and_table() -> (
    shared::adapters::DynamoStore,
    aws_sdk_dynamodb::Client,
    String,
) {
    let config = sdk_config().await;
    let table = format!("gpufleet-test-{}", uuid_like());
    let client = aws_sdk_dynamodb::Client::new(&config);
    let store = shared::adapters::DynamoStore::new(client.clone(), table.clone());
    store
        .create_table_if_missing()
        .await
        .expect("create the table");
    (store, client, table)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An image the EC2 emulator accepts (it validates AMIs).
pub async fn emulator_ami(ec2: &aws_sdk_ec2::Client) -> String {
    ec2.describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("DescribeImages")
        .images()[0]
        .image_id()
        .expect("an image id")
        .to_string()
}

/// The seat token of a response's `Set-Cookie: gpufleet_seat=…`, if it sets one.
pub fn seat_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("gpufleet_seat="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// Whether the boot-script sandbox can run here: root and mount namespaces (CI has both).
pub fn can_sandbox() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root && std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Serves `req` in process as a deployment does: the route its method and path match,
/// through the router's whole pipeline.
pub async fn serve_in_process(
    state: shared::AppState,
    req: lambda_http::Request,
) -> functions::http::Response {
    let path = req.uri().path().to_string();
    match functions::routes::find(req.method(), &path) {
        functions::routes::Match::Found(route, _) => {
            functions::router::serve_route(route, state, req).await
        }
        _ => panic!("no route for {} {path}", req.method()),
    }
}

/// A work store on a fresh bucket in the emulator, through the real SDK over HTTP.
pub async fn s3_work_store() -> shared::adapters::S3WorkStore {
    let config = sdk_config().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!(
        "gpufleet-work-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    shared::adapters::S3WorkStore::new(client, bucket)
}
