//! Network and firewall analogues against the EC2 emulator: a VPC described, an interface
//! created and attached, instances found by name, security-group attachments read and set;
//! only this deployment's instances are touched, every change is in the command log.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use serde_json::{json, Value};
use shared::adapters::{CommandLogger, Ec2Network, SqliteStore, SystemClock};

use crate::helpers::*;

struct Net {
    app: TestApp,
    ec2: aws_sdk_ec2::Client,
    vpc_name: String,
    subnet: String,
    sg_main: String,
    sg_extra: String,
    hosts: Vec<(String, String)>,
    foreign: String,
    _dir: tempfile::TempDir,
}

fn tags(kind: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in pairs {
        b = b.tags(Tag::builder().key(*k).value(*v).build());
    }
    b.build()
}

async fn net() -> Net {
    let sdk = crate::helpers::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let deployment = format!("net-{run}");
    let vpc_name = format!("storage-network-{run}");
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc, &[("Name", &vpc_name)]))
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.42.1.0/24")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    let mut groups = Vec::new();
    for name in ["main", "extra"] {
        let sg = ec2
            .create_security_group()
            .group_name(format!("{name}-{run}"))
            .description(name)
            .vpc_id(&vpc_id)
            .send()
            .await
            .unwrap();
        groups.push(sg.group_id().unwrap().to_string());
    }
    let ami = emulator_ami(&ec2).await;
    let mut hosts = Vec::new();
    for (n, owned) in [(1, true), (2, true), (3, false)] {
        let name = format!("gpu-host-{run}-{n}");
        let mut t = vec![("Name", name.as_str())];
        if owned {
            t.push(("gpufleet:deployment", deployment.as_str()));
        }
        let out = ec2
            .run_instances()
            .image_id(&ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::G4dnXlarge)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet)
            .security_group_ids(&groups[0])
            .tag_specifications(tags(ResourceType::Instance, &t))
            .send()
            .await
            .unwrap();
        hosts.push((name, out.instances()[0].instance_id().unwrap().to_string()));
    }
    let foreign = hosts.pop().unwrap().1;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let network = Ec2Network::new(
        ec2.clone(),
        &deployment,
        "us-east-1",
        CommandLogger::new(store.clone(), Arc::new(SystemClock)),
    );
    let app = spawn_app_with(Options {
        store: Some(store),
        network: Some(Arc::new(network)),
        ..Options::default()
    })
    .await;
    Net {
        app,
        ec2,
        vpc_name,
        subnet,
        sg_main: groups[0].clone(),
        sg_extra: groups[1].clone(),
        hosts,
        foreign,
        _dir: dir,
    }
}

impl Net {
    async fn post(&self, admin: bool, key: &str, path: &str, body: Value) -> (u16, Value) {
        let mut req = self.app.client.post(self.app.url(path)).json(&body);
        req = if admin {
            self.app.admin(req)
        } else {
            req.bearer_auth(key)
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn groups_of(&self, id: &str) -> BTreeSet<String> {
        let d = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
        d.reservations()[0].instances()[0]
            .security_groups()
            .iter()
            .map(|g| g.group_id().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn networks_interfaces_and_names_on_the_emulator() {
    let n = net().await;
    let key = n.app.api_key("ops", 8).await;
    let (host1, id1) = n.hosts[0].clone();

    let (s, shown) = n
        .post(
            false,
            &key,
            "/api/openstack/network/show",
            json!({"network_name": n.vpc_name}),
        )
        .await;
    assert_eq!(s, 200, "{shown}");
    assert_eq!(shown["status"], "success");
    assert_eq!(shown["data"]["cidr_block"], "10.42.0.0/16");
    assert_eq!(shown["data"]["subnets"][0]["id"], n.subnet.as_str());
    let (s, _) = n
        .post(
            false,
            &key,
            "/api/openstack/network/show",
            json!({"network_name": "no-such-net"}),
        )
        .await;
    assert_eq!(s, 404);

    // Creating and attaching need an admin.
    let (s, _) = n
        .post(
            false,
            &key,
            "/api/openstack/port/create",
            json!({"network_id": n.subnet, "port_name": "p"}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, port) = n
        .post(
            true,
            "",
            "/api/openstack/port/create",
            json!({"network_id": n.subnet, "port_name": "storage-port-001"}),
        )
        .await;
    assert_eq!(s, 200, "{port}");
    let eni = port["data"]["id"].as_str().unwrap().to_string();
    let described = n
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .unwrap();
    let eni_tags: Vec<(String, String)> = described.network_interfaces()[0]
        .tag_set()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert!(
        eni_tags.iter().any(|(k, _)| k == "gpufleet:deployment"),
        "{eni_tags:?}"
    );

    let (s, attached) = n
        .post(
            true,
            "",
            "/api/openstack/server/add-network",
            json!({"server_uuid": id1, "port_id": eni}),
        )
        .await;
    assert_eq!(s, 200, "{attached}");
    assert_eq!(attached["data"]["device_index"], 1);
    let described = n
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.network_interfaces()[0]
            .attachment()
            .and_then(|a| a.instance_id()),
        Some(id1.as_str())
    );
    // Another deployment's instance, or an interface that is not ours: not found, unchanged.
    let (s, _) = n
        .post(
            true,
            "",
            "/api/openstack/server/add-network",
            json!({"server_uuid": n.foreign, "port_id": eni}),
        )
        .await;
    assert_eq!(s, 404);
    let foreign_eni = n
        .ec2
        .create_network_interface()
        .subnet_id(&n.subnet)
        .send()
        .await
        .unwrap()
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_string();
    let (s, _) = n
        .post(
            true,
            "",
            "/api/openstack/server/add-network",
            json!({"server_uuid": n.hosts[1].1, "port_id": foreign_eni}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = n
        .post(
            true,
            "",
            "/api/openstack/server/add-network",
            json!({"server_uuid": "i-$(id)", "port_id": eni}),
        )
        .await;
    assert_eq!(s, 400);

    let (s, uuid) = n
        .post(
            false,
            &key,
            "/api/openstack/server/get-uuid",
            json!({"server_name": host1}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(uuid["data"]["server_uuid"], id1.as_str());
    let foreign_name = host1.replace("-1", "-3");
    let (s, _) = n
        .post(
            false,
            &key,
            "/api/openstack/server/get-uuid",
            json!({"server_name": foreign_name}),
        )
        .await;
    assert_eq!(s, 404, "another deployment's instance is not found");
    let (s, status) = n
        .post(
            false,
            &key,
            "/api/openstack/server/status",
            json!({"server_uuid": id1}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(status["data"]["status"], "running");

    let log = n
        .app
        .state
        .store
        .list_commands(10, None, None)
        .await
        .unwrap();
    let commands: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.command.as_str(), e.user.as_str()))
        .collect();
    assert!(
        commands.iter().any(
            |(c, u)| c.starts_with("aws ec2 create-network-interface --subnet-id")
                && *u == "admin:admin"
        ),
        "{commands:?}"
    );
    assert!(commands.iter().any(|(c, u)| *c == format!("aws ec2 attach-network-interface --instance-id {id1} --network-interface-id {eni} --device-index 1") && *u == "admin:admin"), "{commands:?}");
}

#[tokio::test]
async fn security_group_attachments_are_read_and_set_on_own_instances_only() {
    let n = net().await;
    let key = n.app.api_key("ops", 8).await;
    let (id1, id2) = (n.hosts[0].1.clone(), n.hosts[1].1.clone());
    let get = |sg: &str| json!({"firewall_id": sg});
    let (s, a) = n
        .post(
            false,
            &key,
            "/api/hyperstack/firewall/get-attachments",
            get(&n.sg_main),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let mut want = vec![id1.clone(), id2.clone()];
    want.sort();
    assert_eq!(
        a["data"]["vm_ids"],
        json!(want),
        "the foreign instance is not listed"
    );

    let (s, u) = n
        .post(
            true,
            "",
            "/api/hyperstack/firewall/update-attachments",
            json!({"firewall_id": n.sg_extra, "vm_ids": [id1]}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["data"]["vm_ids"], json!([id1]));
    assert_eq!(
        n.groups_of(&id1).await,
        BTreeSet::from([n.sg_main.clone(), n.sg_extra.clone()]),
        "added, the other group kept"
    );
    assert_eq!(n.groups_of(&id2).await, BTreeSet::from([n.sg_main.clone()]));

    let (s, _) = n
        .post(
            true,
            "",
            "/api/hyperstack/firewall/update-attachments",
            json!({"firewall_id": n.sg_extra, "vm_ids": []}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(n.groups_of(&id1).await, BTreeSet::from([n.sg_main.clone()]));
    // An instance's only group cannot be taken away; a foreign instance is not ours.
    let (s, _) = n
        .post(
            true,
            "",
            "/api/hyperstack/firewall/update-attachments",
            json!({"firewall_id": n.sg_main, "vm_ids": [id2]}),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(n.groups_of(&id1).await, BTreeSet::from([n.sg_main.clone()]));
    let (s, _) = n
        .post(
            true,
            "",
            "/api/hyperstack/firewall/update-attachments",
            json!({"firewall_id": n.sg_extra, "vm_ids": [n.foreign]}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        n.groups_of(&n.foreign).await,
        BTreeSet::from([n.sg_main.clone()])
    );
    let (s, _) = n
        .post(
            false,
            &key,
            "/api/hyperstack/firewall/update-attachments",
            json!({"firewall_id": n.sg_extra, "vm_ids": [id1]}),
        )
        .await;
    assert_eq!(s, 401, "changes need an admin");

    let log = n
        .app
        .state
        .store
        .list_commands(20, None, None)
        .await
        .unwrap();
    assert!(log.iter().any(|e| e.command
        == format!(
            "aws ec2 modify-instance-attribute --instance-id {id1} --groups {} {}",
            n.sg_main, n.sg_extra
        )
        && e.user == "admin:admin"));

    // Images: the account's own and tagged ones; none for another region.
    let image = n
        .ec2
        .create_image()
        .instance_id(&id1)
        .name(format!("runpod-ubuntu-{}", &id1[2..]))
        .tag_specifications(tags(ResourceType::Image, &[("gpufleet:image", "runpod")]))
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_string();
    let resp = n
        .app
        .client
        .get(n.app.url("/api/hyperstack/images?region=us-east-1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let images: Value = resp.json().await.unwrap();
    let found = images["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == image.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{image} listed: {images}"));
    assert_eq!(found["type"], "runpod");
    let resp = n
        .app
        .client
        .get(n.app.url("/api/hyperstack/images?region=eu-west-1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["data"], json!([]));
}

#[tokio::test]
async fn local_mode_says_network_operations_need_aws() {
    let app = spawn_app().await;
    let key = app.api_key("ops", 8).await;
    let resp = app
        .client
        .post(app.url("/api/openstack/network/show"))
        .bearer_auth(&key)
        .json(&json!({"network_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("need AWS"),
        "{body}"
    );
}
