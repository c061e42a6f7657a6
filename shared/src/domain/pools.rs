//! Capacity pools per GPU type: which GPU an instance type carries, the pool kinds, the
//! configured pools, utilisation figures and where an idle or busy host should go.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The tag that mirrors a host's pool on its EC2 instance.
pub const TAG_POOL: &str = "gpufleet:pool";

/// The kinds of pool (names kept from the system this replaces).
pub const KINDS: [&str; 4] = ["ondemand", "spot", "contracts", "runpod"];

/// The GPU model and count of an EC2 instance type (`None` for types without whole GPUs).
pub fn gpu_of(instance_type: &str) -> Option<(&'static str, u32)> {
    let (family, size) = instance_type.split_once('.')?;
    let model = match family {
        "g4dn" => "T4",
        "g5" => "A10G",
        "g6" | "gr6" => "L4",
        "g6e" => "L40S",
        "p3" | "p3dn" => "V100",
        "p4d" | "p4de" => "A100",
        "p5" | "p5e" | "p5en" => "H100",
        _ => return None,
    };
    let count = match (family, size) {
        ("g4dn", "12xlarge") => 4,
        ("g4dn", "metal") => 8,
        ("g5" | "g6" | "g6e", "12xlarge" | "24xlarge") => 4,
        ("g5" | "g6" | "g6e", "48xlarge") => 8,
        ("p3", "8xlarge") => 4,
        ("p3", "16xlarge") | ("p3dn", _) | ("p4d" | "p4de", _) => 8,
        ("p5" | "p5e" | "p5en", "48xlarge") => 8,
        _ => 1,
    };
    Some((model, count))
}

/// A named set of hosts of one GPU type and one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub gpu_type: String,
    pub kind: String,
    /// The customer a `contracts` pool is reserved for.
    pub tenant: Option<String>,
    pub owner_group: Option<String>,
}

impl Pool {
    /// The pools every GPU type has: `<GPU>-ondemand`, `<GPU>-spot`, `<GPU>-runpod`.
    pub fn defaults_for(gpu_type: &str) -> Vec<Pool> {
        ["ondemand", "spot", "runpod"]
            .iter()
            .map(|kind| Pool {
                name: format!("{gpu_type}-{kind}"),
                gpu_type: gpu_type.to_string(),
                kind: kind.to_string(),
                tenant: None,
                owner_group: None,
            })
            .collect()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `GPUFLEET_POOLS`: `name=GPU/kind[/tenant[/owner group]]`, comma-separated, e.g.
/// `L40S-n3=L40S/ondemand,Contract-L40S-Customer1=L40S/contracts/customer1/Investors`.
pub fn parse_pools(raw: &str) -> Result<Vec<Pool>> {
    let mut pools: Vec<Pool> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            Error::validation(format!(
                "pool {item:?}: use name=GPU/kind[/tenant[/owner group]] with kind one of {}",
                KINDS.join(", ")
            ))
        };
        let (name, rest) = item.split_once('=').ok_or_else(bad)?;
        let mut parts = rest.split('/').map(str::trim);
        let gpu_type = parts.next().unwrap_or_default();
        let kind = parts.next().unwrap_or_default();
        let tenant = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        let owner_group = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        let name = name.trim();
        if !valid_name(name) || !valid_name(gpu_type) || !KINDS.contains(&kind) {
            return Err(bad());
        }
        if pools.iter().any(|p| p.name == name) {
            return Err(Error::validation(format!("pool {name} is defined twice")));
        }
        pools.push(Pool {
            name: name.to_string(),
            gpu_type: gpu_type.to_string(),
            kind: kind.to_string(),
            tenant,
            owner_group,
        });
    }
    Ok(pools)
}

/// `used/capacity` and the percentage, as the capacity API shows them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GpuUsage {
    pub used: u32,
    pub capacity: u32,
}

impl GpuUsage {
    pub fn plus(self, other: GpuUsage) -> GpuUsage {
        GpuUsage {
            used: self.used + other.used,
            capacity: self.capacity + other.capacity,
        }
    }

    /// Percentage with two decimals (0 for no capacity).
    pub fn percentage(self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        (f64::from(self.used) * 10_000.0 / f64::from(self.capacity)).round() / 100.0
    }

    /// `used/capacity`, as the capacity API shows it.
    pub fn ratio(self) -> String {
        format!("{}/{}", self.used, self.capacity)
    }
}

/// Where a host should go, and why.
pub fn recommend(current: &Pool, has_live_allocations: bool, pools: &[Pool]) -> (String, String) {
    if has_live_allocations {
        return (
            current.name.clone(),
            "Host has running allocations; it stays where it is until they end".into(),
        );
    }
    if current.kind == "contracts" {
        return (
            current.name.clone(),
            format!(
                "Host is reserved for {} by contract",
                current.tenant.as_deref().unwrap_or("a customer")
            ),
        );
    }
    if current.kind == "spot" {
        return (
            current.name.clone(),
            "Host has no running VMs and is already in a spot pool".into(),
        );
    }
    match pools
        .iter()
        .find(|p| p.gpu_type == current.gpu_type && p.kind == "spot")
    {
        Some(spot) => (
            spot.name.clone(),
            "Host has no running VMs, suitable for spot aggregate".into(),
        ),
        None => (
            current.name.clone(),
            format!("No spot pool exists for {}", current.gpu_type),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types_map_to_gpus() {
        assert_eq!(gpu_of("g4dn.xlarge"), Some(("T4", 1)));
        assert_eq!(gpu_of("g5.12xlarge"), Some(("A10G", 4)));
        assert_eq!(gpu_of("g5.48xlarge"), Some(("A10G", 8)));
        assert_eq!(gpu_of("p4d.24xlarge"), Some(("A100", 8)));
        assert_eq!(gpu_of("g6e.xlarge"), Some(("L40S", 1)));
        assert_eq!(gpu_of("m5.large"), None);
        assert_eq!(gpu_of("nonsense"), None);
    }

    #[test]
    fn pools_parse_and_bad_ones_are_named() {
        let pools = parse_pools(
            "L40S-n3=L40S/ondemand, Contract-L40S-C1=L40S/contracts/customer1/Investors",
        )
        .unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[1].tenant.as_deref(), Some("customer1"));
        assert_eq!(pools[1].owner_group.as_deref(), Some("Investors"));
        for bad in ["x", "a=T4/cheap", "a b=T4/spot", "a=T4/spot,a=T4/ondemand"] {
            assert!(parse_pools(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_figures() {
        let u = GpuUsage {
            used: 24,
            capacity: 80,
        }
        .plus(GpuUsage {
            used: 132,
            capacity: 240,
        });
        assert_eq!(u.ratio(), "156/320");
        assert_eq!(u.percentage(), 48.75);
        assert_eq!(GpuUsage::default().percentage(), 0.0);
    }

    #[test]
    fn recommendations() {
        let pools = Pool::defaults_for("T4");
        let ondemand = &pools[0];
        assert_eq!(recommend(ondemand, false, &pools).0, "T4-spot");
        assert_eq!(recommend(ondemand, true, &pools).0, "T4-ondemand");
        assert_eq!(recommend(&pools[1], false, &pools).0, "T4-spot");
        assert_eq!(
            recommend(&pools[2], false, &pools).0,
            "T4-spot",
            "idle runpod host"
        );
        let contract = Pool {
            name: "Contract-T4-A".into(),
            gpu_type: "T4".into(),
            kind: "contracts".into(),
            tenant: Some("acme".into()),
            owner_group: None,
        };
        let (to, why) = recommend(&contract, false, &pools);
        assert_eq!(to, "Contract-T4-A");
        assert!(why.contains("acme"));
        let only_ondemand = vec![pools[0].clone()];
        assert_eq!(recommend(ondemand, false, &only_ondemand).0, "T4-ondemand");
    }
}
