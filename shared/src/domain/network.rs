//! What the network operations answer: networks with their subnets, ports (network
//! interfaces), their attachments to instances, and images this deployment may launch.

/// A network (VPC) with its subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: Option<String>,
    pub cidr_block: Option<String>,
    pub state: Option<String>,
    pub subnets: Vec<Subnet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: Option<String>,
    pub name: Option<String>,
    pub cidr_block: Option<String>,
    pub availability_zone: Option<String>,
}

/// A network interface created for this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub id: Option<String>,
    pub name: String,
    /// The subnet it was created in.
    pub network_id: String,
    pub private_ip: Option<String>,
    pub status: Option<String>,
}

/// A port attached to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAttachment {
    pub instance_id: String,
    pub port_id: String,
    pub attachment_id: Option<String>,
    pub device_index: i32,
}

/// An image this deployment may launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub architecture: Option<String>,
    /// The value of its `gpufleet:image` tag, if tagged.
    pub kind: Option<String>,
    pub state: Option<String>,
    pub region: String,
}
