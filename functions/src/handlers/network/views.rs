//! The capacity API's JSON for the network operations' typed answers.

use serde_json::{json, Value};
use shared::domain::network::{Image, Network, Port, PortAttachment};

pub fn network(n: &Network) -> Value {
    json!({
        "id": n.id,
        "name": n.name,
        "cidr_block": n.cidr_block,
        "state": n.state,
        "subnets": n.subnets.iter().map(|s| json!({
            "id": s.id,
            "name": s.name,
            "cidr_block": s.cidr_block,
            "availability_zone": s.availability_zone,
        })).collect::<Vec<_>>(),
    })
}

pub fn port(p: &Port) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "network_id": p.network_id,
        "private_ip": p.private_ip,
        "status": p.status,
    })
}

pub fn attachment(a: &PortAttachment) -> Value {
    json!({
        "server_uuid": a.instance_id,
        "port_id": a.port_id,
        "attachment_id": a.attachment_id,
        "device_index": a.device_index,
    })
}

pub fn images(images: &[Image]) -> Value {
    images
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "name": i.name,
                "description": i.description,
                "architecture": i.architecture,
                "type": i.kind,
                "state": i.state,
                "region": i.region,
            })
        })
        .collect()
}
