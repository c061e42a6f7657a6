//! Every Lambda function of a deployment: what invokes it and which AWS services its handler
//! uses. The Lambda wiring builds only those adapters (and reads only their configuration),
//! and the template check (tests) proves `template.yaml` gives each function exactly these
//! permissions and the environment its configuration needs.

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

#[derive(Debug, Clone, Copy)]
pub struct LambdaFunction {
    /// The binary in `functions/src/bin/` and the function's name in the template.
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
}

impl LambdaFunction {
    /// Serves at least one route an admin may call, so it needs the admin password.
    pub fn needs_admin_password(&self) -> bool {
        ROUTES.iter().any(|r| {
            r.function == self.name
                && matches!(
                    r.access,
                    Access::Admin | Access::ApiKeyOrAdmin | Access::VmOrAdmin
                )
        })
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
    }
}

use StoreAccess::{Read, ReadWrite};

pub static FUNCTIONS: &[LambdaFunction] = &[
    http("home", Read),
    http("request-vm", ReadWrite),
    http("seat-page", Read),
    http("seat-command", ReadWrite),
    http("seat-move", ReadWrite),
    http("reissue-seat", ReadWrite),
    http("move-seat", ReadWrite),
    http("vm-startup", Read),
    http("unassigned-vms-count", Read),
    http("update-inuse-status", ReadWrite),
    http("gpu-health", ReadWrite),
    LambdaFunction {
        ec2: Ec2Access::Describe,
        ..http("report-vm-status", ReadWrite)
    },
    http("list-vm-status", Read),
    http("get-vm-status", Read),
    LambdaFunction {
        sends_jobs: true,
        ..http("launch", ReadWrite)
    },
    LambdaFunction {
        ec2: Ec2Access::Terminate,
        ..http("destroy", ReadWrite)
    },
    http("get-operation", Read),
    // Reconciling sweeps provisioning requests, which re-queues lost ones.
    LambdaFunction {
        ec2: Ec2Access::Terminate,
        sends_jobs: true,
        clouds: CloudAccess::Terminate,
        ..http("reconcile-now", ReadWrite)
    },
    http("admin-dashboard", Read),
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
        sends_jobs: true,
        ..http("create-request", ReadWrite)
    },
    http("list-requests", Read),
    http("get-request", Read),
    LambdaFunction {
        ec2: Ec2Access::Terminate,
        ..http("release-request", ReadWrite)
    },
    http("create-api-key", ReadWrite),
    http("list-api-keys", Read),
    http("revoke-api-key", ReadWrite),
    // The offers and instances API. Every route counts requests for its rate limit, so
    // even the listings write to the table.
    LambdaFunction {
        clouds: CloudAccess::Read,
        ..http("list-providers", ReadWrite)
    },
    LambdaFunction {
        clouds: CloudAccess::Read,
        ..http("search-offers", ReadWrite)
    },
    http("list-instances", ReadWrite),
    LambdaFunction {
        clouds: CloudAccess::Read,
        ..http("get-instance", ReadWrite)
    },
    LambdaFunction {
        clouds: CloudAccess::Create,
        ..http("create-instance", ReadWrite)
    },
    LambdaFunction {
        clouds: CloudAccess::Start,
        ..http("start-instance", ReadWrite)
    },
    LambdaFunction {
        clouds: CloudAccess::Stop,
        ..http("stop-instance", ReadWrite)
    },
    LambdaFunction {
        clouds: CloudAccess::Terminate,
        ..http("destroy-instance", ReadWrite)
    },
    http("command-log", Read),
    http("clear-log", ReadWrite),
    // Capacity pools (docs/pools.md).
    http("gpu-types", Read),
    http("get-aggregates", Read),
    http("contract-aggregates", Read),
    http("host-vms", Read),
    LambdaFunction {
        ec2: Ec2Access::Describe,
        ..http("preview-migration", Read)
    },
    LambdaFunction {
        ec2: Ec2Access::Tag,
        ..http("execute-migration", ReadWrite)
    },
    http("get-target-aggregate", Read),
    http("preview-runpod-launch", Read),
    // Launches a machine (the provisioner's grant) and tags its pool.
    LambdaFunction {
        ec2: Ec2Access::Launch,
        ..http("execute-runpod-launch", ReadWrite)
    },
    // Network and firewall (the AWS analogues of the capacity tooling's OpenStack calls).
    LambdaFunction {
        network: NetworkAccess::Read,
        ..http("network-show", Read)
    },
    LambdaFunction {
        network: NetworkAccess::Write,
        ..http("port-create", ReadWrite)
    },
    LambdaFunction {
        network: NetworkAccess::Write,
        ..http("server-add-network", ReadWrite)
    },
    LambdaFunction {
        network: NetworkAccess::Read,
        ..http("server-get-uuid", Read)
    },
    LambdaFunction {
        network: NetworkAccess::Read,
        ..http("server-status", Read)
    },
    LambdaFunction {
        network: NetworkAccess::Read,
        ..http("firewall-get-attachments", Read)
    },
    LambdaFunction {
        network: NetworkAccess::Write,
        ..http("firewall-update-attachments", ReadWrite)
    },
    LambdaFunction {
        network: NetworkAccess::Read,
        ..http("list-images", Read)
    },
    LambdaFunction {
        name: "provision",
        trigger: Trigger::Queue,
        store: ReadWrite,
        // A provisioning request's job queues its machines' launches.
        sends_jobs: true,
        checks_queue: false,
        ec2: Ec2Access::Launch,
        clouds: CloudAccess::None,
        network: NetworkAccess::None,
    },
    LambdaFunction {
        name: "reconcile",
        trigger: Trigger::Schedule,
        store: ReadWrite,
        sends_jobs: true,
        checks_queue: false,
        ec2: Ec2Access::Terminate,
        clouds: CloudAccess::Terminate,
        network: NetworkAccess::None,
    },
    LambdaFunction {
        name: "logs-subscriber",
        trigger: Trigger::LogsSubscription,
        store: ReadWrite,
        sends_jobs: false,
        checks_queue: false,
        ec2: Ec2Access::None,
        clouds: CloudAccess::None,
        network: NetworkAccess::None,
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
    fn names_are_unique_and_match_a_binary() {
        let bins = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin")).unwrap();
        let mut bins: Vec<String> = bins
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .collect();
        bins.sort();
        let mut names: Vec<String> = FUNCTIONS.iter().map(|f| f.name.to_string()).collect();
        names.sort();
        assert_eq!(names, bins);
    }

    #[test]
    fn only_admin_functions_hold_the_admin_password() {
        assert!(function("launch").unwrap().needs_admin_password());
        assert!(!function("request-vm").unwrap().needs_admin_password());
        assert!(!function("provision").unwrap().needs_admin_password());
    }
}
