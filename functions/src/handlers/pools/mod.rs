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

use shared::usecases::pools::{Migration, RunpodLaunch};

use crate::http::{body_field, ApiError};

/// `{host, source_aggregate, target_aggregate, force?}`.
fn migration(body: &serde_json::Value) -> Result<Migration, ApiError> {
    let force = match body.get("force") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("force must be true or false")),
    };
    Ok(Migration {
        host: body_field(body, "host")?,
        source_pool: body_field(body, "source_aggregate")?,
        target_pool: body_field(body, "target_aggregate")?,
        force,
    })
}

/// `{hostname, image_id, image_name}`.
fn runpod_launch(body: &serde_json::Value) -> Result<RunpodLaunch, ApiError> {
    Ok(RunpodLaunch {
        hostname: body_field(body, "hostname")?,
        image_id: body_field(body, "image_id")?,
        image_name: body_field(body, "image_name")?,
    })
}
