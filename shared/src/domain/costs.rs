//! What things cost: the hourly price each machine starts with and where it came from,
//! spend as price × running time, and the monthly budgets that refuse a start.
//!
//! Spend is an estimate from list and spot prices, not the provider's bill: it leaves out
//! storage, traffic, taxes and discounts, and a spot price can change while a machine runs
//! (we keep the one it started with).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::vm::Millis;
use crate::error::{Error, Result};

/// Every price and figure is in this currency.
pub const CURRENCY: &str = "USD";

const MS_PER_HOUR: f64 = 3_600_000.0;

/// What a start is held against a budget for: its first hour. Machines are billed from
/// their start, and an hour is the shortest lease; what runs longer is counted as it runs.
pub const MIN_BILLED_HOURS: f64 = 1.0;

const PRICES: &str = include_str!("../../data/ec2_on_demand_prices.json");

/// The shipped on-demand price table: region → instance type → USD/hour.
#[derive(Debug, Clone, Deserialize)]
pub struct PriceTable {
    pub source: String,
    pub as_of: String,
    pub regions: HashMap<String, HashMap<String, f64>>,
}

impl PriceTable {
    /// The table compiled into the binary, parsed once per process.
    pub fn shipped() -> Result<&'static Self> {
        static TABLE: std::sync::OnceLock<std::result::Result<PriceTable, String>> =
            std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| serde_json::from_str(PRICES).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Internal(anyhow::anyhow!("price table: {e}")))
    }

    pub fn price(&self, region: &str, instance_type: &str) -> Option<f64> {
        self.regions.get(region)?.get(instance_type).copied()
    }

    /// The list price of `instance_type` in `region`, as a [`Price`]. A region the table
    /// does not hold falls back to the us-east-1 price, and its source says so (regional
    /// list prices differ by a few percent; an estimate beats no figure at all).
    pub fn on_demand(&self, region: &str, instance_type: &str) -> Option<Price> {
        if let Some(usd) = self.price(region, instance_type) {
            return Some(Price {
                usd_per_hour: usd,
                source: format!(
                    "EC2 on-demand list price, {region}, table as of {}",
                    self.as_of
                ),
            });
        }
        let usd = self.price(FALLBACK_PRICE_REGION, instance_type)?;
        Some(Price {
            usd_per_hour: usd,
            source: format!(
                "EC2 on-demand list price, {FALLBACK_PRICE_REGION} (no {region} price in the table), table as of {}",
                self.as_of
            ),
        })
    }
}

/// Adds dollar amounts. Unlike `Iterator::sum` on floats, an empty total is 0, not -0
/// (which would print as "$-0.00").
pub fn total(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut sum = 0.0;
    for v in values {
        sum += v;
    }
    sum
}

/// The region whose list prices stand in for a region the table lacks.
pub const FALLBACK_PRICE_REGION: &str = "us-east-1";

/// An hourly price and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub usd_per_hour: f64,
    /// e.g. "EC2 spot price at launch (lowest zone)", "EC2 on-demand list price, us-east-1,
    /// table as of 2024-12-01", "vast_ai offer".
    pub source: String,
}

impl Price {
    /// The spot price read when the machine started.
    pub fn spot(usd_per_hour: f64) -> Self {
        Price {
            usd_per_hour,
            source: "EC2 spot price at launch (DescribeSpotPriceHistory, lowest zone)".into(),
        }
    }

    /// What this price is held against a budget for when a start is asked for.
    pub fn minimum_charge(&self) -> f64 {
        self.usd_per_hour * MIN_BILLED_HOURS
    }
}

/// What a VM's cost figures need: its price and when its machine started, whose spend it
/// is, and when it was last busy (for the idle warning).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metering {
    /// `None` when no price was known for its instance type (shown as unknown).
    pub price: Option<Price>,
    /// When the compute provider started the machine.
    pub started_at: Millis,
    /// The API user whose lease this machine serves; `None` for workshop VMs.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    /// The last time the VM reported being in use.
    #[serde(default)]
    pub last_busy_at: Option<Millis>,
    /// When its machine was found gone at the provider (spend ends there).
    #[serde(default)]
    pub gone_at: Option<Millis>,
}

/// What a spend record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpendKind {
    /// A workshop VM.
    Vm,
    /// A machine of a GPU request's lease.
    Lease,
    /// An instance of the offers API.
    Instance,
}

/// One machine's spend: price × time from its start to its end (running ones: to now).
/// Running machines are read from their records; ended VMs from the ledger, where the
/// store moves them in the same step that deletes their record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRecord {
    /// Unique per machine life: hostnames are reused, so `vm:<hostname>:<record created>`.
    pub id: String,
    pub kind: SpendKind,
    /// Hostname or instance id.
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    pub price: Option<Price>,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

impl SpendRecord {
    /// Spend within `[from, to)`, in USD (0 without a price).
    pub fn cost_between(&self, from: Millis, to: Millis) -> f64 {
        let Some(price) = &self.price else { return 0.0 };
        let start = self.started_at.max(from);
        let end = self.ended_at.unwrap_or(to).min(to);
        if end <= start {
            return 0.0;
        }
        price.usd_per_hour * (end - start) as f64 / MS_PER_HOUR
    }

    /// Spend from the start to its end (running: to `now`).
    pub fn cost_to(&self, now: Millis) -> f64 {
        self.cost_between(Millis::MIN, now)
    }

    pub fn is_running(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Whether any of it falls at or after `since`.
    pub fn runs_since(&self, since: Millis) -> bool {
        self.ended_at.is_none_or(|e| e >= since)
    }
}

/// The start of the UTC day holding `now`.
pub fn day_start(now: Millis) -> Millis {
    now - now.rem_euclid(86_400_000)
}

/// The start of the UTC calendar month holding `now`, and its name (`2026-12`).
pub fn month_of(now: Millis) -> (Millis, String) {
    let date = time::OffsetDateTime::from_unix_timestamp(now.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    let first = date.replace_day(1).unwrap_or(date);
    let start = first.midnight().assume_utc().unix_timestamp() * 1000;
    (
        start,
        format!("{:04}-{:02}", first.year(), u8::from(first.month())),
    )
}

/// Money as whole micro-dollars, so stores add and compare budget holds exactly.
pub fn to_micros(usd: f64) -> i64 {
    if usd.is_finite() {
        (usd * 1_000_000.0).round() as i64
    } else {
        i64::MAX
    }
}

pub fn from_micros(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// The part of a month's budget a start takes, recorded with the thing it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetHold {
    /// The month it is held in (`2026-12`).
    pub month: String,
    pub micros: i64,
}

/// What a create asks the store to do with the owner's budget, atomically with the record:
/// add `hold` to the month's holds if they stay within `most_before` before it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCheck {
    pub user_id: String,
    pub hold: BudgetHold,
    /// The most the month's holds may add up to before this one: the budget, less the
    /// spend holds do not cover, less this hold. Negative: refused whatever the holds.
    pub most_before: i64,
    /// For the refusal message.
    pub budget_usd: f64,
    /// Spend this month that no hold covers (runs past a first hour, months before).
    pub unheld_usd: f64,
}

impl BudgetCheck {
    /// The check for a start whose minimum cost is `minimum_usd`, given the spend not
    /// covered by the month's holds.
    pub fn new(
        user_id: &str,
        budget_usd: f64,
        unheld_usd: f64,
        minimum_usd: f64,
        now: Millis,
    ) -> Self {
        let (_, month) = month_of(now);
        let hold = to_micros(minimum_usd);
        BudgetCheck {
            user_id: user_id.to_string(),
            hold: BudgetHold {
                month,
                micros: hold,
            },
            most_before: to_micros(budget_usd)
                .saturating_sub(to_micros(unheld_usd))
                .saturating_sub(hold),
            budget_usd,
            unheld_usd,
        }
    }

    /// Whether the month's holds (`held` before this one) leave room for it.
    pub fn fits(&self, held: i64) -> bool {
        self.most_before >= 0 && held <= self.most_before
    }

    /// The 400 a refused start answers.
    pub fn refusal(&self, held: i64, what: &str) -> Error {
        over_budget(
            "monthly budget",
            self.budget_usd,
            from_micros(held) + self.unheld_usd,
            from_micros(self.hold.micros),
            what,
        )
    }
}

/// "This would exceed the budget": names the budget, what is spent and what the new thing
/// costs at minimum.
pub fn over_budget(
    budget: &str,
    budget_usd: f64,
    spent_usd: f64,
    minimum_usd: f64,
    what: &str,
) -> Error {
    Error::validation(format!(
        "over budget: the {budget} is ${budget_usd:.2}, ${spent_usd:.2} of it is spent or held, and this {what} costs at least ${minimum_usd:.2} (the first hour of each machine)"
    ))
}

/// The spend of the month holding `now` that no hold covers: each thing counts for the
/// larger of its hold and its spend this month, and holds are already counted by the store.
/// `things` pairs each thing's records with the hold its start made (in any month).
pub fn unheld_spend<'a>(
    things: impl IntoIterator<Item = (Vec<&'a SpendRecord>, Option<&'a BudgetHold>)>,
    now: Millis,
) -> f64 {
    let (month_start, month) = month_of(now);
    total(things.into_iter().map(|(records, hold)| {
        let spent = total(records.iter().map(|r| r.cost_between(month_start, now)));
        let held = hold
            .filter(|h| h.month == month)
            .map_or(0.0, |h| from_micros(h.micros));
        (spent - held).max(0.0)
    }))
}

/// Spend of `records` this month and in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SpendTotals {
    pub month_usd: f64,
    pub all_time_usd: f64,
}

impl SpendTotals {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a SpendRecord>, now: Millis) -> Self {
        let (month_start, _) = month_of(now);
        records
            .into_iter()
            .fold(SpendTotals::default(), |t, r| SpendTotals {
                month_usd: t.month_usd + r.cost_between(month_start, now),
                all_time_usd: t.all_time_usd + r.cost_to(now),
            })
    }
}

/// A price and spend as the API shows them on a VM, request or instance.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CostView {
    /// USD per hour while it runs (the sum over its machines); null when unknown.
    pub price_per_hour: Option<f64>,
    /// Spend from its start to its end, or to now while it runs.
    pub cost_so_far: f64,
    pub currency: &'static str,
    /// Where the price came from; null when unknown.
    pub price_source: Option<String>,
}

impl CostView {
    /// The view of one thing's records (a request has one per machine). The hourly price
    /// counts the machines still running; when none runs, what they ran at.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a SpendRecord>, now: Millis) -> Self {
        let records: Vec<&SpendRecord> = records.into_iter().collect();
        let running: Vec<&&SpendRecord> = records.iter().filter(|r| r.is_running()).collect();
        let priced: Vec<&SpendRecord> = if running.is_empty() {
            records.clone()
        } else {
            running.into_iter().copied().collect()
        };
        let price_per_hour = if priced.is_empty() || priced.iter().any(|r| r.price.is_none()) {
            None
        } else {
            Some(total(
                priced
                    .iter()
                    .filter_map(|r| r.price.as_ref())
                    .map(|p| p.usd_per_hour),
            ))
        };
        let mut sources: Vec<&str> = priced
            .iter()
            .filter_map(|r| r.price.as_ref().map(|p| p.source.as_str()))
            .collect();
        sources.sort_unstable();
        sources.dedup();
        CostView {
            price_per_hour,
            cost_so_far: total(records.iter().map(|r| r.cost_to(now))),
            currency: CURRENCY,
            price_source: (!sources.is_empty()).then(|| sources.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(usd: f64, started: Millis, ended: Option<Millis>) -> SpendRecord {
        SpendRecord {
            id: "vm:a:0".into(),
            kind: SpendKind::Vm,
            name: "a".into(),
            owner: None,
            request_id: None,
            price: Some(Price {
                usd_per_hour: usd,
                source: "test".into(),
            }),
            started_at: started,
            ended_at: ended,
        }
    }

    #[test]
    fn spend_is_price_times_hours_inside_the_window() {
        let hour = 3_600_000;
        let r = record(0.526, 0, None);
        assert!((r.cost_to(3 * hour) - 3.0 * 0.526).abs() < 1e-9);
        assert!((r.cost_between(hour, 2 * hour) - 0.526).abs() < 1e-9);
        let ended = record(2.0, hour, Some(2 * hour));
        assert!(
            (ended.cost_to(10 * hour) - 2.0).abs() < 1e-9,
            "stops at its end"
        );
        assert_eq!(ended.cost_between(3 * hour, 4 * hour), 0.0);
        let mut unpriced = record(1.0, 0, None);
        unpriced.price = None;
        assert_eq!(unpriced.cost_to(hour), 0.0);
    }

    #[test]
    fn months_and_days_in_utc() {
        // 2026-12-06T07:16:39Z
        let now = 1_796_541_399_000;
        let (start, name) = month_of(now);
        assert_eq!(name, "2026-12");
        assert_eq!(start, 1_796_083_200_000); // 2026-12-01T00:00:00Z
        assert_eq!(day_start(now), 1_796_515_200_000); // 2026-12-06T00:00:00Z
        assert_eq!(month_of(start - 1).1, "2026-11");
        assert_eq!(month_of(0), (0, "1970-01".into()));
        assert_eq!(month_of(951_782_400_000).1, "2000-02"); // 2000-02-29
    }

    #[test]
    fn a_thing_counts_for_the_larger_of_its_hold_and_its_spend() {
        let hour = 3_600_000;
        let now = 1_796_541_399_000;
        let (month_start, month) = month_of(now);
        let hold = BudgetHold {
            month: month.clone(),
            micros: to_micros(2.0),
        };
        let long = record(1.0, now - 5 * hour, None); // $5 this month, held $2
        let short = record(1.0, now - hour / 2, None); // $0.50, held $2
        let old = record(1.0, month_start - hour, Some(month_start + hour)); // $1 this month, no hold
        let unheld = unheld_spend(
            [
                (vec![&long], Some(&hold)),
                (vec![&short], Some(&hold)),
                (vec![&old], None),
            ],
            now,
        );
        assert!((unheld - 4.0).abs() < 1e-9, "{unheld}");
        let check = BudgetCheck::new("u", 10.0, unheld, 2.0, now);
        // Holds $4 + unheld $4 + new $2 = $10: fits exactly; one micro-dollar more does not.
        assert!(check.fits(to_micros(4.0)));
        assert!(!check.fits(to_micros(4.0) + 1));
        assert!(!BudgetCheck::new("u", 1.0, 0.0, 2.0, now).fits(0));
    }

    #[test]
    fn a_region_the_table_lacks_uses_the_us_east_1_price_and_says_so() {
        let table = PriceTable::shipped().unwrap();
        let home = table.on_demand("us-east-1", "g4dn.xlarge").unwrap();
        assert!(home.source.contains("us-east-1"), "{}", home.source);
        let away = table.on_demand("eu-west-1", "g4dn.xlarge").unwrap();
        assert_eq!(away.usd_per_hour, home.usd_per_hour);
        assert!(
            away.source.contains("no eu-west-1 price"),
            "{}",
            away.source
        );
        assert!(table.on_demand("eu-west-1", "no.such").is_none());
    }

    #[test]
    fn the_cost_view_sums_running_machines() {
        let hour = 3_600_000;
        let a = record(1.0, 0, None);
        let b = record(2.0, 0, Some(hour));
        let view = CostView::of([&a, &b], 2 * hour);
        assert_eq!(view.price_per_hour, Some(1.0));
        assert!((view.cost_so_far - 4.0).abs() < 1e-9);
        let ended = CostView::of([&b], 2 * hour);
        assert_eq!(ended.price_per_hour, Some(2.0));
        let none = CostView::of([], 0);
        assert_eq!(none.price_per_hour, None);
        // Not -0, which prints as "$-0.00".
        assert!(none.cost_so_far == 0.0 && none.cost_so_far.is_sign_positive());
        assert!(total([]).is_sign_positive());
    }
}
