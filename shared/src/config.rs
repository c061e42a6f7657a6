//! Configuration, read once at start from the environment. Every error names the variable.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Longest a `/vm_startup` long-poll may wait: API Gateway cuts requests at 29-30 s.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(25);

#[derive(Debug, Clone)]
pub struct Config {
    /// `GPUFLEET_ADMIN_USER` (default `admin`).
    pub admin_user: String,
    /// `GPUFLEET_ADMIN_PASSWORD`. Required on AWS; local mode generates one if unset.
    pub admin_password: Option<String>,
    /// `GPUFLEET_MAX_LAUNCH`: the largest count one launch may ask for (default 100).
    pub max_launch: u32,
    /// `GPUFLEET_VM_PREFIX`: hostnames are `<prefix>-<8 hex>` (default `gpufleet-vm`).
    pub vm_prefix: String,
    /// `GPUFLEET_LONG_POLL_SECONDS`: how long `/vm_startup` waits (default and max 25).
    pub long_poll: Duration,
    /// `GPUFLEET_POLL_INTERVAL_MS`: re-check interval of a long-poll where no in-process
    /// notification exists (Lambda), default 1000.
    pub poll_interval: Duration,
    /// `GPUFLEET_API_URL`: the URL VMs call back. Local mode derives it from its address.
    pub api_url: Option<String>,
    /// `GPUFLEET_DATA_DIR`: where the embedded store lives (default `./data`).
    pub data_dir: PathBuf,
    /// `GPUFLEET_TABLE`: the DynamoDB table (required on Lambda; local mode uses SQLite
    /// unless `serve --dynamodb-table` is given).
    pub table: Option<String>,
    /// `GPUFLEET_QUEUE_URL`: the SQS queue of launch jobs (AWS only).
    pub queue_url: Option<String>,
    /// `GPUFLEET_DEPLOYMENT`: tags every machine this deployment starts; destroy and
    /// reconcile only ever touch machines carrying it (default `gpufleet`).
    pub deployment: String,
    /// `GPUFLEET_MARKET`: `on-demand` (default) or `spot`.
    pub market: crate::ports::Market,
    /// `GPUFLEET_SPOT_FALLBACK`: with spot, fall back to on-demand when spot has no capacity
    /// (default true).
    pub spot_fallback: bool,
    /// `GPUFLEET_LAUNCH_ATTEMPTS`: deliveries of a launch job before its VM is marked
    /// `error` (default 5).
    pub launch_attempts: u32,
    /// `GPUFLEET_RECONCILE_GRACE_SECONDS`: an unrecorded machine younger than this is taken
    /// for a launch in flight, not an orphan (default 600).
    pub reconcile_grace: Duration,
    /// `GPUFLEET_LOG_CAP_BYTES`: how much log each VM keeps, oldest lines dropped first
    /// (default 1 MiB, at least 64 KiB).
    pub log_cap_bytes: usize,
    /// `GPUFLEET_OPERATION_STALE_SECONDS`: a launch/destroy still "running" after this long
    /// is taken as dead and no longer blocks the next one (default 900).
    pub operation_stale_after: Duration,
    /// `GPUFLEET_GPU_QUOTA`: a user's total GPUs across active provisioning requests, unless
    /// their API key sets another (default 8).
    pub default_gpu_quota: u32,
    /// `GPUFLEET_MAX_LEASE_HOURS`: the longest `duration_hours` a request may ask for (72).
    pub max_lease_hours: u32,
    /// `GPUFLEET_GPU_SHAPES`: `type:gpus` pairs, comma-separated, that requests are built
    /// from (default `g5.xlarge:1,g5.12xlarge:4,g5.48xlarge:8`: NVIDIA A10G; one 1-GPU type
    /// is required).
    pub gpu_shapes: Vec<crate::domain::requests::GpuShape>,
    /// `GPUFLEET_SSH_USER`: the login user of the image, reported in a request's access.
    pub ssh_user: String,
    /// `GPUFLEET_PROVISION_TIMEOUT_SECONDS`: a request not completed this long after it was
    /// made fails and its machines are ended (default 1800).
    pub provision_timeout: Duration,
    /// `GPUFLEET_CORS_ORIGINS`: origins allowed to call the API from a browser,
    /// comma-separated (default `http://localhost:5173,http://127.0.0.1:5173`).
    pub cors_origins: Vec<String>,
    /// `GPUFLEET_RATE_LIMIT_PER_MINUTE`: requests per minute one client IP may send to the
    /// offers and instances API (default 100).
    pub rate_limit_per_ip: u32,
    /// `GPUFLEET_KEY_RATE_LIMIT_PER_MINUTE`: the same per API key (default 100).
    pub rate_limit_per_key: u32,
    /// `GPUFLEET_ADMIN_LOGIN_FAILURES_PER_MINUTE`: failed admin logins one client address may
    /// make in a sliding minute before its admin requests get 429 (default 15).
    pub admin_login_failures_per_minute: u32,
    /// `GPUFLEET_VAST_API_KEY`: lists the vast_ai provider when set.
    pub vast_api_key: Option<String>,
    /// `GPUFLEET_VAST_API_URL` (default `https://console.vast.ai/api/v0`).
    pub vast_api_url: String,
    /// `GPUFLEET_OFFER_CACHE_SECONDS`: how long a provider's offers are reused (default 60).
    pub offer_cache: Duration,
    /// `GPUFLEET_POOLS`: capacity pools beyond each GPU type's defaults
    /// (`name=GPU/kind[/tenant[/owner group]]`, comma-separated).
    pub pools: Vec<crate::domain::pools::Pool>,
    /// `GPUFLEET_INSTANCE_TYPE`: the workshop VMs' instance type (default g4dn.xlarge); the
    /// capacity views derive each host's GPUs from it.
    pub instance_type: String,
    /// A VM not heard from for this long is neither handed out nor counted free
    /// (`GPUFLEET_HEARTBEAT_TIMEOUT_SECONDS`, default 90; agents call every third of it).
    pub heartbeat_timeout: Duration,
    /// A VM still `initializing` this long after its record was made is marked `error`
    /// (`GPUFLEET_BOOT_TIMEOUT_SECONDS`, default 1200).
    pub boot_timeout: Duration,
    /// When set, the claim form asks for it and a claim without it changes nothing
    /// (`GPUFLEET_JOIN_CODE`): the defence against strangers emptying the pool.
    pub join_code: Option<String>,
    /// Claims one client IP may make per hour; 0 = no limit (`GPUFLEET_CLAIMS_PER_IP_PER_HOUR`,
    /// default 0: a room behind one NAT shares an address).
    pub claims_per_ip_per_hour: u32,
    /// Participants' work the agents collect (`GPUFLEET_COLLECT_*`; see [`CollectConfig`]).
    pub collect: CollectConfig,
    /// Prices and budgets (`GPUFLEET_PRICE_REGION`, `GPUFLEET_IDLE_WARNING_MINUTES`,
    /// `GPUFLEET_FLEET_BUDGET_USD`; see [`CostConfig`]).
    pub costs: CostConfig,
}

/// Where prices come from and what the dashboard warns about.
#[derive(Debug, Clone)]
pub struct CostConfig {
    /// `GPUFLEET_PRICE_REGION`: the region of the on-demand price table to read (default
    /// `AWS_REGION`, which Lambda sets, else us-east-1).
    pub price_region: String,
    /// `GPUFLEET_IDLE_WARNING_MINUTES`: a running VM unclaimed or unused this long is
    /// listed with its cost on the dashboard (default 30).
    pub idle_warning: Duration,
    /// `GPUFLEET_FLEET_BUDGET_USD`: the most workshop VMs may spend in a calendar month
    /// (UTC); a launch that could take the fleet over it is refused. Unset: no budget.
    pub fleet_budget_usd: Option<f64>,
}

fn cost_config(get: &impl Fn(&'static str) -> Option<String>) -> Result<CostConfig, ConfigError> {
    let fleet_budget_usd = match get("GPUFLEET_FLEET_BUDGET_USD") {
        None => None,
        Some(raw) => match raw.trim().parse::<f64>() {
            // `+ 0.0` turns -0 into 0 (which would print as "$-0.00").
            Ok(v) if v.is_finite() && v >= 0.0 => Some(v + 0.0),
            _ => {
                return Err(ConfigError::Invalid {
                    name: "GPUFLEET_FLEET_BUDGET_USD",
                    value: raw,
                    reason: "must be a number of US dollars, 0 or more".into(),
                })
            }
        },
    };
    let idle_minutes: u64 = parse(get, "GPUFLEET_IDLE_WARNING_MINUTES", 30)?;
    Ok(CostConfig {
        price_region: get("GPUFLEET_PRICE_REGION")
            .or_else(|| get("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into())
            .trim()
            .to_string(),
        idle_warning: Duration::from_secs(idle_minutes.saturating_mul(60).max(60)),
        fleet_budget_usd,
    })
}

/// What the agents collect from each VM's working directory, and how.
#[derive(Debug, Clone)]
pub struct CollectConfig {
    /// `GPUFLEET_COLLECT_PATTERNS`: comma-separated (`*.slp,*.ipynb`; default `*.slp`); set
    /// it empty to collect nothing.
    pub patterns: crate::domain::collect::Patterns,
    /// `GPUFLEET_COLLECT_MAX_FILE_BYTES` (default 100 MiB) and
    /// `GPUFLEET_COLLECT_MAX_VM_BYTES` (default 1 GiB).
    pub caps: crate::domain::collect::Caps,
    /// `GPUFLEET_COLLECT_INTERVAL_SECONDS`: how often an agent syncs (default 300, at least 5).
    pub interval: Duration,
    /// `GPUFLEET_COLLECT_FINAL_WAIT_SECONDS`: how long a destroy waits for the VMs' final
    /// sync (default 15; on AWS it must leave the destroy function time to end the VMs
    /// within API Gateway's 30 s).
    pub final_wait: Duration,
    /// `GPUFLEET_COLLECT_BUCKET`: the S3 bucket of collected work (AWS).
    pub bucket: Option<String>,
}

impl CollectConfig {
    pub fn enabled(&self) -> bool {
        !self.patterns.is_empty()
    }
}

fn collect_config(
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<CollectConfig, ConfigError> {
    let raw = get("GPUFLEET_COLLECT_PATTERNS").unwrap_or_else(|| "*.slp".into());
    let patterns =
        crate::domain::collect::Patterns::parse(&raw).map_err(|e| ConfigError::Invalid {
            name: "GPUFLEET_COLLECT_PATTERNS",
            value: raw.clone(),
            reason: e.to_string(),
        })?;
    let per_file: u64 = parse(get, "GPUFLEET_COLLECT_MAX_FILE_BYTES", 100 << 20)?;
    let per_vm: u64 = parse(get, "GPUFLEET_COLLECT_MAX_VM_BYTES", 1 << 30)?;
    let interval: u64 = parse(get, "GPUFLEET_COLLECT_INTERVAL_SECONDS", 300)?;
    if interval < 5 {
        return Err(ConfigError::Invalid {
            name: "GPUFLEET_COLLECT_INTERVAL_SECONDS",
            value: interval.to_string(),
            reason: "must be at least 5".into(),
        });
    }
    let final_wait: u64 = parse(get, "GPUFLEET_COLLECT_FINAL_WAIT_SECONDS", 15)?;
    if final_wait > 600 {
        return Err(ConfigError::Invalid {
            name: "GPUFLEET_COLLECT_FINAL_WAIT_SECONDS",
            value: final_wait.to_string(),
            reason: "must be at most 600".into(),
        });
    }
    Ok(CollectConfig {
        patterns,
        caps: crate::domain::collect::Caps { per_file, per_vm },
        interval: Duration::from_secs(interval),
        final_wait: Duration::from_secs(final_wait),
        bucket: get("GPUFLEET_COLLECT_BUCKET").filter(|b| !b.trim().is_empty()),
    })
}

/// The default `GPUFLEET_CORS_ORIGINS` (a Vite dev server).
pub const DEFAULT_CORS_ORIGINS: &str = "http://localhost:5173,http://127.0.0.1:5173";

fn parse_shapes(raw: &str) -> Result<Vec<crate::domain::requests::GpuShape>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "GPUFLEET_GPU_SHAPES",
        value: raw.to_string(),
        reason: reason.to_string(),
    };
    let mut shapes = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (instance_type, gpus) = pair
            .split_once(':')
            .ok_or_else(|| invalid("use type:gpus pairs, e.g. g5.xlarge:1"))?;
        let gpus: u32 = gpus
            .trim()
            .parse()
            .map_err(|_| invalid("a GPU count is not a number"))?;
        let instance_type = instance_type.trim();
        if gpus == 0
            || instance_type.is_empty()
            || !instance_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(invalid(
                "each pair needs an instance type and at least one GPU",
            ));
        }
        shapes.push(crate::domain::requests::GpuShape {
            instance_type: instance_type.to_string(),
            gpus,
        });
    }
    if !shapes.iter().any(|s| s.gpus == 1) {
        return Err(invalid(
            "one type must have exactly 1 GPU, so every count can be met",
        ));
    }
    Ok(shapes)
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let long_poll_secs: u64 = parse(&get, "GPUFLEET_LONG_POLL_SECONDS", 25)?;
        if long_poll_secs == 0 || Duration::from_secs(long_poll_secs) > MAX_LONG_POLL {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_LONG_POLL_SECONDS",
                value: long_poll_secs.to_string(),
                reason: "must be between 1 and 25 (API Gateway's limit)".into(),
            });
        }
        let max_launch: u32 = parse(&get, "GPUFLEET_MAX_LAUNCH", 100)?;
        if max_launch == 0 {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_MAX_LAUNCH",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let vm_prefix = get("GPUFLEET_VM_PREFIX").unwrap_or_else(|| "gpufleet-vm".into());
        if !vm_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || vm_prefix.len() > 40
        {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_VM_PREFIX",
                value: vm_prefix,
                reason: "use at most 40 lowercase letters, digits and '-'".into(),
            });
        }
        let log_cap_bytes: usize = parse(&get, "GPUFLEET_LOG_CAP_BYTES", 1 << 20)?;
        if log_cap_bytes < crate::domain::logs::MIN_CAP_BYTES {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_LOG_CAP_BYTES",
                value: log_cap_bytes.to_string(),
                reason: format!("must be at least {}", crate::domain::logs::MIN_CAP_BYTES),
            });
        }
        let market = match get("GPUFLEET_MARKET").as_deref() {
            None | Some("on-demand") => crate::ports::Market::OnDemand,
            Some("spot") => crate::ports::Market::Spot,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "GPUFLEET_MARKET",
                    value: other.to_string(),
                    reason: "must be on-demand or spot".into(),
                })
            }
        };
        let heartbeat_timeout_secs: u64 = parse(&get, "GPUFLEET_HEARTBEAT_TIMEOUT_SECONDS", 90)?;
        if !(3..=86_400).contains(&heartbeat_timeout_secs) {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_HEARTBEAT_TIMEOUT_SECONDS",
                value: heartbeat_timeout_secs.to_string(),
                reason: "must be between 3 and 86400 (agents call every third of it)".into(),
            });
        }
        let deployment = get("GPUFLEET_DEPLOYMENT").unwrap_or_else(|| "gpufleet".into());
        if deployment.len() > 64
            || !deployment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_DEPLOYMENT",
                value: deployment,
                reason: "use at most 64 letters, digits, '-' and '_'".into(),
            });
        }
        Ok(Config {
            queue_url: get("GPUFLEET_QUEUE_URL"),
            deployment,
            market,
            spot_fallback: parse(&get, "GPUFLEET_SPOT_FALLBACK", true)?,
            launch_attempts: parse::<u32>(&get, "GPUFLEET_LAUNCH_ATTEMPTS", 5)?.max(1),
            reconcile_grace: Duration::from_secs(parse(
                &get,
                "GPUFLEET_RECONCILE_GRACE_SECONDS",
                600,
            )?),
            table: get("GPUFLEET_TABLE"),
            log_cap_bytes,
            admin_user: get("GPUFLEET_ADMIN_USER").unwrap_or_else(|| "admin".into()),
            admin_password: admin_password(get("GPUFLEET_ADMIN_PASSWORD"))?,
            max_launch,
            vm_prefix,
            long_poll: Duration::from_secs(long_poll_secs),
            poll_interval: Duration::from_millis(parse(&get, "GPUFLEET_POLL_INTERVAL_MS", 1000)?),
            api_url: get("GPUFLEET_API_URL"),
            data_dir: get("GPUFLEET_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data")),
            operation_stale_after: Duration::from_secs(parse(
                &get,
                "GPUFLEET_OPERATION_STALE_SECONDS",
                900,
            )?),
            default_gpu_quota: parse(&get, "GPUFLEET_GPU_QUOTA", 8)?,
            max_lease_hours: parse::<u32>(&get, "GPUFLEET_MAX_LEASE_HOURS", 72)?.max(1),
            gpu_shapes: parse_shapes(
                &get("GPUFLEET_GPU_SHAPES")
                    .unwrap_or_else(|| "g5.xlarge:1,g5.12xlarge:4,g5.48xlarge:8".into()),
            )?,
            ssh_user: get("GPUFLEET_SSH_USER").unwrap_or_else(|| "ubuntu".into()),
            provision_timeout: Duration::from_secs(parse(
                &get,
                "GPUFLEET_PROVISION_TIMEOUT_SECONDS",
                1800,
            )?),
            cors_origins: get("GPUFLEET_CORS_ORIGINS")
                .unwrap_or_else(|| DEFAULT_CORS_ORIGINS.into())
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            rate_limit_per_ip: parse::<u32>(&get, "GPUFLEET_RATE_LIMIT_PER_MINUTE", 100)?.max(1),
            rate_limit_per_key: parse::<u32>(&get, "GPUFLEET_KEY_RATE_LIMIT_PER_MINUTE", 100)?
                .max(1),
            admin_login_failures_per_minute: parse::<u32>(
                &get,
                "GPUFLEET_ADMIN_LOGIN_FAILURES_PER_MINUTE",
                crate::usecases::rate_limit::DEFAULT_LOGIN_FAILURES_PER_MINUTE,
            )?
            .max(1),
            vast_api_key: get("GPUFLEET_VAST_API_KEY"),
            vast_api_url: get("GPUFLEET_VAST_API_URL")
                .unwrap_or_else(|| "https://console.vast.ai/api/v0".into())
                .trim_end_matches('/')
                .to_string(),
            offer_cache: Duration::from_secs(parse(&get, "GPUFLEET_OFFER_CACHE_SECONDS", 60)?),
            instance_type: get("GPUFLEET_INSTANCE_TYPE").unwrap_or_else(|| "g4dn.xlarge".into()),
            heartbeat_timeout: Duration::from_secs(heartbeat_timeout_secs),
            boot_timeout: Duration::from_secs(parse(&get, "GPUFLEET_BOOT_TIMEOUT_SECONDS", 1200)?),
            join_code: get("GPUFLEET_JOIN_CODE").map(|c| c.trim().to_string()),
            claims_per_ip_per_hour: parse(&get, "GPUFLEET_CLAIMS_PER_IP_PER_HOUR", 0)?,
            collect: collect_config(&get)?,
            costs: cost_config(&get)?,
            pools: crate::domain::pools::parse_pools(&get("GPUFLEET_POOLS").unwrap_or_default())
                .map_err(|e| ConfigError::Invalid {
                    name: "GPUFLEET_POOLS",
                    value: get("GPUFLEET_POOLS").unwrap_or_default(),
                    reason: e.to_string(),
                })?,
        })
    }

    /// The liveness window of the assignment rule.
    pub fn liveness(&self) -> crate::domain::Liveness {
        crate::domain::Liveness::from_secs(self.heartbeat_timeout.as_secs())
    }

    /// The DynamoDB table name, or the error naming the variable.
    pub fn require_table(&self) -> Result<&str, ConfigError> {
        self.table
            .as_deref()
            .ok_or(ConfigError::Missing("GPUFLEET_TABLE"))
    }

    /// The SQS queue URL, or the error naming the variable.
    pub fn require_queue_url(&self) -> Result<&str, ConfigError> {
        self.queue_url
            .as_deref()
            .ok_or(ConfigError::Missing("GPUFLEET_QUEUE_URL"))
    }

    /// The admin password, or the error naming the variable (AWS entrypoints require it).
    pub fn require_admin_password(&self) -> Result<&str, ConfigError> {
        self.admin_password
            .as_deref()
            .ok_or(ConfigError::Missing("GPUFLEET_ADMIN_PASSWORD"))
    }
}

/// Shortest admin password accepted: the login throttle slows guessing, length makes it
/// hopeless.
pub const MIN_ADMIN_PASSWORD_CHARS: usize = 12;

fn admin_password(value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(p) if p.chars().count() < MIN_ADMIN_PASSWORD_CHARS => Err(ConfigError::Invalid {
            name: "GPUFLEET_ADMIN_PASSWORD",
            value: "(not shown)".into(),
            reason: format!(
                "an admin password needs at least {MIN_ADMIN_PASSWORD_CHARS} characters"
            ),
        }),
        other => Ok(other),
    }
}

fn parse<T: FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value,
                reason: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.admin_user, "admin");
        assert_eq!(c.max_launch, 100);
        assert_eq!(c.long_poll, Duration::from_secs(25));
        assert_eq!(
            c.require_admin_password(),
            Err(ConfigError::Missing("GPUFLEET_ADMIN_PASSWORD"))
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = from(&[("GPUFLEET_MAX_LAUNCH", "lots")]).unwrap_err();
        assert!(e.to_string().contains("GPUFLEET_MAX_LAUNCH"), "{e}");
        let e = from(&[("GPUFLEET_LONG_POLL_SECONDS", "60")]).unwrap_err();
        assert!(e.to_string().contains("GPUFLEET_LONG_POLL_SECONDS"), "{e}");
        let e = from(&[("GPUFLEET_ADMIN_PASSWORD", "a")]).unwrap_err();
        assert!(e.to_string().contains("GPUFLEET_ADMIN_PASSWORD"), "{e}");
        assert!(e.to_string().contains("12 characters"), "{e}");
        assert!(
            !e.to_string().contains("\"a\""),
            "the password is not echoed: {e}"
        );
        assert!(from(&[("GPUFLEET_ADMIN_PASSWORD", "twelve-chars")]).is_ok());
        let e = from(&[("GPUFLEET_VM_PREFIX", "Bad Prefix")]).unwrap_err();
        assert!(e.to_string().contains("GPUFLEET_VM_PREFIX"), "{e}");
    }
}
