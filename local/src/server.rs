//! The local server: one listener, the route table, the same handlers the Lambda functions
//! run. Each request becomes a `lambda_http::Request` (body, path and query parameters)
//! exactly as API Gateway would hand it over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Body as AxumBody;
use http::StatusCode;
use lambda_http::RequestExt;
use shared::adapters::{
    AuditedCloud, AuditedCompute, CommandLogger, Dialect, DurableJobWorker, DurableQueue,
    InProcessNotifier, InProcessQueue, JobWorker, LocalCloud, LocalCompute, LocalComputeConfig,
    LocalWorkStore, SqliteStore, SystemClock, VastCloud,
};
use shared::config::Config;
use shared::ports::{GpuCloud, JobQueue, Store};

/// The job worker of the chosen queue.
enum Worker {
    Durable(DurableJobWorker),
    InProcess(JobWorker),
}
use shared::state::{AdminCredentials, Clouds};
use shared::AppState;

use crate::connections::ConnectionLimits;
use functions::http::{
    add_cors_headers, cors_preflight, typed_json_response, ApiError, ErrorBody, MAX_BODY_BYTES,
};
use functions::routes::{self, Match};

pub struct ServerOptions {
    pub addr: SocketAddr,
    pub config: Config,
    /// The binary with the `agent` subcommand that local compute starts per VM.
    pub agent_program: PathBuf,
    /// Extra `agent` arguments (e.g. `--gpu healthy`).
    pub agent_args: Vec<String>,
    /// Kill agents when the server is dropped (tests); by default they outlive it.
    pub kill_agents_on_drop: bool,
    /// Use this store instead of SQLite in the data directory (e.g. DynamoDB).
    pub store: Option<Arc<dyn Store>>,
    /// How often the server sweeps provisioning requests (ends expired leases, completes
    /// and fails requests), as the scheduled reconcile does on AWS.
    pub sweep_every: std::time::Duration,
    /// The clock (default: the system's).
    pub clock: Option<Arc<dyn shared::ports::Clock>>,
    /// The GPU clouds of the offers API (default: `local`, plus vast_ai when
    /// `GPUFLEET_VAST_API_KEY` is set).
    pub clouds: Option<Vec<Arc<dyn GpuCloud>>>,
    /// Network and firewall operations (default: none in local mode, a 503 saying so).
    pub network: Option<Arc<dyn shared::ports::NetworkProvider>>,
    /// Timeouts and the connection cap.
    pub limits: ConnectionLimits,
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub url: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, gives in-flight requests a moment, then ends.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }

    /// Serves until the task ends (it never does on its own).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds, builds the local state and starts serving in the background.
pub async fn start(options: ServerOptions) -> anyhow::Result<RunningServer> {
    let listener = crate::connections::listen(options.addr)
        .with_context(|| format!("binding {}", options.addr))?;
    let addr = listener.local_addr()?;
    let mut config = options.config;
    let url = config
        .api_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    config.api_url = Some(url.clone());
    let password = config
        .admin_password
        .clone()
        .context("an admin password must be set before the server starts")?;
    // Local mode keeps its jobs in the SQLite store (durable, in the same transactions as
    // the records); with another store (DynamoDB) jobs run in process.
    let (store, sqlite): (Arc<dyn Store>, Option<SqliteStore>) = match options.store {
        Some(store) => (store, None),
        None => {
            let sqlite = SqliteStore::open(&config.data_dir)?;
            (Arc::new(sqlite.clone()), Some(sqlite))
        }
    };
    let clock: Arc<dyn shared::ports::Clock> =
        options.clock.unwrap_or_else(|| Arc::new(SystemClock));
    // Every mutating command (agent processes, cloud instances) goes into the command log.
    let logger = CommandLogger::new(store.clone(), clock.clone());
    let compute = LocalCompute::new(LocalComputeConfig {
        program: options.agent_program,
        extra_args: options.agent_args,
        log_dir: config.data_dir.join("agents"),
        work_root: config.data_dir.join("work"),
        kill_on_drop: options.kill_agents_on_drop,
        allocator_url: url.clone(),
    });
    let (queue, worker): (Arc<dyn JobQueue>, Worker) = match &sqlite {
        Some(sqlite) => {
            let (queue, worker) = DurableQueue::new(sqlite.clone());
            (Arc::new(queue), Worker::Durable(worker))
        }
        None => {
            let (queue, worker) = InProcessQueue::new();
            (Arc::new(queue), Worker::InProcess(worker))
        }
    };
    let clouds = match options.clouds {
        Some(clouds) => clouds,
        None => {
            // Owned by the data directory: a restart finds the instances it left running.
            let owner =
                std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
            let mut clouds: Vec<Arc<dyn GpuCloud>> =
                vec![Arc::new(LocalCloud::new(owner.display().to_string()))];
            if let Some(key) = &config.vast_api_key {
                clouds.push(Arc::new(VastCloud::new(
                    &config.vast_api_url,
                    key,
                    &config.deployment,
                    config.offer_cache,
                )?));
            }
            clouds
        }
    };
    let clouds: Vec<Arc<dyn GpuCloud>> = clouds
        .into_iter()
        .map(|c| Arc::new(AuditedCloud::new(c, logger.clone())) as Arc<dyn GpuCloud>)
        .collect();
    let work = LocalWorkStore::new(config.data_dir.join("collected"), &url, clock.clone());
    let state = AppState {
        work: Arc::new(work.clone()),
        network: options.network.unwrap_or_else(|| {
            Arc::new(shared::adapters::NoNetwork(
                "network and firewall operations need AWS (EC2); local mode has no VPC",
            ))
        }),
        clouds: Arc::new(Clouds::new(clouds)),
        store,
        compute: Arc::new(AuditedCompute::new(
            Arc::new(compute),
            logger,
            Dialect::Local,
        )),
        queue,
        notifier: Arc::new(InProcessNotifier::default()),
        clock,
        admin: Arc::new(AdminCredentials::new(&config.admin_user, &password)),
        config: Arc::new(config),
    };
    // What a crashed predecessor left: finish its operations, then make records, agent
    // processes and instance processes agree (no launch is in flight yet: no grace).
    if let Some(sqlite) = &sqlite {
        let interrupted = sqlite.running_operations().await?;
        shared::usecases::admin::finish_interrupted((&state).into(), interrupted).await?;
    }
    match shared::usecases::reconcile::reconcile_with_grace(&state, 0).await {
        Ok(report) => tracing::debug!(?report, "reconciled at start"),
        Err(e) => tracing::warn!(error = ?e, "reconcile at start failed"),
    }
    // Launch jobs run in this process through the provisioning use case, as SQS + the
    // provisioning Lambda run them on AWS.
    match worker {
        Worker::Durable(w) => drop(w.start(state.clone())),
        Worker::InProcess(w) => drop(w.start(state.clone())),
    }
    // VMs that stop calling leave the pool and say why, as the scheduled reconcile does on
    // AWS (claims already skip them by themselves).
    let liveness_state = state.clone();
    let liveness_every =
        std::time::Duration::from_secs(state.config.liveness().heartbeat_interval_secs());
    let liveness_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(liveness_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = shared::usecases::liveness::sweep(
                &*liveness_state.store,
                &*liveness_state.clock,
                &liveness_state.config,
            )
            .await
            {
                tracing::warn!(error = ?e, "liveness sweep failed");
            }
        }
    });
    let sweeper = state.clone();
    let sweep_every = options.sweep_every;
    let sweep_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match shared::usecases::requests::sweep((&sweeper).into()).await {
                Ok(report) if report != Default::default() => {
                    tracing::info!(?report, "provisioning requests swept")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "sweeping provisioning requests failed"),
            }
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut limits = options.limits;
    // Raised (and the cap fixed) before the first connection.
    limits.max_connections = Some(
        limits
            .max_connections
            .unwrap_or_else(crate::connections::connection_capacity),
    );
    let serving = state.clone();
    let max_upload = state.config.collect.caps.per_file;
    let task = tokio::spawn(async move {
        let serve = move |peer: SocketAddr, req: http::Request<hyper::body::Incoming>| {
            let (state, work) = (serving.clone(), work.clone());
            async move {
                match crate::object_routes::serve(&work, max_upload, req).await {
                    Ok(resp) => resp,
                    Err(req) => dispatch(state, peer, limits.body_timeout, req).await,
                }
            }
        };
        crate::connections::run(listener, limits, serve, async {
            let _ = rx.await;
        })
        .await;
        sweep_task.abort();
        liveness_task.abort();
    });
    Ok(RunningServer {
        addr,
        url,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Routes one request through the table and runs its handler.
async fn dispatch(
    state: AppState,
    peer: SocketAddr,
    body_timeout: std::time::Duration,
    req: http::Request<hyper::body::Incoming>,
) -> axum::response::Response {
    let (mut parts, body) = req.into_parts();
    let activity = parts.extensions.remove::<crate::connections::Activity>();
    if let Some(preflight) = cors_preflight(&state, &parts.method, &parts.headers) {
        return preflight.map(|body| AxumBody::from(body.to_vec()));
    }
    let request_headers = parts.headers.clone();
    let (route, params) = match routes::find(&parts.method, parts.uri.path()) {
        Match::Found(route, params) => (route, params),
        Match::MethodNotAllowed(allowed) => {
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            );
            let allow: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
            if let Ok(value) = http::HeaderValue::from_str(&allow.join(", ")) {
                resp.headers_mut().insert(http::header::ALLOW, value);
            }
            return resp;
        }
        Match::NotFound => return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    let body = AxumBody::new(body);
    let bytes = match tokio::time::timeout(body_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
    {
        Ok(Ok(bytes)) => bytes,
        // Refusals of a route are answered in its envelope, as its handler's would be.
        Ok(Err(_)) => return to_axum(ApiError::PayloadTooLarge.render(route.envelope)),
        Err(_) => {
            return to_axum(ApiError::SlowBody(body_timeout.as_secs()).render(route.envelope))
        }
    };
    let query: HashMap<String, Vec<String>> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .fold(HashMap::new(), |mut map, (k, v)| {
            map.entry(k).or_default().push(v);
            map
        });
    let path_params: HashMap<String, String> = params.into_iter().collect();
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Binary(bytes.to_vec())
    };
    // As API Gateway does: the TCP peer is the source IP (rate limits count per IP).
    let mut context =
        lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
    context.http.source_ip = Some(peer.ip().to_string());
    let request = http::Request::from_parts(parts, body)
        .with_path_parameters(path_params)
        .with_query_string_parameters(query)
        .with_request_context(lambda_http::request::RequestContext::ApiGatewayV2(context));
    // A spawned task finishes even if the client goes away mid-request (a launch must not
    // stop half way because a browser tab closed), and a panic becomes a 500, not a crash.
    // From here the connection is serving (not to be closed to make room for others).
    let _busy = activity.as_ref().map(crate::connections::Activity::busy);
    match tokio::spawn(functions::router::serve_route(
        route,
        state.clone(),
        request,
    ))
    .await
    {
        Ok(mut resp) => {
            add_cors_headers(&state, &request_headers, &mut resp);
            to_axum(resp)
        }
        Err(e) => to_axum(
            ApiError::Core(shared::Error::Internal(anyhow::anyhow!(
                "handler panicked: {e}"
            )))
            .render(route.envelope),
        ),
    }
}

fn to_axum(resp: functions::Response) -> axum::response::Response {
    resp.map(|body| AxumBody::from(body.to_vec()))
}

fn error(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    let body = ErrorBody {
        error: message.into(),
        code: code.into(),
        error_id: None,
    };
    to_axum(typed_json_response(status, &body))
}
