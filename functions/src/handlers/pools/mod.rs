//! Capacity pools: GPU types, aggregates, hosts, migrations between pools, launches into a pool.

pub mod contract_aggregates;
pub mod execute_migration;
pub mod execute_runpod_launch;
pub mod get_aggregates;
pub mod get_target_aggregate;
pub mod gpu_types;
pub mod host_vms;
pub mod preview_migration;
pub mod preview_runpod_launch;
mod views;

use serde::Deserialize;
use shared::usecases::pools::{Migration, RunpodLaunch};
use utoipa::ToSchema;

use crate::http::{text_field, ApiError, RequiredText};

/// A move of a host between pools.
#[derive(Deserialize, ToSchema)]
pub struct MigrationRequest {
    /// The host's hostname (trimmed; at most 256 bytes).
    #[schema(value_type = RequiredText, required = true)]
    host: Option<String>,
    /// The pool it is in now.
    #[schema(value_type = RequiredText, required = true)]
    source_aggregate: Option<String>,
    /// The pool to move it to (same GPU type).
    #[schema(value_type = RequiredText, required = true)]
    target_aggregate: Option<String>,
    /// Move even a host with live allocations (execute only; default false).
    force: Option<bool>,
}

impl MigrationRequest {
    fn migration(self) -> Result<Migration, ApiError> {
        Ok(Migration {
            host: text_field(self.host.as_deref(), "host")?,
            source_pool: text_field(self.source_aggregate.as_deref(), "source_aggregate")?,
            target_pool: text_field(self.target_aggregate.as_deref(), "target_aggregate")?,
            force: self.force.unwrap_or(false),
        })
    }
}

/// A launch of a machine of a host's instance type into the host's runpod pool.
#[derive(Deserialize, ToSchema)]
pub struct RunpodLaunchRequest {
    /// The host whose instance type and GPU type are launched.
    #[schema(value_type = RequiredText, required = true)]
    hostname: Option<String>,
    /// An AMI id such as `ami-0123abcd` (at most 32 characters once trimmed).
    #[schema(value_type = String, required = true, pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*ami-[0-9a-fA-F]{1,28}[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$")]
    image_id: Option<String>,
    /// The image's name: at most 128 characters once trimmed (and 256 bytes), no control
    /// characters.
    #[schema(value_type = String, required = true, pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^\\u0000-\\u001f\\u007f-\\u009f]{0,126}[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$")]
    image_name: Option<String>,
}

impl RunpodLaunchRequest {
    fn launch(self) -> Result<RunpodLaunch, ApiError> {
        Ok(RunpodLaunch {
            hostname: text_field(self.hostname.as_deref(), "hostname")?,
            image_id: text_field(self.image_id.as_deref(), "image_id")?,
            image_name: text_field(self.image_name.as_deref(), "image_name")?,
        })
    }
}
