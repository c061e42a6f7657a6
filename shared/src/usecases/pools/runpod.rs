//! Launching a machine of a host's instance type into the host's runpod pool.

use super::*;

/// A launch onto a host's runpod pool: an added machine of the host's instance type with the
/// given image.
pub struct RunpodPlan {
    pub host: Host,
    pub pool: String,
    pub image_id: String,
    pub image_name: String,
    /// The equivalent command; the machine's agent token (minted at launch) appears as
    /// `****` in both forms, so a preview never carries a secret.
    pub command: String,
}

/// A requested launch onto a host's runpod pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunpodLaunch {
    pub hostname: String,
    pub image_id: String,
    pub image_name: String,
}

pub async fn runpod_plan(state: Capacity<'_>, launch: &RunpodLaunch) -> Result<RunpodPlan> {
    let hostname = launch.hostname.as_str();
    let image_id = launch.image_id.as_str();
    let image_name = launch.image_name.as_str();
    let id_ok = image_id.len() <= 32
        && image_id
            .strip_prefix("ami-")
            .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !id_ok {
        return Err(Error::validation(
            "image_id must be an AMI id such as ami-0123abcd",
        ));
    }
    if image_name.chars().count() > 128 || image_name.chars().any(char::is_control) {
        return Err(Error::validation(
            "image_name must be at most 128 characters",
        ));
    }
    let (host, pools) = host(state, hostname).await?;
    let pool = pools
        .iter()
        .find(|p| p.gpu_type == host.gpu_type && p.kind == "runpod")
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("{}-runpod", host.gpu_type));
    let command = format!(
        "aws ec2 run-instances --image-id {image_id} --instance-type {} --count 1 --metadata-options HttpTokens=required --tag-specifications 'ResourceType=instance,Tags=[{{Key=gpufleet:deployment,Value={}}},{{Key={TAG_POOL},Value={pool}}}]' --user-data <gpufleet bootstrap: GPUFLEET_AGENT_TOKEN=****>",
        host.instance_type, state.config.deployment
    );
    Ok(RunpodPlan {
        host,
        pool,
        image_id: image_id.to_string(),
        image_name: image_name.to_string(),
        command,
    })
}

/// A runpod launch under way.
pub struct RunpodLaunched {
    /// The new fleet VM's hostname.
    pub vm_id: String,
    pub instance_id: String,
    pub plan: RunpodPlan,
}

/// `POST /api/execute-runpod-launch`: records a new fleet VM in the host's runpod pool (the
/// record first, as every launch), launches it with the image, tags its pool.
pub async fn runpod_launch(state: Capacity<'_>, launch: &RunpodLaunch) -> Result<RunpodLaunched> {
    use crate::domain::{TokenHash, VmChange, VmToken};
    use crate::ports::{LaunchError, LaunchSpec};
    let plan = runpod_plan(state, launch).await?;
    let api_url = state
        .config
        .api_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("GPUFLEET_API_URL is not configured"))?;
    let now = state.clock.now_millis();
    // A runpod machine is a workshop VM too: it must fit the fleet budget.
    crate::usecases::costs::check_fleet_budget(
        state.store,
        state.compute,
        state.config,
        crate::usecases::costs::FleetLaunch {
            count: 1,
            instance_type: &plan.host.instance_type,
            market: Market::OnDemand,
        },
        now,
    )
    .await?;
    let hostname = crate::usecases::admin::new_hostname(&state.config.vm_prefix);
    let token = VmToken::generate();
    state
        .store
        .insert_vm(&Vm::new(
            hostname.clone(),
            TokenHash::of(token.as_str()),
            now,
        ))
        .await?;
    state
        .store
        .move_host(&hostname, None, &plan.pool, now)
        .await?;
    let spec = LaunchSpec {
        hostname: hostname.clone(),
        token,
        allocator_url: api_url,
        operation_id: format!("runpod-{}", plan.host.hostname),
        client_token: crate::usecases::provisioning::client_token(
            &format!("runpod-{}", plan.host.hostname),
            &hostname,
            Market::OnDemand,
        ),
        market: Market::OnDemand,
        instance_type: Some(plan.host.instance_type.clone()),
        lease: None,
        image: Some(plan.image_id.clone()),
        pool: Some(plan.pool.clone()),
    };
    let instance_id = match state.compute.launch(&spec).await {
        Ok(id) => id,
        Err(LaunchError::Other(e)) => return Err(e),
        Err(e) => {
            let reason = format!("launch refused: {e}");
            state
                .store
                .update_vm(
                    &hostname,
                    &VmChange::Failed(reason.clone()),
                    state.clock.now_millis(),
                )
                .await?;
            return Err(match e {
                LaunchError::Rejected(_) => Error::validation(reason),
                _ => Error::Unavailable(reason),
            });
        }
    };
    let price = crate::usecases::costs::launch_price(
        state.compute,
        state.config,
        &plan.host.instance_type,
        Market::OnDemand,
    )
    .await;
    state
        .store
        .update_vm(
            &hostname,
            &VmChange::Launched {
                instance_id: instance_id.clone(),
                price,
                owner: None,
            },
            state.clock.now_millis(),
        )
        .await?;
    if let Some(tags) = state.compute.tags() {
        tags.set_tag(&instance_id, TAG_POOL, &plan.pool).await?;
    }
    Ok(RunpodLaunched {
        vm_id: hostname,
        instance_id,
        plan,
    })
}
