//! The command-line client over HTTP, against any deployment (the local server or API
//! Gateway): `fleet` and `keys` for admins, `gpus`, `offers` and `instances` for API-key
//! users. Credentials come from the environment (`GPUFLEET_ADMIN_USER`,
//! `GPUFLEET_ADMIN_PASSWORD`, `GPUFLEET_API_KEY`, `GPUFLEET_USER`) or from a credentials file
//! that only its owner may read, never from argv. Exit codes: 0 done, 1 failed, 2 usage, 3
//! refused credentials.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// Exit code of a refused login (scripts tell it from a failure).
pub const EXIT_AUTH: u8 = 3;

/// The server refused the credentials (401).
#[derive(Debug)]
pub struct AuthRefused(pub String);

impl std::fmt::Display for AuthRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for AuthRefused {}

/// Any other answer that is not a success, with its status (so a caller can wait on a 503).
#[derive(Debug)]
pub struct HttpError {
    pub status: u16,
    pub text: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.text)
    }
}

impl std::error::Error for HttpError {}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The deployment's URL (API Gateway's, or the local server's).
    #[arg(long, env = "GPUFLEET_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// A file with `GPUFLEET_ADMIN_USER=…` and `GPUFLEET_ADMIN_PASSWORD=…` lines, readable
    /// by its owner only [default: ~/.config/gpufleet/credentials, when it exists].
    #[arg(long, env = "GPUFLEET_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Every VM and its state (a table; --json for the raw answer).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Launch N VMs; with --wait, follow them until each is running or failed.
    Launch {
        count: u32,
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
    /// Collect participants' work one last time, then end every VM (asks unless --yes).
    Destroy {
        #[arg(long)]
        yes: bool,
        /// Also VMs that are in use right now.
        #[arg(long)]
        in_use: bool,
    },
    /// Download everything collected from the participants as one zip.
    Collect {
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A VM's log; --follow keeps printing new lines.
    Logs {
        hostname: String,
        #[arg(long)]
        follow: bool,
    },
}

/// A new API key, as both `keys create` (over HTTP) and `api-key` (on a data directory)
/// take it.
#[derive(Debug, clap::Args)]
pub struct NewKeyArgs {
    /// The user the key acts as.
    #[arg(long)]
    pub user: String,
    /// The user's total GPUs across active requests and live instances [default:
    /// GPUFLEET_GPU_QUOTA, 8].
    #[arg(long)]
    pub gpu_quota: Option<u32>,
    #[arg(long, default_value = "")]
    pub label: String,
}

/// API keys of the requests, offers and instances API (admin).
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a user; the key is printed once.
    Create(NewKeyArgs),
    List {
        #[arg(long)]
        json: bool,
    },
    Revoke {
        key_id: String,
    },
}

/// GPU provisioning requests (API key).
#[derive(Debug, clap::Subcommand)]
pub enum GpusCommand {
    /// Ask for GPUs for some hours; with --wait, print the access once ready.
    Request {
        #[arg(long)]
        gpus: u32,
        #[arg(long)]
        hours: u32,
        /// The key's user (`GPUFLEET_USER`).
        #[arg(long, env = "GPUFLEET_USER")]
        user: String,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// End a lease now.
    Release { request_id: String },
}

/// GPU offers across providers (API key).
#[derive(Debug, clap::Subcommand)]
pub enum OffersCommand {
    /// Offers, cheapest first.
    Search {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        gpu_model: Option<String>,
        #[arg(long)]
        min_gpus: Option<u32>,
        #[arg(long)]
        max_price: Option<f64>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

/// Instances run from offers (API key).
#[derive(Debug, clap::Subcommand)]
pub enum InstancesCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Run an instance from an offer.
    Create {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        offer_id: String,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// A file with the public SSH key to install.
        #[arg(long)]
        ssh_key_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
    },
    Delete {
        id: String,
    },
}

enum Auth {
    Basic(String, String),
    Key(String),
}

struct Api {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

/// `name` from the environment, else from the credentials file.
fn credential(target: &Target, name: &str) -> anyhow::Result<Option<String>> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(v));
    }
    let default_file = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".config/gpufleet/credentials"))
        .filter(|p| p.exists());
    if let Some(file) = target.credentials_file.clone().or(default_file) {
        use std::os::unix::fs::PermissionsExt as _;
        let meta =
            std::fs::metadata(&file).with_context(|| format!("reading {}", file.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} may be read by others; run: chmod 600 {}",
                file.display(),
                file.display()
            );
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines() {
            if let Some((key, value)) = line.trim().split_once('=') {
                if key.trim() == name {
                    return Ok(Some(value.trim().to_string()));
                }
            }
        }
    }
    Ok(None)
}

fn read_credentials(target: &Target) -> anyhow::Result<(String, String)> {
    let password = credential(target, "GPUFLEET_ADMIN_PASSWORD")?.context(
        "no admin password: set GPUFLEET_ADMIN_PASSWORD, or put it in ~/.config/gpufleet/credentials (mode 600)",
    )?;
    let user = credential(target, "GPUFLEET_ADMIN_USER")?.unwrap_or_else(|| "admin".into());
    Ok((user, password))
}

impl Api {
    fn new(target: &Target) -> anyhow::Result<Self> {
        let (user, password) = read_credentials(target)?;
        Self::with(target, Auth::Basic(user, password))
    }

    /// A user of the requests, offers and instances API.
    fn user(target: &Target) -> anyhow::Result<Self> {
        let key = credential(target, "GPUFLEET_API_KEY")?.context(
            "no API key: set GPUFLEET_API_KEY (an admin creates one with `gpufleet keys create`), or put it in ~/.config/gpufleet/credentials (mode 600)",
        )?;
        Self::with(target, Auth::Key(key))
    }

    fn with(target: &Target, auth: Auth) -> anyhow::Result<Self> {
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: target.url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let req = match &self.auth {
            Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
            Auth::Key(key) => req.bearer_auth(key),
        };
        let resp = req
            .header("accept", "application/json")
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach {} (is --url right?)", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body["error"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("")
            .to_string();
        match status.as_u16() {
            200..=299 => Ok(body),
            401 => Err(AuthRefused(match self.auth {
                Auth::Basic(..) => format!("{what}: the server refused the admin credentials (check GPUFLEET_ADMIN_USER and GPUFLEET_ADMIN_PASSWORD)"),
                Auth::Key(_) => format!("{what}: the server refused the API key (check GPUFLEET_API_KEY)"),
            })
            .into()),
            code => Err(HttpError {
                status: code,
                text: format!("{what}: HTTP {code}: {message}"),
            }
            .into()),
        }
    }

    async fn get(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}{path}", self.base)), what)
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], what: &str) -> anyhow::Result<Value> {
        self.call(
            self.http.post(format!("{}{path}", self.base)).form(form),
            what,
        )
        .await
    }

    async fn post_json(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        self.call(
            self.http.post(format!("{}{path}", self.base)).json(body),
            what,
        )
        .await
    }

    async fn delete(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        self.call(self.http.delete(format!("{}{path}", self.base)), what)
            .await
    }
}

pub async fn run(target: Target, command: FleetCommand) -> anyhow::Result<()> {
    let api = Api::new(&target)?;
    match command {
        FleetCommand::Status { json } => status(&api, json).await,
        FleetCommand::Launch {
            count,
            wait,
            timeout_secs,
        } => launch(&api, count, wait, Duration::from_secs(timeout_secs)).await,
        FleetCommand::Destroy { yes, in_use } => destroy(&api, yes, in_use).await,
        FleetCommand::Collect { out } => collect(&api, &out).await,
        FleetCommand::Logs { hostname, follow } => logs(&api, &hostname, follow).await,
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn rows_of(list: &Value, columns: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|item| columns.iter().map(|c| text(&item[*c])).collect())
        .collect()
}

pub async fn run_keys(target: Target, command: KeysCommand) -> anyhow::Result<()> {
    let api = Api::new(&target)?;
    match command {
        KeysCommand::Create(NewKeyArgs {
            user,
            gpu_quota,
            label,
        }) => {
            let mut body = serde_json::json!({"user_id": user, "label": label});
            if let Some(q) = gpu_quota {
                body["gpu_quota"] = q.into();
            }
            let key = api
                .post_json("/api/v1/api-keys", &body, "keys create")
                .await?;
            println!("key_id: {}", text(&key["key_id"]));
            println!("key:    {}", text(&key["key"]));
            eprintln!("the key is shown once: keep it (GPUFLEET_API_KEY)");
            Ok(())
        }
        KeysCommand::List { json } => {
            let keys = api.get("/api/v1/api-keys", "keys list").await?;
            if json {
                return print_json(&keys);
            }
            let columns = ["key_id", "user_id", "label", "gpu_quota", "active"];
            println!(
                "{}",
                table(
                    &["KEY ID", "USER", "LABEL", "GPU QUOTA", "ACTIVE"],
                    &rows_of(&keys, &columns)
                )
            );
            Ok(())
        }
        KeysCommand::Revoke { key_id } => {
            api.delete(&format!("/api/v1/api-keys/{key_id}"), "keys revoke")
                .await?;
            println!("revoked {key_id}");
            Ok(())
        }
    }
}

const FINAL_REQUEST_STATES: [&str; 4] = ["completed", "failed", "expired", "released"];

pub async fn run_gpus(target: Target, command: GpusCommand) -> anyhow::Result<()> {
    let api = Api::user(&target)?;
    match command {
        GpusCommand::Request {
            gpus,
            hours,
            user,
            wait,
            timeout_secs,
            json,
        } => {
            let body =
                serde_json::json!({"user_id": user, "gpu_count": gpus, "duration_hours": hours});
            let created = api
                .post_json("/api/v1/requests", &body, "gpus request")
                .await?;
            let id = text(&created["request_id"]);
            if !wait {
                if json {
                    return print_json(&created);
                }
                println!("request {id}: {}", text(&created["status"]));
                return Ok(());
            }
            let started = Instant::now();
            let request = loop {
                let request = api
                    .get(&format!("/api/v1/requests/{id}"), "gpus request --wait")
                    .await?;
                let status = request["status"].as_str().unwrap_or("");
                if FINAL_REQUEST_STATES.contains(&status) {
                    break request;
                }
                if started.elapsed() > Duration::from_secs(timeout_secs) {
                    bail!("gave up waiting after {timeout_secs} s: request {id} is still {status}");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            };
            if json {
                print_json(&request)?;
            } else {
                println!("request {id}: {}", text(&request["status"]));
                let access = &request["access"];
                for host in access["hosts"].as_array().into_iter().flatten() {
                    println!(
                        "  ssh {}@{}   # {}, {} GPU(s), {}",
                        text(&access["ssh_user"]),
                        text(&host["address"]),
                        text(&host["hostname"]),
                        text(&host["gpus"]),
                        text(&host["instance_type"])
                    );
                }
            }
            if request["status"] != "completed" {
                bail!(
                    "request {id} ended {}: {}",
                    text(&request["status"]),
                    text(&request["error_msg"])
                );
            }
            Ok(())
        }
        GpusCommand::List { json } => {
            let list = api.get("/api/v1/requests", "gpus list").await?;
            if json {
                return print_json(&list);
            }
            let columns = [
                "request_id",
                "status",
                "gpu_count",
                "duration_hours",
                "created_at",
                "expires_at",
            ];
            println!(
                "{}",
                table(
                    &["REQUEST", "STATUS", "GPUS", "HOURS", "CREATED", "EXPIRES"],
                    &rows_of(&list, &columns)
                )
            );
            Ok(())
        }
        GpusCommand::Release { request_id } => {
            let answer = api
                .post_json(
                    &format!("/api/v1/requests/{request_id}/release"),
                    &serde_json::json!({}),
                    "gpus release",
                )
                .await?;
            println!("request {request_id}: {}", text(&answer["status"]));
            Ok(())
        }
    }
}

pub async fn run_offers(target: Target, command: OffersCommand) -> anyhow::Result<()> {
    let api = Api::user(&target)?;
    let OffersCommand::Search {
        provider,
        gpu_model,
        min_gpus,
        max_price,
        region,
        limit,
        json,
    } = command;
    let mut query: Vec<(&str, String)> =
        vec![("sort", "price".into()), ("limit", limit.to_string())];
    for (name, value) in [
        ("provider", provider),
        ("gpu_model", gpu_model),
        ("min_gpu_count", min_gpus.map(|n| n.to_string())),
        ("max_price", max_price.map(|p| p.to_string())),
        ("region", region),
    ] {
        if let Some(v) = value {
            query.push((name, v));
        }
    }
    let answer = api
        .call(
            api.http
                .get(format!("{}/api/v1/offers/search", api.base))
                .query(&query),
            "offers search",
        )
        .await?;
    let offers = &answer["data"];
    if json {
        return print_json(offers);
    }
    let rows: Vec<Vec<String>> = offers
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            vec![
                text(&o["id"]),
                text(&o["provider"]),
                format!("{} × {}", text(&o["gpu_count"]), text(&o["gpu_model"])),
                o["price_per_hour"]
                    .as_f64()
                    .map_or("-".into(), |p| format!("${p:.3}/h")),
                text(&o["region"]),
                text(&o["status"]),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["OFFER", "PROVIDER", "GPUS", "PRICE", "REGION", "STATUS"],
            &rows
        )
    );
    Ok(())
}

pub async fn run_instances(target: Target, command: InstancesCommand) -> anyhow::Result<()> {
    let api = Api::user(&target)?;
    match command {
        InstancesCommand::List { json } => {
            let answer = api.get("/api/v1/instances", "instances list").await?;
            if json {
                return print_json(&answer["data"]);
            }
            let columns = ["id", "provider", "name", "status", "gpu_model", "gpu_count"];
            println!(
                "{}",
                table(
                    &["ID", "PROVIDER", "NAME", "STATUS", "GPU", "GPUS"],
                    &rows_of(&answer["data"], &columns)
                )
            );
            Ok(())
        }
        InstancesCommand::Create {
            provider,
            offer_id,
            image,
            label,
            ssh_key_file,
            json,
        } => {
            let mut body = serde_json::json!({"provider": provider, "offer_id": offer_id});
            if let Some(image) = image {
                body["image"] = image.into();
            }
            if let Some(label) = label {
                body["label"] = label.into();
            }
            if let Some(file) = ssh_key_file {
                let key = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                body["ssh_key"] = key.trim().into();
            }
            let answer = api
                .post_json("/api/v1/instances", &body, "instances create")
                .await?;
            if json {
                return print_json(&answer["data"]);
            }
            println!(
                "instance {}: {}",
                text(&answer["data"]["id"]),
                text(&answer["data"]["status"])
            );
            Ok(())
        }
        InstancesCommand::Start { id } => instance_action(&api, &id, "start").await,
        InstancesCommand::Stop { id } => instance_action(&api, &id, "stop").await,
        InstancesCommand::Delete { id } => {
            let answer = api
                .delete(&format!("/api/v1/instances/{id}"), "instances delete")
                .await?;
            println!("instance {id}: {}", text(&answer["data"]["status"]));
            Ok(())
        }
    }
}

async fn instance_action(api: &Api, id: &str, action: &str) -> anyhow::Result<()> {
    let answer = api
        .post_json(
            &format!("/api/v1/instances/{id}/{action}"),
            &serde_json::json!({}),
            &format!("instances {action}"),
        )
        .await?;
    println!("instance {id}: {}", text(&answer["data"]["status"]));
    Ok(())
}

async fn logs(api: &Api, hostname: &str, follow: bool) -> anyhow::Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let request = api.http.get(format!("{}/api/vm-logs/{hostname}", api.base));
        let request = match &cursor {
            Some(c) => request.query(&[("after", c)]),
            None => request,
        };
        let page = match api.call(request, "fleet logs").await {
            Ok(page) => page,
            // Following a VM that has shipped nothing yet (503), or a moment over a limit
            // (429): keep waiting rather than quit.
            Err(e)
                if follow
                    && e.downcast_ref::<HttpError>()
                        .is_some_and(|h| matches!(h.status, 429 | 503)) =>
            {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        print!("{}", page["logs"].as_str().unwrap_or(""));
        let _ = std::io::stdout().flush();
        cursor = page["cursor"].as_u64().map(|c| c.to_string()).or(cursor);
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, as wide as their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

async fn status(api: &Api, json: bool) -> anyhow::Result<()> {
    let fleet = api.get("/admin/instances", "fleet status").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&fleet)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = fleet["vms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|vm| {
            vec![
                text(&vm["hostname"]),
                text(&vm["status"]),
                text(&vm["gpu_health"]),
                text(&vm["in_use"]),
                text(&vm["assigned_email"]),
                vm["last_seen_seconds_ago"]
                    .as_i64()
                    .map_or("never".into(), |s| format!("{s}s ago")),
                text(&vm["status_reason"]),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "HOSTNAME",
                "STATUS",
                "GPU",
                "IN USE",
                "ASSIGNED TO",
                "LAST SEEN",
                "REASON"
            ],
            &rows
        )
    );
    let c = &fleet["counts"];
    println!(
        "{} VM(s): {} free, {} assigned, {} in use",
        text(&c["total"]),
        text(&c["free"]),
        text(&c["assigned"]),
        text(&c["in_use"])
    );
    Ok(())
}

async fn launch(api: &Api, count: u32, wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let count_text = count.to_string();
    let answer = api
        .post("/api/launch", &[("num_vms", &count_text)], "fleet launch")
        .await?;
    let hostnames: Vec<String> = answer["operation"]["hostnames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    println!(
        "launching {} VM(s): {}",
        hostnames.len(),
        hostnames.join(", ")
    );
    if !wait {
        return Ok(());
    }
    let bar = std::io::stderr().is_terminal();
    let started = Instant::now();
    loop {
        let fleet = api.get("/admin/instances", "fleet launch --wait").await?;
        let vms: Vec<&Value> = fleet["vms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| hostnames.iter().any(|h| v["hostname"] == h.as_str()))
            .collect();
        let running = vms.iter().filter(|v| v["status"] == "running").count();
        let failed: Vec<String> = vms
            .iter()
            .filter(|v| v["status"] == "error")
            .map(|v| format!("{}: {}", text(&v["hostname"]), text(&v["status_reason"])))
            .collect();
        // A VM whose record is gone did not make it either.
        let gone = hostnames.len() - vms.len();
        let done = running + failed.len() + gone;
        if bar {
            let width = 30;
            let filled = width * done / hostnames.len().max(1);
            eprint!(
                "\r[{}{}] {running} running, {} failed, {} booting",
                "#".repeat(filled),
                " ".repeat(width - filled),
                failed.len() + gone,
                hostnames.len() - done
            );
            let _ = std::io::stderr().flush();
        }
        if done == hostnames.len() {
            if bar {
                eprintln!();
            }
            println!("{running} running, {} failed", failed.len() + gone);
            for f in &failed {
                println!("failed {f}");
            }
            if failed.is_empty() && gone == 0 {
                return Ok(());
            }
            bail!("{} VM(s) did not start", failed.len() + gone);
        }
        if started.elapsed() > timeout {
            if bar {
                eprintln!();
            }
            bail!(
                "gave up waiting after {} s: {} of {} VM(s) still booting",
                timeout.as_secs(),
                hostnames.len() - done,
                hostnames.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn destroy(api: &Api, yes: bool, in_use: bool) -> anyhow::Result<()> {
    let fleet = api.get("/admin/instances", "fleet destroy").await?;
    let vms: Vec<String> = fleet["vms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| match v["assigned_email"].as_str() {
            Some(email) => format!("{} ({email})", text(&v["hostname"])),
            None => text(&v["hostname"]),
        })
        .collect();
    println!(
        "this ends {} VM(s), after a final sync of participants' work:",
        vms.len()
    );
    for vm in &vms {
        println!("  {vm}");
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("not a terminal, so nothing was asked and nothing destroyed: pass --yes");
        }
        print!("destroy them? type yes: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != "yes" {
            bail!("nothing was destroyed");
        }
    }
    let form: &[(&str, &str)] = if in_use {
        &[("confirm", "yes"), ("confirm_in_use", "yes")]
    } else {
        &[("confirm", "yes")]
    };
    // The server waits for every VM's final sync before it answers (the wait is set on the
    // server, up to 10 minutes locally): give it that long.
    let answer = api
        .call(
            api.http
                .post(format!("{}/destroy", api.base))
                .form(form)
                .timeout(Duration::from_secs(15 * 60)),
            "fleet destroy",
        )
        .await?;
    let op = &answer["operation"];
    for sync in op["collected"].as_array().into_iter().flatten() {
        println!(
            "{}: {} ({} file(s), {} bytes)",
            text(&sync["hostname"]),
            if sync["answered"] == true {
                "final sync done"
            } else {
                "did not answer the final sync; its earlier syncs are kept"
            },
            text(&sync["files"]),
            text(&sync["bytes"])
        );
    }
    let errors: Vec<String> = op["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !errors.is_empty() {
        bail!("destroy finished with errors: {}", errors.join("; "));
    }
    println!("destroyed {} VM(s)", vms.len());
    Ok(())
}

async fn collect(api: &Api, out: &PathBuf) -> anyhow::Result<()> {
    let export = api.get("/api/scp-client", "fleet collect").await?;
    let url = export["url"]
        .as_str()
        .context("the server gave no download URL")?;
    // The download URL is its own credential (presigned on AWS): no admin header on it.
    let resp = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .context("downloading the zip")?;
    if !resp.status().is_success() {
        bail!("downloading the zip: HTTP {}", resp.status());
    }
    let bytes = resp.bytes().await.context("downloading the zip")?;
    let temp = out.with_extension("part");
    std::fs::write(&temp, &bytes).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} file(s) from {} VM(s), {} bytes)",
        out.display(),
        text(&export["files"]),
        export["vms"].as_array().map_or(0, Vec::len),
        bytes.len()
    );
    let missed: Vec<String> = export["did_not_answer"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !missed.is_empty() {
        println!(
            "missed the final sync (earlier syncs included): {}",
            missed.join(", ")
        );
    }
    Ok(())
}
