//! The application state every handler receives: the ports, the config and the admin
//! credentials, built once per process.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::ports::{
    AssignmentNotifier, Clock, ComputeProvider, GpuCloud, JobQueue, NetworkProvider, Store,
};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub compute: Arc<dyn ComputeProvider>,
    pub queue: Arc<dyn JobQueue>,
    pub notifier: Arc<dyn AssignmentNotifier>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub admin: Arc<AdminCredentials>,
    /// The GPU clouds of `/api/v1/offers` and `/api/v1/instances` this process may use.
    pub clouds: Arc<Clouds>,
    /// Network and firewall operations (EC2; unavailable in local mode).
    pub network: Arc<dyn NetworkProvider>,
    /// Participants' collected work (S3 on AWS, files under the data directory locally).
    pub work: Arc<dyn crate::ports::WorkStore>,
}

/// The configured GPU clouds, by name.
#[derive(Default, Clone)]
pub struct Clouds(Vec<Arc<dyn GpuCloud>>);

impl Clouds {
    pub fn new(clouds: Vec<Arc<dyn GpuCloud>>) -> Self {
        Clouds(clouds)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn GpuCloud>> {
        self.0.iter().find(|c| c.name() == name)
    }

    pub fn all(&self) -> &[Arc<dyn GpuCloud>] {
        &self.0
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|c| c.name()).collect()
    }
}

/// HTTP Basic credentials for the admin routes, kept as digests so the comparison is
/// constant-time regardless of the presented lengths.
pub struct AdminCredentials {
    user: [u8; 32],
    password: [u8; 32],
    /// False for functions that serve no admin route: they hold no admin password at all.
    enabled: bool,
}

impl AdminCredentials {
    pub fn new(user: &str, password: &str) -> Self {
        AdminCredentials {
            user: Sha256::digest(user.as_bytes()).into(),
            password: Sha256::digest(password.as_bytes()).into(),
            enabled: true,
        }
    }

    /// Credentials that accept nobody.
    pub fn disabled() -> Self {
        AdminCredentials {
            user: [0; 32],
            password: [0; 32],
            enabled: false,
        }
    }

    pub fn verify(&self, user: &str, password: &str) -> bool {
        let user_ok = Sha256::digest(user.as_bytes()).ct_eq(&self.user);
        let password_ok = Sha256::digest(password.as_bytes()).ct_eq(&self.password);
        self.enabled && bool::from(user_ok & password_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_credentials() {
        let c = AdminCredentials::new("admin", "s3cret");
        assert!(c.verify("admin", "s3cret"));
        assert!(!c.verify("admin", "s3cret "));
        assert!(!c.verify("root", "s3cret"));
        assert!(!c.verify("", ""));
        let nobody = AdminCredentials::disabled();
        assert!(!nobody.verify("", ""));
        assert!(!nobody.verify("admin", "s3cret"));
    }
}
