//! Network operations on instances: networks, ports, firewalls, images.

pub mod firewall_get_attachments;
pub mod firewall_update_attachments;
pub mod list_images;
pub mod network_show;
pub mod port_create;
pub mod server_add_network;
pub mod server_get_uuid;
pub mod server_status;
mod views;
