//! What things cost, over HTTP on the local server with real agent processes and a clock the
//! test moves: a lease's price and spend (price × hours, kept after it ends), workshop VMs
//! on the dashboard (per VM, per hour, today, idle ones), each user's month on the API keys,
//! a user's budget under a race of parallel requests, and the fleet budget on launches.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shared::adapters::OffsetClock;
use shared::config::Config;
use shared::domain::VmChange;
use shared::ports::Clock as _;

use crate::helpers::{assigned_hostname, spawn_app_with, Options, TestApp};
use crate::liveness::{kill_agent, launch_and_wait};

/// g5.xlarge (a 1-GPU lease) and g4dn.xlarge (a workshop VM) in the shipped us-east-1 table.
const G5_XLARGE: f64 = 1.006;
const G4DN_XLARGE: f64 = 0.526;
const HOUR: Duration = Duration::from_secs(3600);

fn close(a: f64, b: f64) -> bool {
    // Real seconds pass between the clock's moves: a few cents' tolerance at these prices.
    (a - b).abs() < 0.02
}

impl TestApp {
    /// An API key for `user` with a monthly budget, through the admin endpoint.
    pub async fn api_key_with_budget(&self, user: &str, budget_usd: f64) -> String {
        let resp = self
            .admin(self.client.post(self.url("/api/v1/api-keys")))
            .json(&json!({"user_id": user, "gpu_quota": 64, "budget_usd": budget_usd}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["budget_usd"], budget_usd, "{body}");
        body["key"].as_str().unwrap().to_string()
    }

    /// The admin's view of `user`'s key (`GET /api/v1/api-keys`).
    pub async fn key_of(&self, user: &str) -> Value {
        let keys = self.admin_json("/api/v1/api-keys").await;
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["user_id"] == user)
            .unwrap_or_else(|| panic!("no key of {user}: {keys}"))
            .clone()
    }

    /// The admin dashboard's HTML.
    async fn dashboard(&self) -> String {
        let (status, html) = self.admin_get("/admin", false).await;
        assert_eq!(status, 200);
        html
    }
}

/// The text of the dashboard element carrying `data-cost="{name}"`.
fn cost_figure(html: &str, name: &str) -> String {
    let marker = format!("data-cost=\"{name}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} figure"))
        + marker.len();
    let rest = &html[start..];
    rest[..rest.find('<').unwrap()].trim().to_string()
}

fn dollars(figure: &str) -> f64 {
    figure
        .trim_start_matches('$')
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("not a dollar figure: {figure}"))
}

fn request(user: &str, gpus: u32, hours: u32) -> Value {
    json!({"user_id": user, "gpu_count": gpus, "duration_hours": hours})
}

async fn app_with(clock: &Arc<OffsetClock>, config: Option<fn(&mut Config)>) -> TestApp {
    spawn_app_with(Options {
        clock: clock.clone(),
        config,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn a_lease_costs_its_price_times_its_hours_and_the_spend_outlives_it() {
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, None).await;
    let key = app.api_key_with_budget("carol", 100.0).await;
    let (status, created) = app.post_request(&key, &request("carol", 1, 8)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["request_id"].as_str().unwrap().to_string();
    let done = app.wait_for_status(&key, &id, "completed").await;
    assert_eq!(done["price_per_hour"], G5_XLARGE, "{done}");
    assert_eq!(done["currency"], "USD");
    let source = done["price_source"].as_str().unwrap();
    assert!(
        source.contains("on-demand list price, us-east-1"),
        "{source}"
    );
    assert!(done["cost_so_far"].as_f64().unwrap() < 0.02, "{done}");

    clock.advance(2 * HOUR);
    let (_, later) = app.get_json(&key, &format!("/api/v1/requests/{id}")).await;
    let spent = later["cost_so_far"].as_f64().unwrap();
    assert!(close(spent, 2.0 * G5_XLARGE), "{later}");
    let carol = app.key_of("carol").await;
    assert!(
        close(carol["spend_this_month_usd"].as_f64().unwrap(), spent),
        "{carol}"
    );
    assert_eq!(carol["budget_usd"], 100.0);

    // Released: the machine and its record go, the spend stays (and stops growing).
    let path = format!("/api/v1/requests/{id}/release");
    let (status, released, _) = app.v1(reqwest::Method::POST, &key, &path, None).await;
    assert_eq!(status, 200, "{released}");
    assert!(close(released["cost_so_far"].as_f64().unwrap(), spent));
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
    clock.advance(3 * HOUR);
    let (_, after) = app.get_json(&key, &format!("/api/v1/requests/{id}")).await;
    assert!(
        close(after["cost_so_far"].as_f64().unwrap(), spent),
        "{after}"
    );
    let carol = app.key_of("carol").await;
    for field in ["spend_this_month_usd", "spend_all_time_usd"] {
        assert!(close(carol[field].as_f64().unwrap(), spent), "{carol}");
    }
    let ledger = app.state.store.ended_spend(0).await.unwrap();
    assert_eq!(ledger.len(), 1, "recorded once: {ledger:?}");
    assert_eq!(ledger[0].owner.as_deref(), Some("carol"));
}

#[tokio::test]
async fn twenty_parallel_requests_against_a_budget_of_four_first_hours_start_exactly_four() {
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, None).await;
    // Each 1-GPU request holds its first hour (g5.xlarge); the budget fits four and a bit.
    let budget = 4.0 * G5_XLARGE + 0.5;
    let key = app.api_key_with_budget("racer", budget).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("/api/v1/requests");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(key)
                .json(&request("racer", 1, 1))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 4, "{answers:?}");
    let refusals: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 400)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(refusals.len(), 16, "{answers:?}");
    let message = refusals[0]["error"].as_str().unwrap();
    // Names the budget, what is spent or held, and what the new one would cost at least.
    assert!(message.contains("budget"), "{message}");
    assert!(message.contains(&format!("${budget:.2}")), "{message}");
    assert!(
        message.contains(&format!("${:.2}", 4.0 * G5_XLARGE)),
        "{message}"
    );
    assert!(message.contains(&format!("${G5_XLARGE:.2}")), "{message}");
    let requests = app
        .state
        .store
        .list_requests(Some("racer"), usize::MAX)
        .await
        .unwrap();
    assert_eq!(requests.len(), 4, "a refusal records nothing");
}

#[tokio::test]
async fn a_budget_refusal_is_a_400_and_a_key_without_one_is_not_limited() {
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, None).await;
    let tight = app.api_key_with_budget("tight", 1.0).await;
    // 4 GPUs is one g5.12xlarge: its first hour alone is over a $1 budget.
    let (status, body) = app.post_request(&tight, &request("tight", 4, 1)).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("$1.00") && message.contains("$5.67"),
        "{message}"
    );
    // A second key without a budget does not lift the user's budget.
    let unbudgeted = app.api_key("tight", 8).await;
    let (status, body) = app.post_request(&unbudgeted, &request("tight", 4, 1)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("$1.00"), "{body}");
    assert!(app
        .state
        .store
        .list_requests(Some("tight"), 10)
        .await
        .unwrap()
        .is_empty());
    // Budgets are checked as numbers: nonsense is refused at the key's creation.
    for bad in [json!(-1), json!("ten"), json!(1e12)] {
        let resp = app
            .admin(app.client.post(app.url("/api/v1/api-keys")))
            .json(&json!({"user_id": "x", "budget_usd": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let free = app.api_key("free", 8).await;
    let (status, body) = app.post_request(&free, &request("free", 4, 1)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn workshop_vms_show_their_cost_and_idle_ones_are_called_out() {
    fn idle_after_a_minute(config: &mut Config) {
        config.costs.idle_warning = Duration::from_secs(60);
    }
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, Some(idle_after_a_minute)).await;
    launch_and_wait(&app, 2).await;
    let instances = app.admin_json("/admin/instances").await;
    let vms = instances["vms"].as_array().unwrap();
    for vm in vms {
        assert_eq!(vm["price_per_hour"], G4DN_XLARGE, "{vm}");
        assert_eq!(vm["currency"], "USD");
        assert!(vm["price_source"].as_str().unwrap().contains("on-demand"));
    }
    let html = app.dashboard().await;
    assert!(close(
        dollars(&cost_figure(&html, "per-hour")),
        2.0 * G4DN_XLARGE
    ));
    assert!(!html.contains("id=\"idle-warning\""), "nobody waited yet");

    // One is claimed and worked on; a minute later the other has stood idle, unclaimed.
    let page = app.claim("ada@example.org", crate::helpers::CRD).await;
    let claimed = assigned_hostname(&page).expect("a VM was assigned");
    // What the agent's in-use report records (its in-use process is not running here).
    app.state
        .store
        .update_vm(&claimed, &VmChange::InUse(true), clock.now_millis())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let html = app.dashboard().await;
    let idle: Vec<&str> = html
        .match_indices("data-idle=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(idle.len(), 1, "only the unclaimed VM is idle: {idle:?}");
    assert_ne!(idle[0], claimed);
    assert!(html.contains("id=\"idle-warning\""));
    assert!(html.contains("unclaimed for 1 min"), "the idle line");
    assert!(html.contains(&format!("${G4DN_XLARGE:.2}/h")), "its cost");

    // An hour on, the fleet has spent two VM-hours and a bit.
    clock.advance(HOUR);
    let hours = (3600.0 + 61.0) / 3600.0;
    let html = app.dashboard().await;
    let fleet = dollars(&cost_figure(&html, "fleet"));
    assert!(close(fleet, 2.0 * G4DN_XLARGE * hours), "{fleet}");
    let today = dollars(&cost_figure(&html, "today"));
    assert!(
        close(today, fleet) || crossed_midnight(&clock),
        "{today} vs {fleet}"
    );

    // Destroyed: the fleet's spend moves to the ledger and still counts this month.
    let resp = app
        .admin(app.client.post(app.url("/destroy")))
        .header("accept", "application/json")
        .form(&[("confirm_in_use", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
    let ledger = app.state.store.ended_spend(0).await.unwrap();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    for record in &ledger {
        assert!(
            close(record.cost_to(i64::MAX), G4DN_XLARGE * hours),
            "{record:?}"
        );
    }
    let html = app.dashboard().await;
    assert_eq!(cost_figure(&html, "per-hour"), "$0.00");
    assert_eq!(
        cost_figure(&html, "fleet"),
        "$0.00",
        "a new fleet starts at 0"
    );
    let month = dollars(&cost_figure(&html, "fleet-month"));
    assert!(close(month, fleet), "{month} vs {fleet}");
}

/// Whether the last hour and a bit crossed midnight UTC (then "today" starts over).
fn crossed_midnight(clock: &OffsetClock) -> bool {
    let now = clock.now_millis();
    shared::domain::costs::day_start(now) > now - 3_700_000
}

#[tokio::test]
async fn the_fleet_budget_refuses_a_launch_that_could_go_over_it() {
    fn budget(config: &mut Config) {
        // Two first hours of g4dn.xlarge and a bit: a third VM does not fit.
        config.costs.fleet_budget_usd = Some(2.0 * 0.526 + 0.3);
    }
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, Some(budget)).await;
    let launch = |n: &'static str| {
        app.admin(app.client.post(app.url("/api/launch")))
            .header("accept", "application/json")
            .form(&[("instance_count", n)])
            .send()
    };
    let resp = launch("3").await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("fleet's monthly budget"), "{body}");
    assert!(message.contains("$1.35"), "{body}");
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
    assert_eq!(launch("2").await.unwrap().status(), 202);
    // The two just started count for their first hour already: one more is refused at once.
    let resp = launch("1").await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(app.state.store.list_vms().await.unwrap().len(), 2);
    // The dashboard shows what the budget counts, and that there is no room left.
    let html = app.dashboard().await;
    assert_eq!(cost_figure(&html, "fleet-budget"), "$1.05 of $1.35");
    assert!(html.contains("id=\"fleet-over-budget\""));
}

#[tokio::test]
async fn a_fleet_budget_over_an_unpriced_type_refuses_launches_and_says_why() {
    fn budget(config: &mut Config) {
        config.costs.fleet_budget_usd = Some(100.0);
        config.instance_type = "x9.unpriced".into();
    }
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, Some(budget)).await;
    let resp = app
        .admin(app.client.post(app.url("/api/launch")))
        .header("accept", "application/json")
        .form(&[("instance_count", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no price is known for x9.unpriced"),
        "{body}"
    );
    let html = app.dashboard().await;
    assert!(html.contains("id=\"fleet-budget-unpriced\""));
    assert!(!html.contains("id=\"fleet-room\""));
}

#[tokio::test]
async fn a_vm_whose_machine_died_stops_costing_when_reconcile_finds_it_gone() {
    let clock = Arc::new(OffsetClock::default());
    let app = app_with(&clock, None).await;
    launch_and_wait(&app, 1).await;
    let vm = app.state.store.list_vms().await.unwrap().remove(0);
    kill_agent(vm.instance_id.as_deref().unwrap());
    clock.advance(HOUR);
    let resp = app
        .admin(app.client.post(app.url("/api/reconcile")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let instances = app.admin_json("/admin/instances").await;
    let view = &instances["vms"][0];
    assert_eq!(view["status"], "error", "{view}");
    assert_eq!(view["spend_ended"], true, "{view}");
    let spent = view["cost_so_far"].as_f64().unwrap();
    assert!(close(spent, G4DN_XLARGE), "an hour: {view}");
    // Time goes on; a gone machine costs nothing more and is not in the hourly figure.
    clock.advance(HOUR);
    let later = app.admin_json("/admin/instances").await;
    assert_eq!(later["vms"][0]["cost_so_far"].as_f64().unwrap(), spent);
    let html = app.dashboard().await;
    assert_eq!(cost_figure(&html, "per-hour"), "$0.00");
    assert!(html.contains(">ended</td>"), "the Cost/h column");
}
