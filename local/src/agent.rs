//! The VM agent: what runs on every VM (an agent process in local mode, a systemd service
//! started by user_data in the cloud).
//!
//! It reports `initializing`, checks the GPU, reports `running`, then long-polls
//! `/vm_startup` until the VM is assigned, and starts Chrome Remote Desktop with the PIN —
//! but only when started with `--execute-crd`; otherwise it logs what it would run (code
//! and PIN masked), so a laptop never executes what a stranger typed. It keeps polling for
//! new commands the participant sends, watches for a process by name and reports in-use
//! changes, and heartbeats `running` at the interval the allocator asks for. Calls are retried with backoff while
//! the allocator is unreachable. Its own log lines are shipped to the allocator in batches
//! (every 2 s or 50 lines), and its startup timing as the `agent` stage.

mod collector;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use rand::Rng;
use serde_json::{json, Value};
use shared::domain::crd::{CrdCommand, CRD_REDIRECT_URL, CRD_START_HOST};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuMode {
    /// Ask `nvidia-smi`: no GPU or no driver → n/a, an error → unhealthy.
    Detect,
    /// Report healthy without checking (local demo).
    Healthy,
    /// Report unhealthy (to try the allocator's handling).
    Unhealthy,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The allocator's base URL, e.g. https://abc.execute-api.us-east-1.amazonaws.com
    #[arg(long, env = "GPUFLEET_ALLOCATOR_URL")]
    pub allocator: String,
    /// This VM's hostname as the allocator knows it.
    #[arg(long, env = "GPUFLEET_HOSTNAME")]
    pub hostname: String,
    /// The VM's bearer token (prefer the environment variable: argv is visible to all users).
    #[arg(long, env = "GPUFLEET_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, value_enum, default_value = "detect")]
    pub gpu: GpuMode,
    /// Really start Chrome Remote Desktop once assigned (only on a real VM).
    #[arg(long)]
    pub execute_crd: bool,
    /// The unprivileged user the remote desktop runs as (start-host refuses root); its home
    /// is the participant's working directory.
    #[arg(long, env = "GPUFLEET_DESKTOP_USER", default_value = "participant")]
    pub desktop_user: String,
    /// Chrome Remote Desktop's start-host program.
    #[arg(long, default_value = CRD_START_HOST)]
    pub start_host: PathBuf,
    /// Where the agent remembers (with `--execute-crd`) which command it last ran and how
    /// that went, so a restart neither runs a used code again nor forgets an error.
    #[arg(long, env = "GPUFLEET_STATE_DIR", default_value = "/var/lib/gpufleet")]
    pub state_dir: PathBuf,
    /// Write the received assignment (PIN, command) to this file, mode 0600.
    #[arg(long)]
    pub assignment_file: Option<PathBuf>,
    /// Report in-use while a process with this name runs (e.g. the workshop's research
    /// program; `GPUFLEET_IN_USE_PROCESS` on AWS).
    #[arg(long, env = "GPUFLEET_WATCH_PROCESS")]
    pub watch_process: Option<String>,
    /// Seconds between in-use checks (heartbeats follow the allocator's interval).
    #[arg(long, default_value_t = 5)]
    pub watch_interval_secs: u64,
    /// Local mode only: stay `initializing` this long, standing in for a cloud VM's boot.
    #[arg(long, default_value_t = 0)]
    pub boot_delay_secs: u64,
    /// The participant's working directory, whose files matching the allocator's collect
    /// patterns are synced (default: the desktop user's home, `/home/<desktop user>`).
    #[arg(long, env = "GPUFLEET_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Exit if the allocator stays unreachable this long (default: retry forever).
    #[arg(long)]
    pub give_up_after_secs: Option<u64>,
}

/// How a call to the allocator ended, once retries are over.
#[derive(Debug)]
enum CallError {
    /// The allocator answered 4xx: retrying will not help.
    Rejected(u16, String),
    /// Unreachable (or 5xx) for longer than `--give-up-after-secs`.
    GaveUp(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Rejected(status, body) => write!(f, "allocator answered {status}: {body}"),
            CallError::GaveUp(why) => write!(f, "gave up reaching the allocator: {why}"),
        }
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    give_up_after: Option<Duration>,
}

impl Client {
    /// POSTs JSON, retrying connection failures, timeouts, 429 and 5xx with exponential
    /// backoff and jitter (0.5 s doubling to 30 s).
    async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let result = self
                .http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await;
            let retry_why = match result {
                Ok(resp) if resp.status().is_success() => {
                    return resp
                        .json()
                        .await
                        .map_err(|e| CallError::Rejected(200, format!("unreadable body: {e}")));
                }
                Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    return Err(CallError::Rejected(status, text));
                }
                Ok(resp) => format!("HTTP {}", resp.status()),
                Err(e) => format!("{e}"),
            };
            if let Some(limit) = self.give_up_after {
                if started.elapsed() >= limit {
                    return Err(CallError::GaveUp(retry_why));
                }
            }
            let jitter = rand::rng().random_range(0.8..1.2);
            let wait = backoff.mul_f64(jitter);
            eprintln!("agent: {path} failed ({retry_why}); retrying in {wait:.1?}");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

impl Client {
    /// One attempt, no retry (the log shipper retries on its own schedule).
    async fn post_once(&self, path: &str, body: &Value) -> Result<(), String> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
}

/// Most lines kept while the allocator cannot take them; beyond, the oldest are dropped.
const MAX_BUFFERED_LINES: usize = 10_000;
const SHIP_EVERY: Duration = Duration::from_secs(2);
const SHIP_BATCH: usize = 50;
/// How long a stopping agent gives its final sync (systemd's stop timeout is longer).
const FINAL_SYNC_AT_STOP: Duration = Duration::from_secs(60);

/// Prints a line and queues it for shipping to the allocator.
#[derive(Clone)]
struct Log {
    prefix: String,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Log {
    fn say(&self, message: impl std::fmt::Display) {
        let line = format!("{} {message}", self.prefix);
        println!("{line}");
        let _ = self.lines.send(line);
    }
}

/// Ships queued lines in batches; keeps them (bounded) and retries while the allocator is
/// away. Ends after a final flush once every `Log` is dropped.
async fn ship_logs(
    client: Client,
    hostname: String,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let path = format!("/api/vm-logs/{hostname}");
    let mut buffer: VecDeque<String> = VecDeque::new();
    let mut dropped = 0usize;
    let mut open = true;
    while open || !buffer.is_empty() {
        let deadline = tokio::time::Instant::now() + SHIP_EVERY;
        while open && buffer.len() < SHIP_BATCH {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    if buffer.len() == MAX_BUFFERED_LINES {
                        buffer.pop_front();
                        dropped += 1;
                    }
                    buffer.push_back(line);
                }
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        if buffer.is_empty() {
            continue;
        }
        let mut batch: Vec<String> = buffer.iter().take(SHIP_BATCH * 4).cloned().collect();
        if dropped > 0 {
            batch.insert(
                0,
                format!(
                    "agent: {dropped} log lines were dropped while the allocator was unreachable"
                ),
            );
        }
        match client.post_once(&path, &json!({"messages": batch})).await {
            Ok(()) => {
                let shipped = batch.len() - usize::from(dropped > 0);
                buffer.drain(..shipped);
                dropped = 0;
            }
            Err(e) => {
                eprintln!("agent: shipping logs failed ({e}); will retry");
                if !open {
                    return; // exiting: one last try was made
                }
                tokio::time::sleep(SHIP_EVERY).await;
            }
        }
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Runs the agent until the VM is removed from the allocator (exit 0) or a fatal error.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let started_at = unix_seconds();
    let client = Client {
        http: reqwest::Client::builder()
            // Longer than the allocator's 25 s long-poll.
            .timeout(Duration::from_secs(40))
            // Below the local server's 15 s idle timeout: never reuse a connection it is
            // closing.
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?,
        base: args.allocator.trim_end_matches('/').to_string(),
        token: args.token.clone(),
        give_up_after: args.give_up_after_secs.map(Duration::from_secs),
    };
    let host = args.hostname.as_str();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let shipper = tokio::spawn(ship_logs(client.clone(), host.to_string(), rx));
    let log = Log {
        prefix: format!("agent[{host}]:"),
        lines: tx,
    };
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/home").join(&args.desktop_user));
    let (sync_tx, sync_rx) = tokio::sync::mpsc::channel(4);
    let collector = tokio::spawn(collector::run(
        client.clone(),
        host.to_string(),
        work_dir,
        sync_rx,
        log.clone(),
    ));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let outcome = tokio::select! {
        r = run_inner(&client, &args, &log, started_at, &sync_tx) => r,
        _ = terminate.recv() => {
            // The machine is shutting down (a destroy ends it): one last sync first.
            log.say("stopping: a final sync of the participant's work first");
            let (done, finished) = tokio::sync::oneshot::channel();
            if sync_tx.send(collector::SyncNow { answering: None, done: Some(done) }).await.is_ok() {
                let _ = tokio::time::timeout(FINAL_SYNC_AT_STOP, finished).await;
            }
            log.say("stopped");
            Ok(())
        }
    };
    collector.abort();
    let result = match outcome {
        Err(e) => match e.downcast_ref::<CallError>() {
            // Unknown VM and wrong token answer alike: either way this VM is gone.
            Some(CallError::Rejected(401 | 404, _)) => {
                println!("agent[{host}]: the allocator no longer knows this VM; exiting");
                drop(log);
                shipper.abort(); // nowhere to ship to any more
                return Ok(());
            }
            _ => {
                log.say(format!("error: {e:#}"));
                Err(e)
            }
        },
        ok => ok,
    };
    drop(log);
    let _ = tokio::time::timeout(Duration::from_secs(5), shipper).await;
    result
}

async fn run_inner(
    client: &Client,
    args: &AgentArgs,
    log: &Log,
    started_at: f64,
    sync: &tokio::sync::mpsc::Sender<collector::SyncNow>,
) -> anyhow::Result<()> {
    let host = args.hostname.as_str();
    log.say(format!(
        "starting (gpufleet agent {})",
        env!("CARGO_PKG_VERSION")
    ));
    report_status(client, host, "initializing").await?;
    if args.boot_delay_secs > 0 {
        log.say(format!(
            "simulating a {} s boot (local mode stands in for cloud-init)",
            args.boot_delay_secs
        ));
        tokio::time::sleep(Duration::from_secs(args.boot_delay_secs)).await;
    }
    log.say("reported initializing; checking the GPU");
    let gpu = check_gpu(args.gpu).await;
    log.say(format!("GPU health {gpu}"));
    client
        .post(
            "/api/gpu_health",
            &json!({"hostname": host, "gpu_status": gpu}),
        )
        .await?;
    let interval = report_status(client, host, "running").await?;
    let ready_at = unix_seconds();
    client
        .post(
            &format!("/api/vm-metrics/{host}"),
            &json!({
                "agent_start": started_at,
                "agent_end": ready_at,
                "agent_duration_seconds": ready_at - started_at,
            }),
        )
        .await?;
    log.say(format!(
        "running after {:.2} s; waiting for an assignment",
        ready_at - started_at
    ));

    // Heartbeats run beside the long-poll (which may wait 25 s at a time) at the interval
    // the allocator asks for, so a live VM always fits its liveness window.
    let status = Status::default();
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        host.to_string(),
        interval,
        status.clone(),
        log.clone(),
    ));
    let watcher = args.watch_process.clone().map(|name| {
        tokio::spawn(watch_in_use(
            client.clone(),
            host.to_string(),
            name,
            args.watch_interval_secs,
            log.clone(),
        ))
    });
    let result = tokio::select! {
        r = follow_assignments(client, args, &status, log, sync) => r,
        gone = heartbeat => match gone {
            Ok(why) => Err(CallError::Rejected(401, why).into()),
            Err(e) => Err(anyhow::anyhow!("the heartbeat task failed: {e}")),
        },
    };
    if let Some(w) = watcher {
        w.abort();
    }
    result
}

/// Long-polls `/vm_startup` for the assignment, then for every newer CRD command the
/// participant sends (`after`), and starts Chrome Remote Desktop with each. Runs until the
/// allocator forgets the VM.
async fn follow_assignments(
    client: &Client,
    args: &AgentArgs,
    status: &Status,
    log: &Log,
    sync: &tokio::sync::mpsc::Sender<collector::SyncNow>,
) -> anyhow::Result<()> {
    let host = args.hostname.as_str();
    let mut collected: Option<i64> = None;
    // A restarted agent (reboot, crash, systemd) must not run a used code again, which would
    // fail and take a working desktop down; nor report healthy a VM whose start failed.
    let applied = args
        .execute_crd
        .then(|| Applied::load(&args.state_dir))
        .flatten();
    let mut after: Option<i64> = applied.as_ref().map(|a| a.command_at);
    if let Some(Applied {
        error: Some(reason),
        ..
    }) = &applied
    {
        report_error(client, host, status, reason).await;
    }
    loop {
        let mut body = json!({"hostname": host});
        if let Some(t) = after {
            body["after"] = json!(t);
        }
        if let Some(t) = collected {
            body["collected"] = json!(t);
        }
        let answer = client.post("/vm_startup", &body).await?;
        match answer["status"].as_str() {
            Some("success") => {
                let pin = answer["pin"].as_str().unwrap_or_default();
                let command = answer["command"].as_str().unwrap_or_default();
                let first = after.is_none();
                after = Some(answer["command_at"].as_i64().unwrap_or(0));
                // A failed start (an expired code, a missing desktop user) makes the VM
                // `error` with the reason, shown to the participant and the admin; a new
                // command arrives through this same loop and may bring it back.
                let outcome = start_remote_desktop(args, log, pin, command, first).await;
                if args.execute_crd {
                    let applied = Applied {
                        command_at: after.unwrap_or(0),
                        error: outcome.as_ref().err().map(|e| format!("{e:#}")),
                    };
                    if let Err(e) = applied.save(&args.state_dir) {
                        log.say(format!("could not remember the command: {e:#}"));
                    }
                }
                match outcome {
                    Ok(()) if status.get() == "error" => {
                        // Back through the state machine (error → initializing → running);
                        // the heartbeat sends whatever was last set, so set it first.
                        for next in ["initializing", "running"] {
                            status.set(next);
                            if let Err(e) = report_status(client, host, next).await {
                                log.say(format!("reporting {next} failed: {e:#}"));
                            }
                        }
                        log.say("the remote desktop is up again; reported running");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        let reason = format!("{e:#}");
                        log.say(format!("error: {reason}"));
                        report_error(client, host, status, &reason).await;
                    }
                }
            }
            Some("leased") => {
                // A machine of a GPU provisioning request: its user connects directly (SSH).
                log.say(format!(
                    "leased to provisioning request {}; no remote desktop",
                    answer["request_id"].as_str().unwrap_or("?")
                ));
                std::future::pending::<()>().await;
            }
            Some("collect") => {
                // A destroy is coming: sync now, and say which request this answers.
                let requested_at = answer["requested_at"].as_i64();
                collected = requested_at;
                log.say("the allocator asks for a final sync of the participant's work");
                let _ = sync
                    .send(collector::SyncNow {
                        answering: requested_at,
                        done: None,
                    })
                    .await;
            }
            Some("waiting") => {}
            other => bail!("unexpected /vm_startup answer {other:?}"),
        }
    }
}

/// Reports the VM `error` with `reason` (shown to the admin and the participant); the
/// heartbeat repeats `error` from then on. A refused report is logged, not fatal.
async fn report_error(client: &Client, host: &str, status: &Status, reason: &str) {
    status.set("error");
    if let Err(e) = client
        .post(
            "/api/vm-status",
            &json!({"hostname": host, "status": "error", "reason": reason}),
        )
        .await
    {
        eprintln!("agent: reporting the error failed: {e}");
    }
}

/// The last command this VM's agent ran (its `command_at`) and whether it failed, kept in
/// the state directory (root-only) across restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Applied {
    command_at: i64,
    error: Option<String>,
}

impl Applied {
    const FILE: &'static str = "applied-command.json";

    fn load(dir: &std::path::Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(Self::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!("{}.tmp", Self::FILE));
        write_private(&tmp, &serde_json::to_string(self)?)?;
        std::fs::rename(&tmp, dir.join(Self::FILE)).context("saving the applied command")?;
        Ok(())
    }
}

/// What the agent last reported about its VM (`running`, or `error` after a failed start),
/// which its heartbeats repeat.
#[derive(Clone)]
struct Status(std::sync::Arc<std::sync::Mutex<&'static str>>);

impl Default for Status {
    fn default() -> Self {
        Status(std::sync::Arc::new(std::sync::Mutex::new("running")))
    }
}

impl Status {
    fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set(&self, status: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// Reports the agent's status every `interval` (as the allocator's answers ask). Returns
/// only when the allocator no longer knows this VM or its token (401/404), with why.
async fn heartbeat(
    client: Client,
    host: String,
    mut interval: Duration,
    status: Status,
    log: Log,
) -> String {
    loop {
        tokio::time::sleep(interval).await;
        match report_status(&client, &host, status.get()).await {
            Ok(next) => interval = next,
            Err(e) => match e.downcast_ref::<CallError>() {
                Some(CallError::Rejected(401 | 404, why)) => return why.clone(),
                // E.g. 409: the allocator marked the VM `error`; keep calling, it decides.
                _ => log.say(format!("heartbeat refused: {e:#}")),
            },
        }
    }
}

/// Reports in-use changes: whether a process with this name runs.
async fn watch_in_use(client: Client, host: String, name: String, every_secs: u64, log: Log) {
    let mut in_use = false;
    loop {
        tokio::time::sleep(Duration::from_secs(every_secs.max(1))).await;
        let now_in_use = process_running(&name);
        if now_in_use == in_use {
            continue;
        }
        match client
            .post(
                "/api/update_inuse_status",
                &json!({"hostname": host, "status": now_in_use}),
            )
            .await
        {
            Ok(_) => {
                log.say(format!("in use = {now_in_use}"));
                in_use = now_in_use;
            }
            Err(e) => log.say(format!("could not report in-use: {e}")),
        }
    }
}

/// Reports a status; returns the heartbeat interval the allocator asks for.
async fn report_status(client: &Client, host: &str, status: &str) -> anyhow::Result<Duration> {
    let answer = client
        .post(
            "/api/vm-status",
            &json!({"hostname": host, "status": status}),
        )
        .await?;
    Ok(heartbeat_interval(&answer))
}

/// The interval the allocator asked for (`heartbeat_interval_seconds`); 30 s if it did not.
fn heartbeat_interval(answer: &Value) -> Duration {
    Duration::from_secs(
        answer["heartbeat_interval_seconds"]
            .as_u64()
            .unwrap_or(30)
            .clamp(1, 3600),
    )
}

impl std::error::Error for CallError {}

/// Builds Chrome Remote Desktop's argv from the validated code alone (no shell), then runs
/// it only with `--execute-crd`. The code and PIN never reach the log (it is shipped to the
/// admin's log viewer): both are masked.
async fn start_remote_desktop(
    args: &AgentArgs,
    log: &Log,
    pin: &str,
    command: &str,
    first: bool,
) -> anyhow::Result<()> {
    let host = args.hostname.as_str();
    // The allocator validated the command; check again here, since this is where it runs.
    let crd = CrdCommand::parse(command).context("the assigned CRD command is invalid")?;
    let argv = [
        args.start_host.display().to_string(),
        format!("--code={}", crd.code()),
        format!("--redirect-url={CRD_REDIRECT_URL}"),
        format!("--name={host}"),
        format!("--pin={pin}"),
    ];
    if let Some(path) = &args.assignment_file {
        write_private(
            path,
            &json!({"hostname": host, "pin": pin, "command": command}).to_string(),
        )?;
    }
    let shown: Vec<String> = argv
        .iter()
        .map(|a| {
            if a.starts_with("--pin=") {
                "--pin=******".to_string()
            } else if a.starts_with("--code=") {
                "--code=****".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let what = if first { "assigned" } else { "new command" };
    if !args.execute_crd {
        log.say(format!(
            "{what}; dry run (no --execute-crd), would run: {}",
            shown.join(" ")
        ));
        return Ok(());
    }
    log.say(format!(
        "{what}; starting Chrome Remote Desktop: {}",
        shown.join(" ")
    ));
    let user = crate::desktop::resolve(&args.desktop_user)?;
    crate::desktop::start_host_as(&user, &argv, &[crd.code(), pin]).await?;
    log.say(format!(
        "Chrome Remote Desktop host registered and running as {}",
        user.name
    ));
    Ok(())
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// GPU health from `nvidia-smi`: no binary → n/a, failure or no GPU listed → unhealthy.
async fn check_gpu(mode: GpuMode) -> &'static str {
    match mode {
        GpuMode::Healthy => return "healthy",
        GpuMode::Unhealthy => return "unhealthy",
        GpuMode::Detect => {}
    }
    let run = tokio::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,temperature.gpu", "--format=csv,noheader"])
        .output();
    match tokio::time::timeout(Duration::from_secs(15), run).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => "n/a",
        Ok(Ok(out)) if out.status.success() && !out.stdout.trim_ascii().is_empty() => "healthy",
        _ => "unhealthy",
    }
}

/// Whether a process with this exact name (as in /proc/<pid>/comm) is running.
fn process_running(name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
    })
}
