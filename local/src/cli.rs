//! The `gpufleet` command line: `serve`, `agent`, `seed-vms`, and `fleet` (an admin's client
//! over HTTP).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rand::distr::{Alphanumeric, SampleString};
use std::sync::Arc;

use shared::config::Config;
use shared::ports::Store;

use crate::agent::{self, AgentArgs, GpuMode};
use crate::connections::ConnectionLimits;
use crate::server::{self, ServerOptions};

#[derive(Parser)]
#[command(
    name = "gpufleet",
    version,
    about = "Serverless GPU VM allocator: local mode, VM agent, and a client for any deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every endpoint in one process on the embedded store; VMs are local agents.
    Serve(ServeArgs),
    /// Run the VM agent (what each VM runs).
    Agent(AgentArgs),
    /// Register N running VMs without agents (benchmarks, trying the claim page).
    SeedVms(SeedArgs),
    /// Create the DynamoDB table (with its indexes and TTL) if missing; uses the standard
    /// AWS environment (AWS_ENDPOINT_URL for an emulator).
    CreateTable(CreateTableArgs),
    /// Create an API key for a user of the requests API (local mode's store; on AWS use
    /// `POST /api/v1/api-keys`). Prints the key once.
    ApiKey(ApiKeyArgs),
    /// Write the deployment template: infra/template.base.yaml with one Lambda function per
    /// entry of the function catalogue, wired from the route table (what template.yaml is).
    Template(TemplateArgs),
    /// Drive a deployment over HTTP as its admin: status, launch, destroy, logs, collect.
    Fleet {
        #[command(flatten)]
        target: crate::remote::Target,
        #[command(subcommand)]
        command: crate::remote::FleetCommand,
    },
    /// API keys of the requests, offers and instances API (admin, over HTTP).
    Keys {
        #[command(flatten)]
        target: crate::remote::Target,
        #[command(subcommand)]
        command: crate::remote::KeysCommand,
    },
    /// GPU provisioning requests: request, list, release (API key, over HTTP).
    Gpus {
        #[command(flatten)]
        target: crate::remote::Target,
        #[command(subcommand)]
        command: crate::remote::GpusCommand,
    },
    /// Search GPU offers across providers (API key, over HTTP).
    Offers {
        #[command(flatten)]
        target: crate::remote::Target,
        #[command(subcommand)]
        command: crate::remote::OffersCommand,
    },
    /// Instances run from offers: create, list, start, stop, delete (API key, over HTTP).
    Instances {
        #[command(flatten)]
        target: crate::remote::Target,
        #[command(subcommand)]
        command: crate::remote::InstancesCommand,
    },
}

#[derive(clap::Args)]
struct TemplateArgs {
    /// Write here instead of stdout (e.g. template.yaml).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ApiKeyArgs {
    #[command(flatten)]
    key: crate::remote::NewKeyArgs,
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CreateTableArgs {
    #[arg(long, env = "GPUFLEET_TABLE")]
    table: String,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Where the SQLite database and agent logs live [env: GPUFLEET_DATA_DIR, default ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// URL the local VMs call back [default: http://<addr>]
    #[arg(long)]
    public_url: Option<String>,
    /// GPU health the local agents report (there is no GPU on a laptop).
    #[arg(long, value_enum, default_value = "healthy")]
    agent_gpu: GpuMode,
    /// Keep state in this DynamoDB table instead of SQLite (standard AWS environment for
    /// region, credentials and AWS_ENDPOINT_URL; create it with `gpufleet create-table`).
    #[arg(long, env = "GPUFLEET_TABLE")]
    dynamodb_table: Option<String>,
    /// How long local VMs stay `initializing`, standing in for a cloud VM's boot.
    #[arg(long, default_value_t = 2)]
    agent_boot_delay_secs: u64,
    /// A client must send a request's headers within this long; an idle keep-alive
    /// connection is closed after it.
    #[arg(long, default_value_t = 15)]
    header_timeout_secs: u64,
    /// A request body must arrive within this long (else 408).
    #[arg(long, default_value_t = 30)]
    body_timeout_secs: u64,
    /// Most client connections at once; at the cap the oldest idle one is closed [default:
    /// the open-files limit (raised to its hard limit) minus a reserve]
    #[arg(long)]
    max_connections: Option<usize>,
}

#[derive(clap::Args)]
struct SeedArgs {
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    count: u32,
    #[arg(long, default_value = "seeded-vm")]
    prefix: String,
    /// Write `[{hostname, token}]` here (default: stdout).
    #[arg(long)]
    tokens_out: Option<PathBuf>,
}

/// The whole program; the `gpufleet` binary's `main` is just this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpufleet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::SeedVms(args) => seed(args).await,
            Command::CreateTable(args) => create_table(&args.table).await,
            Command::ApiKey(args) => create_api_key(args).await,
            Command::Template(args) => write_template(args),
            Command::Fleet { target, command } => crate::remote::run(target, command).await,
            Command::Keys { target, command } => crate::remote::run_keys(target, command).await,
            Command::Gpus { target, command } => crate::remote::run_gpus(target, command).await,
            Command::Offers { target, command } => crate::remote::run_offers(target, command).await,
            Command::Instances { target, command } => {
                crate::remote::run_instances(target, command).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<crate::remote::AuthRefused>().is_some() => {
            eprintln!("gpufleet: {e:#}");
            ExitCode::from(crate::remote::EXIT_AUTH)
        }
        Err(e) => {
            eprintln!("gpufleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    functions::telemetry::init_tracing(false);
    let mut config = Config::from_env()?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = args.public_url {
        config.api_url = Some(url);
    }
    let generated = config.admin_password.is_none().then(|| {
        let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
        config.admin_password = Some(password.clone());
        password
    });
    let agent_gpu = match args.agent_gpu {
        GpuMode::Detect => "detect",
        GpuMode::Healthy => "healthy",
        GpuMode::Unhealthy => "unhealthy",
    };
    let admin_user = config.admin_user.clone();
    let storage = match &args.dynamodb_table {
        Some(table) => format!("DynamoDB table {table}"),
        None => format!("SQLite in {}", config.data_dir.display()),
    };
    let store: Option<Arc<dyn Store>> = match args.dynamodb_table {
        Some(table) => Some(dynamodb_store(table).await?),
        None => None,
    };
    let running = server::start(ServerOptions {
        addr: args.addr,
        config,
        agent_program: std::env::current_exe()?,
        // Local VMs give up 15 minutes after the server goes away for good.
        agent_args: vec![
            "--gpu".into(),
            agent_gpu.into(),
            "--give-up-after-secs".into(),
            "900".into(),
            "--boot-delay-secs".into(),
            args.agent_boot_delay_secs.to_string(),
        ],
        kill_agents_on_drop: false,
        store,
        sweep_every: std::time::Duration::from_secs(5),
        clock: None,
        clouds: None,
        network: None,
        limits: ConnectionLimits {
            header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
            body_timeout: std::time::Duration::from_secs(args.body_timeout_secs.max(1)),
            max_connections: args.max_connections,
        },
    })
    .await?;
    say(&format!("gpufleet local mode: {}", running.url));
    say(&format!("  claim page: {}/", running.url));
    say(&format!(
        "  admin:      {}/admin  (user {admin_user})",
        running.url
    ));
    if let Some(password) = generated {
        say(&format!("  admin password (generated for this run; set GPUFLEET_ADMIN_PASSWORD to choose one): {password}"));
    }
    say(&format!("  state:      {storage}"));
    let url = running.url.clone();
    tokio::select! {
        _ = shutdown_signal() => {
            say(&format!("gpufleet: stopping; local VMs keep running like cloud VMs would (destroy them from {url}/admin)"));
            running.stop().await;
        }
    }
    Ok(())
}

#[cfg(feature = "aws")]
async fn dynamodb_store(table: String) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(
        shared::adapters::DynamoStore::from_env(table).await,
    ))
}

#[cfg(feature = "aws")]
async fn create_table(table: &str) -> anyhow::Result<()> {
    shared::adapters::DynamoStore::from_env(table)
        .await
        .create_table_if_missing()
        .await?;
    println!("table {table} is ready");
    Ok(())
}

#[cfg(not(feature = "aws"))]
const NO_AWS: &str = "this build has no DynamoDB support; build it with the aws feature: \
     cargo run --release --features aws --bin gpufleet -- ...";

#[cfg(not(feature = "aws"))]
async fn dynamodb_store(_table: String) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!(NO_AWS)
}

#[cfg(not(feature = "aws"))]
async fn create_table(_table: &str) -> anyhow::Result<()> {
    anyhow::bail!(NO_AWS)
}

/// Prints a line; a closed stdout (the terminal or a pipe went away) must not stop the
/// server, which `println!` would by panicking.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn create_api_key(args: ApiKeyArgs) -> anyhow::Result<()> {
    use shared::ports::ApiKeyStore as _;
    let config = Config::from_env()?;
    let chars = args.key.user.chars().count();
    if chars == 0 || chars > shared::domain::requests::MAX_USER_ID_CHARS {
        anyhow::bail!("--user must be 1-50 characters");
    }
    let data_dir = args.data_dir.unwrap_or(config.data_dir);
    let store = shared::adapters::SqliteStore::open(&data_dir)?;
    let now = shared::ports::Clock::now_millis(&shared::adapters::SystemClock);
    let quota = args.key.gpu_quota.unwrap_or(config.default_gpu_quota);
    let (key, plain) =
        shared::domain::ApiKey::generate(&args.key.user, &args.key.label, quota, now);
    store.insert_api_key(&key).await?;
    println!("{plain}");
    eprintln!(
        "API key {} for user {} (GPU quota {quota}); shown once, keep it secret",
        key.key_id, key.user_id
    );
    Ok(())
}

fn write_template(args: TemplateArgs) -> anyhow::Result<()> {
    let text = functions::template::render();
    match args.out {
        Some(path) => std::fs::write(&path, text)?,
        None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?,
    }
    Ok(())
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => Config::from_env()?.data_dir,
    };
    let tokens = crate::seed::seed_vms(&data_dir, &args.prefix, args.count).await?;
    let text = serde_json::to_string_pretty(&tokens)?;
    match args.tokens_out {
        Some(path) => std::fs::write(&path, text)?,
        None => println!("{text}"),
    }
    Ok(())
}
