//! Every Lambda function of a deployment: what invokes it, which AWS services its handler
//! uses, its timeout and memory. All of them run one artifact, which learns its function
//! from `GPUFLEET_FUNCTION`; the Lambda wiring then builds only that function's adapters
//! (and reads only their configuration). `crate::template` writes each function's resource
//! in `template.yaml` from its entry here, and the template tests check the result.

use crate::routes::{Access, ROUTES};

/// What invokes a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// API Gateway HTTP API routes (see [`ROUTES`]).
    Http,
    /// The launch-job queue (SQS event source, partial batch responses).
    Queue,
    /// An EventBridge schedule.
    Schedule,
    /// The CloudWatch Logs subscription on the VMs' log group.
    LogsSubscription,
}

/// Access to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAccess {
    Read,
    ReadWrite,
}

/// Access to EC2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ec2Access {
    None,
    /// Describe this deployment's instances (their addresses, when a request completes).
    Describe,
    /// Describe and terminate this deployment's instances (destroy, reconcile).
    Terminate,
    /// Also launch them (the provisioner).
    Launch,
    /// Describe them and set their `gpufleet:pool` tag (host migrations).
    Tag,
}

/// Access to the GPU clouds of the offers API (aws_ec2 through EC2, vast_ai through its API
/// key when one is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudAccess {
    None,
    /// Search offers (EC2 instance types, offerings, spot prices) and show instances.
    Read,
    /// Also start the deployment's instances (and nothing else).
    Start,
    /// Also stop the deployment's instances.
    Stop,
    /// Also terminate the deployment's instances.
    Terminate,
    /// Read, and create instances (RunInstances with the deployment's tags).
    Create,
}

/// Access to VPC networking: describe networks, instances, security groups and images;
/// `Write` also creates and attaches network interfaces and changes security groups of the
/// deployment's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAccess {
    None,
    Read,
    Write,
}

/// Access to the bucket of participants' work (`domain::collect` names its prefixes: `work/`
/// the files, `vms/` the manifests, `exports/` the assembled downloads). VMs get none: they
/// only ever hold presigned URLs for one object each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkAccess {
    None,
    /// List, presign uploads under `work/` and read the manifests (a VM's sync plan; S3 answers
    /// a missing key without ListBucket as AccessDenied, not NoSuchKey).
    Presign,
    /// List, and read and write the manifests (a sync's report, a destroy's final sync).
    Manifests,
    /// List and read the manifests (the dashboard).
    Read,
    /// List, read everything, and write the assembled download under `exports/`.
    Export,
    /// List, read the manifests, delete everything (the admin's delete).
    Delete,
}

/// A setting a function reads beyond what its access implies (its template environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `GPUFLEET_JOIN_CODE`: the claim form's join code.
    JoinCode,
    /// `GPUFLEET_CLAIMS_PER_IP_PER_HOUR`.
    ClaimsPerIp,
    /// `GPUFLEET_LONG_POLL_SECONDS` and `GPUFLEET_POLL_INTERVAL_MS`: the VM's wait for work.
    LongPoll,
    /// Prices a start or shows costs: the machine type and market (a launch's first hour),
    /// `GPUFLEET_FLEET_BUDGET_USD` and `GPUFLEET_IDLE_WARNING_MINUTES`, and reads EC2 spot
    /// prices (`ec2:DescribeSpotPriceHistory`, through a compute that does nothing else).
    Prices,
}

/// Lambda's defaults in the template's `Globals`; a function states only what differs.
pub const DEFAULT_TIMEOUT_SECS: u32 = 10;
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// For functions that call other AWS services or wait: just under API Gateway's 30 s.
pub const API_TIMEOUT_SECS: u32 = 29;

#[derive(Debug, Clone, Copy)]
pub struct LambdaFunction {
    /// The function's name: its `GPUFLEET_FUNCTION` and, in CamelCase, its logical id in
    /// the template.
    pub name: &'static str,
    pub trigger: Trigger,
    pub store: StoreAccess,
    /// Sends jobs to the queue.
    pub sends_jobs: bool,
    /// Checks the queue answers (`/health`).
    pub checks_queue: bool,
    pub ec2: Ec2Access,
    pub clouds: CloudAccess,
    pub network: NetworkAccess,
    pub work: WorkAccess,
    pub timeout_secs: u32,
    pub memory_mb: u32,
    pub settings: &'static [Setting],
    /// A line for the template, above the function's resource (empty: none).
    pub about: &'static str,
}

impl LambdaFunction {
    /// Serves at least one route an admin may call, so it needs the admin password.
    pub fn needs_admin_password(&self) -> bool {
        ROUTES.iter().any(|r| {
            r.function == self.name
                && matches!(
                    r.access,
                    Access::Admin | Access::ApiKeyOrAdmin | Access::VmOrAdmin(_)
                )
        })
    }

    /// Has [`Setting::Prices`].
    pub fn prices_starts(&self) -> bool {
        self.settings.contains(&Setting::Prices)
    }

    /// Reads EC2 spot prices: it prices a start, or launches (a launched machine records
    /// its price).
    pub fn reads_spot_prices(&self) -> bool {
        self.prices_starts() || self.ec2 == Ec2Access::Launch
    }

    /// Talks to the queue: sends jobs, checks it, or (the provisioner) delays redeliveries.
    pub fn uses_queue(&self) -> bool {
        self.sends_jobs || self.checks_queue || self.trigger == Trigger::Queue
    }
}

const fn http(name: &'static str, store: StoreAccess) -> LambdaFunction {
    LambdaFunction {
        name,
        trigger: Trigger::Http,
        store,
        sends_jobs: false,
        checks_queue: false,
        ec2: Ec2Access::None,
        clouds: CloudAccess::None,
        network: NetworkAccess::None,
        work: WorkAccess::None,
        timeout_secs: DEFAULT_TIMEOUT_SECS,
        memory_mb: DEFAULT_MEMORY_MB,
        settings: &[],
        about: "",
    }
}

/// `f`, given API Gateway's whole time: it calls other AWS services, or waits.
const fn slow(f: LambdaFunction) -> LambdaFunction {
    LambdaFunction {
        timeout_secs: API_TIMEOUT_SECS,
        ..f
    }
}

use StoreAccess::{Read, ReadWrite};

pub static FUNCTIONS: &[LambdaFunction] = &[
    LambdaFunction {
        settings: &[Setting::JoinCode],
        ..http("home", Read)
    },
    LambdaFunction {
        settings: &[Setting::JoinCode, Setting::ClaimsPerIp],
        ..http("request-vm", ReadWrite)
    },
    LambdaFunction {
        about: "A participant's seat: reached with the seat cookie or the private seat link.",
        ..http("seat-page", Read)
    },
    http("seat-command", ReadWrite),
    http("seat-move", ReadWrite),
    http("reissue-seat", ReadWrite),
    http("move-seat", ReadWrite),
    slow(LambdaFunction {
        settings: &[Setting::LongPoll],
        about: "Long-poll: waits up to 25 s for the VM's assignment (API Gateway cuts at 30 s).",
        ..http("vm-startup", Read)
    }),
    http("unassigned-vms-count", Read),
    http("update-inuse-status", ReadWrite),
    http("gpu-health", ReadWrite),
    LambdaFunction {
        ec2: Ec2Access::Describe,
        ..http("report-vm-status", ReadWrite)
    },
    http("list-vm-status", Read),
    http("get-vm-status", Read),
    // Launch and destroy answer browsers with the dashboard, which shows the collected work.
    slow(LambdaFunction {
        sends_jobs: true,
        work: WorkAccess::Read,
        settings: &[Setting::Prices],
        ..http("launch", ReadWrite)
    }),
    slow(LambdaFunction {
        ec2: Ec2Access::Terminate,
        work: WorkAccess::Manifests,
        settings: &[Setting::Prices],
        about: "Asks every VM for a final sync of the participant's work (bounded wait), then ends them.",
        ..http("destroy", ReadWrite)
    }),
    http("get-operation", Read),
    // Reconciling sweeps provisioning requests, which re-queues lost ones.
    slow(LambdaFunction {
        ec2: Ec2Access::Terminate,
        sends_jobs: true,
        clouds: CloudAccess::Terminate,
        // An adopted machine is priced at the deployment's market.
        settings: &[Setting::Prices],
        ..http("reconcile-now", ReadWrite)
    }),
    LambdaFunction {
        work: WorkAccess::Read,
        settings: &[Setting::Prices],
        ..http("admin-dashboard", Read)
    },
    http("admin-instances", Read),
    http("admin-logs", Read),
    http("admin-metrics", Read),
    http("vm-metrics", ReadWrite),
    http("ingest-vm-logs", ReadWrite),
    http("push-vm-logs", ReadWrite),
    http("get-vm-logs", Read),
    LambdaFunction {
        checks_queue: true,
        ..http("health", Read)
    },
    LambdaFunction {
        about: "The OpenAPI document of every route, generated from the route table (public).",
        ..http("openapi", Read)
    },
    http("api-docs", Read),
    LambdaFunction {
        work: WorkAccess::Presign,
        about: "Participants' work: a VM's sync gets presigned PUT URLs under its own prefix (docs/collect.md).",
        // Each plan counts against the VM's per-minute limit (a table write).
        ..http("collect-plan", ReadWrite)
    },
    LambdaFunction {
        work: WorkAccess::Manifests,
        ..http("collect-done", ReadWrite)
    },
    slow(LambdaFunction {
        work: WorkAccess::Export,
        memory_mb: 512,
        about: "Assembles the zip of everything collected in S3 (multipart) and answers 303 to a presigned GET.",
        ..http("scp-client", Read)
    }),
    slow(LambdaFunction {
        work: WorkAccess::Delete,
        // It answers with the dashboard, costs and all.
        settings: &[Setting::Prices],
        ..http("delete-collected", Read)
    }),
    LambdaFunction {
        sends_jobs: true,
        // A user's budget holds the first hour of each machine asked for.
        settings: &[Setting::Prices],
        ..http("create-request", ReadWrite)
    },
    http("list-requests", Read),
    http("get-request", Read),
    slow(LambdaFunction {
        ec2: Ec2Access::Terminate,
        ..http("release-request", ReadWrite)
    }),
    http("create-api-key", ReadWrite),
    http("list-api-keys", Read),
    http("revoke-api-key", ReadWrite),
    // The offers and instances API. Every route counts requests for its rate limit, so
    // even the listings write to the table.
    LambdaFunction {
        clouds: CloudAccess::Read,
        about: "The offers and instances API (GPU offers across providers; docs/offers.md).",
        ..http("list-providers", ReadWrite)
    },
    slow(LambdaFunction {
        clouds: CloudAccess::Read,
        ..http("search-offers", ReadWrite)
    }),
    http("list-instances", ReadWrite),
    slow(LambdaFunction {
        clouds: CloudAccess::Read,
        ..http("get-instance", ReadWrite)
    }),
    slow(LambdaFunction {
        clouds: CloudAccess::Create,
        ..http("create-instance", ReadWrite)
    }),
    slow(LambdaFunction {
        clouds: CloudAccess::Start,
        ..http("start-instance", ReadWrite)
    }),
    slow(LambdaFunction {
        clouds: CloudAccess::Stop,
        ..http("stop-instance", ReadWrite)
    }),
    slow(LambdaFunction {
        clouds: CloudAccess::Terminate,
        ..http("destroy-instance", ReadWrite)
    }),
    LambdaFunction {
        about: "The command log: every mutating cloud command, who caused it, how it went (append-only).",
        ..http("command-log", Read)
    },
    http("clear-log", ReadWrite),
    LambdaFunction {
        about: "Capacity pools per GPU type: utilisation, previewed and verified host migrations (docs/pools.md).",
        ..http("gpu-types", Read)
    },
    http("get-aggregates", Read),
    http("contract-aggregates", Read),
    http("host-vms", Read),
    LambdaFunction {
        ec2: Ec2Access::Describe,
        ..http("preview-migration", Read)
    },
    slow(LambdaFunction {
        ec2: Ec2Access::Tag,
        ..http("execute-migration", ReadWrite)
    }),
    http("get-target-aggregate", Read),
    http("preview-runpod-launch", Read),
    slow(LambdaFunction {
        ec2: Ec2Access::Launch,
        // The machine is a workshop VM: it must fit the fleet budget.
        settings: &[Setting::Prices],
        about: "Launches an added machine onto a host's runpod pool: the provisioner's launch grant.",
        ..http("execute-runpod-launch", ReadWrite)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Read,
        about: "Network and firewall: the AWS analogues of the capacity tooling's OpenStack/Hyperstack calls (docs/pools.md).",
        ..http("network-show", Read)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Write,
        ..http("port-create", ReadWrite)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Write,
        ..http("server-add-network", ReadWrite)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Read,
        ..http("server-get-uuid", Read)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Read,
        ..http("server-status", Read)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Read,
        ..http("firewall-get-attachments", Read)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Write,
        ..http("firewall-update-attachments", ReadWrite)
    }),
    slow(LambdaFunction {
        network: NetworkAccess::Read,
        ..http("list-images", Read)
    }),
    LambdaFunction {
        trigger: Trigger::Queue,
        // A provisioning request's job queues its machines' launches.
        sends_jobs: true,
        ec2: Ec2Access::Launch,
        timeout_secs: 120,
        memory_mb: 256,
        about: "Launch jobs → EC2 (two-phase, ClientToken-idempotent; docs/provisioning.md). Visibility 720 s = 6 × timeout.",
        ..http("provision", ReadWrite)
    },
    LambdaFunction {
        trigger: Trigger::Schedule,
        sends_jobs: true,
        ec2: Ec2Access::Terminate,
        clouds: CloudAccess::Terminate,
        timeout_secs: 120,
        settings: &[Setting::Prices],
        about: "Ends orphaned instances, settles stuck launches and destroys, sweeps provisioning requests (leases end here).",
        ..http("reconcile", ReadWrite)
    },
    LambdaFunction {
        trigger: Trigger::LogsSubscription,
        timeout_secs: 30,
        about: "CloudWatch Logs subscription on the VMs' log group: a stream <hostname>.<proof> is filed under that VM only if the proof is its own.",
        ..http("logs-subscriber", ReadWrite)
    },
];

/// The function named `name`.
pub fn function(name: &str) -> Option<&'static LambdaFunction> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_served_by_a_listed_http_function_and_back() {
        for route in ROUTES {
            let f = function(route.function).unwrap_or_else(|| panic!("{}", route.function));
            assert_eq!(f.trigger, Trigger::Http, "{}", f.name);
        }
        for f in FUNCTIONS.iter().filter(|f| f.trigger == Trigger::Http) {
            assert!(
                ROUTES.iter().any(|r| r.function == f.name),
                "{} has no route",
                f.name
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let names: std::collections::BTreeSet<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FUNCTIONS.len());
    }

    #[test]
    fn only_admin_functions_hold_the_admin_password() {
        assert!(function("launch").unwrap().needs_admin_password());
        assert!(!function("request-vm").unwrap().needs_admin_password());
        assert!(!function("provision").unwrap().needs_admin_password());
    }
}
