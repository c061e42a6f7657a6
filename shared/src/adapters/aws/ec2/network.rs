//! Network and firewall operations on EC2 (the AWS analogues of the capacity tooling's
//! OpenStack/Hyperstack calls): VPC/subnet descriptions, network interfaces (ENIs) created
//! with the deployment's tag and attached to the deployment's instances, security-group
//! attachments, usable images. Every change is in the command log; only instances carrying
//! this deployment's tag are ever changed.

use async_trait::async_trait;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

use super::{filter, internal, TAG_DEPLOYMENT, TAG_IMAGE};
use crate::adapters::audited::CommandLogger;
use crate::domain::network::{Image, Network, Port, PortAttachment, Subnet};
use crate::error::{Error, Result};
use crate::ports::NetworkProvider;

pub struct Ec2Network {
    client: Client,
    deployment: String,
    region: String,
    logger: CommandLogger,
}

fn name_tag(tags: &[Tag]) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// Ids reach EC2 only in their documented shape (`vpc-…`, `subnet-…`, …).
fn checked<'a>(id: &'a str, prefix: &str, what: &str) -> Result<&'a str> {
    let ok = id.len() <= 64
        && id
            .strip_prefix(prefix)
            .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(id)
    } else {
        Err(Error::validation(format!(
            "{what} must look like {prefix}0123abcd"
        )))
    }
}

impl Ec2Network {
    pub fn new(client: Client, deployment: &str, region: &str, logger: CommandLogger) -> Self {
        Ec2Network {
            client,
            deployment: deployment.to_string(),
            region: region.to_string(),
            logger,
        }
    }

    /// This deployment's live instances matching `extra`, with their security groups.
    async fn ours(&self, extra: Vec<Filter>) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
        let mut filters = vec![
            filter(&format!("tag:{TAG_DEPLOYMENT}"), &[&self.deployment]),
            filter(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ),
        ];
        filters.extend(extra);
        let out = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| internal("DescribeInstances", DisplayErrorContext(e)))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect())
    }

    async fn require_ours(&self, instance_id: &str) -> Result<aws_sdk_ec2::types::Instance> {
        let id = checked(instance_id, "i-", "server_uuid")?;
        self.ours(vec![filter("instance-id", &[id])])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("instance {instance_id} of this deployment")))
    }

    async fn logged<T>(
        &self,
        command: String,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.logger.run(command, call, |_| None).await
    }

    fn groups_of(i: &aws_sdk_ec2::types::Instance) -> Vec<String> {
        i.security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect()
    }
}

#[async_trait]
impl NetworkProvider for Ec2Network {
    async fn show_network(&self, name_or_id: &str) -> Result<Network> {
        let by = if name_or_id.starts_with("vpc-") {
            filter("vpc-id", &[checked(name_or_id, "vpc-", "network_name")?])
        } else {
            filter("tag:Name", &[name_or_id])
        };
        let vpcs = self
            .client
            .describe_vpcs()
            .filters(by)
            .send()
            .await
            .map_err(|e| internal("DescribeVpcs", DisplayErrorContext(e)))?;
        let vpc = vpcs
            .vpcs()
            .first()
            .ok_or_else(|| Error::NotFound(format!("network {name_or_id}")))?;
        let vpc_id = vpc.vpc_id().unwrap_or_default();
        let subnets = self
            .client
            .describe_subnets()
            .filters(filter("vpc-id", &[vpc_id]))
            .send()
            .await
            .map_err(|e| internal("DescribeSubnets", DisplayErrorContext(e)))?;
        Ok(Network {
            id: vpc_id.to_string(),
            name: name_tag(vpc.tags()),
            cidr_block: vpc.cidr_block().map(str::to_string),
            state: vpc.state().map(|s| s.as_str().to_string()),
            subnets: subnets
                .subnets()
                .iter()
                .map(|s| Subnet {
                    id: s.subnet_id().map(str::to_string),
                    name: name_tag(s.tags()),
                    cidr_block: s.cidr_block().map(str::to_string),
                    availability_zone: s.availability_zone().map(str::to_string),
                })
                .collect(),
        })
    }

    async fn create_port(&self, subnet_id: &str, name: &str) -> Result<Port> {
        let subnet = checked(subnet_id, "subnet-", "network_id")?;
        let command = format!(
            "aws ec2 create-network-interface --subnet-id {subnet} --tag-specifications 'ResourceType=network-interface,Tags=[{{Key={TAG_DEPLOYMENT},Value={}}},{{Key=Name,Value={name}}}]'",
            self.deployment
        );
        let call = async {
            let out = self
                .client
                .create_network_interface()
                .subnet_id(subnet)
                .description(name)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::NetworkInterface)
                        .tags(
                            Tag::builder()
                                .key(TAG_DEPLOYMENT)
                                .value(&self.deployment)
                                .build(),
                        )
                        .tags(Tag::builder().key("Name").value(name).build())
                        .build(),
                )
                .send()
                .await
                .map_err(|e| internal("CreateNetworkInterface", DisplayErrorContext(e)))?;
            let eni = out
                .network_interface()
                .ok_or_else(|| internal("CreateNetworkInterface", "no interface returned"))?;
            Ok(Port {
                id: eni.network_interface_id().map(str::to_string),
                name: name.to_string(),
                network_id: subnet.to_string(),
                private_ip: eni.private_ip_address().map(str::to_string),
                status: eni.status().map(|s| s.as_str().to_string()),
            })
        };
        self.logged(command, call).await
    }

    async fn attach_port(&self, instance_id: &str, port_id: &str) -> Result<PortAttachment> {
        let port = checked(port_id, "eni-", "port_id")?;
        let instance = self.require_ours(instance_id).await?;
        // The interface must be ours too.
        let enis = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(port)
            .send()
            .await
            .map_err(|e| internal("DescribeNetworkInterfaces", DisplayErrorContext(e)))?;
        let ours = enis.network_interfaces().first().is_some_and(|e| {
            e.tag_set().iter().any(|t| {
                t.key() == Some(TAG_DEPLOYMENT) && t.value() == Some(self.deployment.as_str())
            })
        });
        if !ours {
            return Err(Error::NotFound(format!(
                "port {port_id} of this deployment"
            )));
        }
        let device_index = instance
            .network_interfaces()
            .iter()
            .filter_map(|n| n.attachment().and_then(|a| a.device_index()))
            .max()
            .map_or(1, |m| m + 1);
        let command = format!(
            "aws ec2 attach-network-interface --instance-id {instance_id} --network-interface-id {port} --device-index {device_index}"
        );
        let call = async {
            let out = self
                .client
                .attach_network_interface()
                .instance_id(instance_id)
                .network_interface_id(port)
                .device_index(device_index)
                .send()
                .await
                .map_err(|e| internal("AttachNetworkInterface", DisplayErrorContext(e)))?;
            Ok(PortAttachment {
                instance_id: instance_id.to_string(),
                port_id: port.to_string(),
                attachment_id: out.attachment_id().map(str::to_string),
                device_index,
            })
        };
        self.logged(command, call).await
    }

    async fn instance_by_name(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .ours(vec![filter("tag:Name", &[name])])
            .await?
            .first()
            .and_then(|i| i.instance_id().map(str::to_string)))
    }

    async fn instance_state(&self, instance_id: &str) -> Result<Option<String>> {
        let id = checked(instance_id, "i-", "server_uuid")?;
        Ok(self
            .ours(vec![filter("instance-id", &[id])])
            .await?
            .first()
            .and_then(|i| i.state().and_then(|s| s.name()))
            .map(|n| n.as_str().to_string()))
    }

    async fn firewall_attachments(&self, group_id: &str) -> Result<Vec<String>> {
        let group = checked(group_id, "sg-", "firewall_id")?;
        let mut ids: Vec<String> = self
            .ours(vec![filter("instance.group-id", &[group])])
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn set_firewall_attachments(
        &self,
        group_id: &str,
        instance_ids: &[String],
    ) -> Result<Vec<String>> {
        let group = checked(group_id, "sg-", "firewall_id")?.to_string();
        for id in instance_ids {
            checked(id, "i-", "vm_ids")?;
        }
        let ours = self.ours(vec![]).await?;
        for wanted in instance_ids {
            if !ours
                .iter()
                .any(|i| i.instance_id() == Some(wanted.as_str()))
            {
                return Err(Error::NotFound(format!(
                    "instance {wanted} of this deployment"
                )));
            }
        }
        for instance in &ours {
            let Some(id) = instance.instance_id() else {
                continue;
            };
            let mut groups = Self::groups_of(instance);
            let has = groups.contains(&group);
            let want = instance_ids.iter().any(|w| w == id);
            if has == want {
                continue;
            }
            if want {
                groups.push(group.clone());
            } else {
                groups.retain(|g| g != &group);
                if groups.is_empty() {
                    return Err(Error::Conflict(format!(
                        "{group_id} is the only security group of {id}; an instance needs at least one"
                    )));
                }
            }
            let command = format!(
                "aws ec2 modify-instance-attribute --instance-id {id} --groups {}",
                groups.join(" ")
            );
            let call = async {
                self.client
                    .modify_instance_attribute()
                    .instance_id(id)
                    .set_groups(Some(groups.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| internal("ModifyInstanceAttribute", DisplayErrorContext(e)))
            };
            self.logged(command, call).await?;
        }
        self.firewall_attachments(group_id).await
    }

    async fn images(&self, region: Option<&str>) -> Result<Vec<Image>> {
        if region.is_some_and(|r| r != self.region) {
            return Ok(Vec::new());
        }
        let mut images = Vec::new();
        for request in [
            self.client.describe_images().owners("self"),
            self.client
                .describe_images()
                .filters(filter("tag-key", &[TAG_IMAGE])),
        ] {
            let out = request
                .send()
                .await
                .map_err(|e| internal("DescribeImages", DisplayErrorContext(e)))?;
            images.extend(out.images().to_vec());
        }
        let mut seen = std::collections::HashSet::new();
        Ok(images
            .iter()
            .filter(|i| seen.insert(i.image_id().unwrap_or_default().to_string()))
            .map(|i| Image {
                id: i.image_id().map(str::to_string),
                name: i.name().map(str::to_string),
                description: i.description().map(str::to_string),
                architecture: i.architecture().map(|a| a.as_str().to_string()),
                kind: i
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(TAG_IMAGE))
                    .and_then(|t| t.value())
                    .map(str::to_string),
                state: i.state().map(|s| s.as_str().to_string()),
                region: self.region.clone(),
            })
            .collect())
    }
}
