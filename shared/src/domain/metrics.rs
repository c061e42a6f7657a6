//! Startup timings a VM reports per stage. Stages may arrive in separate reports and in
//! any order; the record keeps every field it was sent, and the per-stage view and the
//! total are derived from them, so the result does not depend on arrival order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The stages of a VM's boot, in order: cloud-init as a whole, and within it the desktop
/// user and session, the Chrome Remote Desktop host and the CloudWatch agent (each the time
/// to check for it and install it if the image lacked it); a container; the agent.
pub const STAGES: [&str; 6] = [
    "cloud_init",
    "desktop",
    "crd",
    "cloudwatch",
    "container",
    "agent",
];

/// Raw fields as reported: `<stage>_start` / `<stage>_end` (Unix seconds) and
/// `<stage>_duration_seconds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartupMetrics {
    #[serde(flatten)]
    pub fields: BTreeMap<String, f64>,
}

/// One stage, with whatever could be derived.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageTiming {
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub duration: Option<f64>,
}

fn known_field(name: &str) -> bool {
    STAGES.iter().any(|stage| {
        name.strip_prefix(stage)
            .is_some_and(|rest| matches!(rest, "_start" | "_end" | "_duration_seconds"))
    })
}

/// The longest a stage may take: anything longer is a broken clock, not a boot.
pub const MAX_STAGE_SECONDS: f64 = 86_400.0;
/// Unix times (seconds) accepted for `_start` and `_end`: up to 2100-01-01.
const UNIX_TIME_RANGE: std::ops::RangeInclusive<f64> = 0.0..=4_102_444_800.0;

impl StartupMetrics {
    /// Validates a report: only known fields, each a finite number ≥ 0.
    /// Parses a report: only known fields; times are plausible Unix seconds, durations at
    /// most a day, so one VM's absurd numbers are refused instead of flattening the chart.
    pub fn from_report(report: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        if report.is_empty() {
            return Err(Error::validation("the metrics report is empty"));
        }
        let mut fields = BTreeMap::new();
        for (name, value) in report {
            if !known_field(name) {
                return Err(Error::validation(format!(
                    "unknown metric {name:?}: expected <stage>_start, <stage>_end or <stage>_duration_seconds for stage cloud_init, desktop, crd, cloudwatch, container or agent"
                )));
            }
            let number = value
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| {
                    Error::validation(format!(
                        "{name} must be a non-negative number (got {value})"
                    ))
                })?;
            if name.ends_with("_duration_seconds") && number > MAX_STAGE_SECONDS {
                return Err(Error::validation(format!(
                    "{name} must be at most {MAX_STAGE_SECONDS} (a day; got {number})"
                )));
            }
            if !name.ends_with("_duration_seconds") && !UNIX_TIME_RANGE.contains(&number) {
                return Err(Error::validation(format!(
                    "{name} must be a Unix time in seconds before 2100 (got {number})"
                )));
            }
            fields.insert(name.clone(), number);
        }
        Ok(StartupMetrics { fields })
    }

    /// Merges a report into the record; refuses a result where a stage ends before it
    /// starts (then nothing changes).
    pub fn merge(&mut self, report: &StartupMetrics) -> Result<()> {
        let mut merged = self.fields.clone();
        merged.extend(report.fields.iter().map(|(k, v)| (k.clone(), *v)));
        let candidate = StartupMetrics { fields: merged };
        for stage in STAGES {
            let t = candidate.raw(stage);
            if let (Some(start), Some(end)) = (t.start, t.end) {
                if end < start {
                    return Err(Error::validation(format!(
                        "{stage}_end ({end}) is before {stage}_start ({start})"
                    )));
                }
                if end - start > MAX_STAGE_SECONDS {
                    return Err(Error::validation(format!(
                        "{stage} would last {} s, more than a day",
                        end - start
                    )));
                }
            }
        }
        *self = candidate;
        Ok(())
    }

    fn raw(&self, stage: &str) -> StageTiming {
        let get = |suffix: &str| self.fields.get(&format!("{stage}{suffix}")).copied();
        StageTiming {
            start: get("_start"),
            end: get("_end"),
            duration: get("_duration_seconds"),
        }
    }

    /// A stage with the missing one of start / end / duration derived from the other two.
    pub fn stage(&self, stage: &str) -> StageTiming {
        let mut t = self.raw(stage);
        match (t.start, t.end, t.duration) {
            (Some(s), Some(e), None) => t.duration = Some(e - s),
            (Some(s), None, Some(d)) => t.end = Some(s + d),
            (None, Some(e), Some(d)) => t.start = Some(e - d),
            _ => {}
        }
        t
    }

    /// Total startup time in seconds: from the earliest stage start to the latest stage
    /// end when every reported stage is placed in time (stages may overlap: the container
    /// starts inside cloud-init); otherwise the sum of the stage durations.
    pub fn total_seconds(&self) -> Option<f64> {
        let stages: Vec<StageTiming> = STAGES
            .iter()
            .map(|s| self.stage(s))
            .filter(|t| t.start.is_some() || t.end.is_some() || t.duration.is_some())
            .collect();
        if stages.is_empty() {
            return None;
        }
        if stages.iter().all(|t| t.start.is_some() && t.end.is_some()) {
            let first = stages
                .iter()
                .filter_map(|t| t.start)
                .fold(f64::INFINITY, f64::min);
            let last = stages
                .iter()
                .filter_map(|t| t.end)
                .fold(f64::NEG_INFINITY, f64::max);
            return Some(last - first);
        }
        let durations: Vec<f64> = stages.iter().filter_map(|t| t.duration).collect();
        (!durations.is_empty()).then(|| durations.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(v: serde_json::Value) -> StartupMetrics {
        StartupMetrics::from_report(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn any_arrival_order_gives_the_same_total() {
        let parts = [
            json!({"cloud_init_start": 1000, "cloud_init_end": 1090}),
            json!({"container_start": 1030}),
            json!({"container_end": 1080, "container_duration_seconds": 50}),
            json!({"agent_start": 1080, "agent_duration_seconds": 5}),
        ];
        let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]];
        for order in orders {
            let mut m = StartupMetrics::default();
            for i in order {
                m.merge(&report(parts[i].clone())).unwrap();
            }
            assert_eq!(m.total_seconds(), Some(90.0), "{order:?}");
            assert_eq!(m.stage("agent").end, Some(1085.0));
            assert_eq!(m.stage("container").duration, Some(50.0));
        }
    }

    #[test]
    fn durations_only_are_summed() {
        let mut m = StartupMetrics::default();
        m.merge(&report(json!({"cloud_init_duration_seconds": 60})))
            .unwrap();
        m.merge(&report(json!({"agent_duration_seconds": 2.5})))
            .unwrap();
        assert_eq!(m.total_seconds(), Some(62.5));
        assert_eq!(StartupMetrics::default().total_seconds(), None);
    }

    #[test]
    fn bad_reports_are_refused() {
        for bad in [
            json!({}),
            json!({"boot_start": 1}),
            json!({"cloud_init_start": -1}),
            json!({"cloud_init_start": "soon"}),
            json!({"cloud_init_start": null}),
            json!({"cloud_init_start": 1e308}),
            json!({"cloud_init_duration_seconds": 86_401}),
            json!({"agent_duration_seconds": 1e308}),
        ] {
            assert!(
                StartupMetrics::from_report(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
        let mut m = StartupMetrics::default();
        m.merge(&report(json!({"cloud_init_start": 100}))).unwrap();
        let before = m.clone();
        assert!(m.merge(&report(json!({"cloud_init_end": 50}))).is_err());
        assert!(
            m.merge(&report(json!({"cloud_init_end": 100 + 86_401})))
                .is_err(),
            "a stage longer than a day"
        );
        assert_eq!(m, before);
    }
}
