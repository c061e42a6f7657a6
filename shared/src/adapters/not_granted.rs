//! Stand-ins for the ports a Lambda function is not granted. Each function gets only the
//! adapters (and IAM permissions) its handler uses; the others are these, so a call that
//! should never happen fails loudly as an internal error instead of reaching AWS.

use async_trait::async_trait;

use crate::domain::Job;
use crate::error::{Error, Result};
use crate::ports::{ComputeProvider, Instance, JobQueue, LaunchError, LaunchSpec, MachineTags};

/// A port this function was not given; the string names it in the error.
pub struct NotGranted(pub &'static str);

impl NotGranted {
    fn error(&self) -> Error {
        Error::Internal(anyhow::anyhow!(
            "{} is not available to this function (see functions::lambda::FUNCTIONS)",
            self.0
        ))
    }
}

#[async_trait]
impl ComputeProvider for NotGranted {
    async fn launch(&self, _spec: &LaunchSpec) -> std::result::Result<String, LaunchError> {
        Err(LaunchError::Other(self.error()))
    }
    async fn find_by_hostname(&self, _hostname: &str) -> Result<Option<Instance>> {
        Err(self.error())
    }
    async fn list_machines(&self) -> Result<Vec<Instance>> {
        Err(self.error())
    }
    async fn terminate(&self, _instance_ids: &[String]) -> Result<Vec<String>> {
        Err(self.error())
    }
    fn tags(&self) -> Option<&dyn MachineTags> {
        Some(self)
    }
}

#[async_trait]
impl MachineTags for NotGranted {
    async fn set_tag(&self, _: &str, _: &str, _: &str) -> Result<()> {
        Err(self.error())
    }
    async fn get_tag(&self, _: &str, _: &str) -> Result<Option<String>> {
        Err(self.error())
    }
}

#[async_trait]
impl JobQueue for NotGranted {
    async fn enqueue(&self, _jobs: &[Job]) -> Result<()> {
        Err(self.error())
    }
    async fn retry_later(&self, _receipt: &str, _delay: std::time::Duration) -> Result<()> {
        Err(self.error())
    }
}

/// Network operations where there is no cloud network (local mode), or for a function not
/// granted them: a 503 saying so.
pub struct NoNetwork(pub &'static str);

#[async_trait]
impl crate::ports::NetworkProvider for NoNetwork {
    async fn show_network(&self, _: &str) -> Result<crate::domain::network::Network> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn create_port(&self, _: &str, _: &str) -> Result<crate::domain::network::Port> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn attach_port(
        &self,
        _: &str,
        _: &str,
    ) -> Result<crate::domain::network::PortAttachment> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn instance_by_name(&self, _: &str) -> Result<Option<String>> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn instance_state(&self, _: &str) -> Result<Option<String>> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn firewall_attachments(&self, _: &str) -> Result<Vec<String>> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn set_firewall_attachments(&self, _: &str, _: &[String]) -> Result<Vec<String>> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn images(&self, _: Option<&str>) -> Result<Vec<crate::domain::network::Image>> {
        Err(Error::Unavailable(self.0.into()))
    }
}

#[async_trait]
impl crate::ports::WorkStore for NotGranted {
    async fn upload_url(
        &self,
        _: &str,
        _: u64,
        _: std::time::Duration,
    ) -> Result<crate::ports::UploadUrl> {
        Err(self.error())
    }
    async fn put(&self, _: &str, _: Vec<u8>) -> Result<()> {
        Err(self.error())
    }
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>> {
        Err(self.error())
    }
    async fn list(&self, _: &str) -> Result<Vec<crate::ports::StoredObject>> {
        Err(self.error())
    }
    async fn delete_prefix(&self, _: &str) -> Result<u64> {
        Err(self.error())
    }
    async fn start_export(&self, _: &str) -> Result<Box<dyn crate::ports::ExportUpload>> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_fails_as_internal() {
        let compute = NotGranted("EC2");
        assert!(matches!(
            compute.list_machines().await,
            Err(Error::Internal(_))
        ));
        assert!(matches!(
            compute.terminate(&[]).await,
            Err(Error::Internal(_))
        ));
        let queue = NotGranted("SQS");
        assert!(matches!(queue.enqueue(&[]).await, Err(Error::Internal(_))));
    }
}
