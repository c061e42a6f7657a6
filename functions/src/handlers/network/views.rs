//! The capacity API's JSON for the network operations' typed answers (the `data` of the
//! capacity envelope).

use serde::Serialize;
use shared::domain::network::{Image, Network, Port, PortAttachment};
use utoipa::ToSchema;

/// A subnet of a network.
#[derive(Serialize, ToSchema)]
pub struct SubnetView {
    pub id: Option<String>,
    /// Its Name tag.
    pub name: Option<String>,
    pub cidr_block: Option<String>,
    pub availability_zone: Option<String>,
}

/// A network (VPC) with its subnets.
#[derive(Serialize, ToSchema)]
pub struct NetworkView {
    /// `vpc-…`.
    pub id: String,
    /// Its Name tag.
    pub name: Option<String>,
    pub cidr_block: Option<String>,
    pub state: Option<String>,
    pub subnets: Vec<SubnetView>,
}

impl NetworkView {
    pub fn new(n: &Network) -> Self {
        NetworkView {
            id: n.id.clone(),
            name: n.name.clone(),
            cidr_block: n.cidr_block.clone(),
            state: n.state.clone(),
            subnets: n
                .subnets
                .iter()
                .map(|s| SubnetView {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    cidr_block: s.cidr_block.clone(),
                    availability_zone: s.availability_zone.clone(),
                })
                .collect(),
        }
    }
}

/// A network interface created for this deployment.
#[derive(Serialize, ToSchema)]
pub struct PortView {
    /// `eni-…`.
    pub id: Option<String>,
    pub name: String,
    /// The subnet it was created in.
    pub network_id: String,
    pub private_ip: Option<String>,
    pub status: Option<String>,
}

impl PortView {
    pub fn new(p: &Port) -> Self {
        PortView {
            id: p.id.clone(),
            name: p.name.clone(),
            network_id: p.network_id.clone(),
            private_ip: p.private_ip.clone(),
            status: p.status.clone(),
        }
    }
}

/// A network interface attached to an instance.
#[derive(Serialize, ToSchema)]
pub struct PortAttachmentView {
    /// The instance id.
    pub server_uuid: String,
    pub port_id: String,
    pub attachment_id: Option<String>,
    pub device_index: i32,
}

impl PortAttachmentView {
    pub fn new(a: &PortAttachment) -> Self {
        PortAttachmentView {
            server_uuid: a.instance_id.clone(),
            port_id: a.port_id.clone(),
            attachment_id: a.attachment_id.clone(),
            device_index: a.device_index,
        }
    }
}

/// An image this deployment may launch.
#[derive(Serialize, ToSchema)]
pub struct LaunchableImageView {
    /// `ami-…`.
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub architecture: Option<String>,
    /// The value of its `gpufleet:image` tag, if tagged.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub state: Option<String>,
    pub region: String,
}

pub fn images(images: &[Image]) -> Vec<LaunchableImageView> {
    images
        .iter()
        .map(|i| LaunchableImageView {
            id: i.id.clone(),
            name: i.name.clone(),
            description: i.description.clone(),
            architecture: i.architecture.clone(),
            kind: i.kind.clone(),
            state: i.state.clone(),
            region: i.region.clone(),
        })
        .collect()
}

/// The deployment's instances a security group is attached to.
#[derive(Serialize, ToSchema)]
pub struct FirewallAttachmentsView {
    pub firewall_id: String,
    /// Instance ids, sorted.
    pub vm_ids: Vec<String>,
}
