//! EC2: the fleet's machines (`compute`), the offers and instances API's provider
//! (`cloud`) and network operations on instances (`network`). What they share lives here:
//! the `gpufleet:*` tags that scope everything to one deployment, the request helpers, and
//! how an EC2 error code is classified. The user_data templates sit beside their renderers.

use aws_sdk_ec2::types::{Filter, Tag};

use crate::error::Error;
use crate::ports::LaunchError;

mod cloud;
mod compute;
mod config;
mod network;
mod user_data;

pub use cloud::{Ec2Cloud, PriceTable, PROVIDER};
pub use compute::Ec2Compute;
pub use config::Ec2Config;
pub use network::Ec2Network;
pub use user_data::{
    render_instance_user_data, render_user_data, safe_process_name, safe_user_name, BootOptions,
};

pub const TAG_DEPLOYMENT: &str = "gpufleet:deployment";
pub const TAG_HOSTNAME: &str = "gpufleet:hostname";
pub const TAG_OPERATION: &str = "gpufleet:operation";
/// On machines of a provisioning request: its id, and the latest its lease can end.
pub const TAG_REQUEST: &str = "gpufleet:request";
pub const TAG_LEASE_EXPIRES: &str = "gpufleet:lease-expires";
/// The capacity pool a host is in (mirrors the store).
pub use crate::domain::pools::TAG_POOL;

/// EC2's limit on user_data (before base64).
pub const USER_DATA_LIMIT: usize = 16 * 1024;
/// On instances of the offers API: the record's id, and its owner.
pub const TAG_INSTANCE: &str = "gpufleet:instance";
pub const TAG_OWNER: &str = "gpufleet:owner";
/// Images tagged with this (any value) are offered besides the account's own.
pub const TAG_IMAGE: &str = "gpufleet:image";

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("EC2 {what}: {e}"))
}

/// How a RunInstances error code should be treated (codes, never messages).
pub(crate) fn classify(code: &str, message: String) -> LaunchError {
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientHostCapacity"
        | "SpotMaxPriceTooLow"
        | "MaxSpotInstanceCountExceeded"
        | "InsufficientFreeAddressesInSubnet" => {
            LaunchError::Capacity(format!("{code}: {message}"))
        }
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => {
            LaunchError::Throttled(format!("{code}: {message}"))
        }
        c if c.starts_with("Invalid")
            || c.starts_with("Unsupported")
            || matches!(
                c,
                "UnauthorizedOperation"
                    | "InstanceLimitExceeded"
                    | "VcpuLimitExceeded"
                    | "OptInRequired"
            ) =>
        {
            LaunchError::Rejected(format!("{code}: {message}"))
        }
        _ => LaunchError::Other(Error::Internal(anyhow::anyhow!("EC2 {code}: {message}"))),
    }
}
