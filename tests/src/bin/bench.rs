//! Load generator for the local server (run by `scripts/bench.sh`, which builds both in
//! release mode). It seeds N free VMs, starts `gpufleet serve` as its own process, then:
//! 1. hammers the free-count endpoint for a few seconds while all N are free: req/s, p50/p99;
//! 2. fires claims with distinct emails at concurrency C: claims/s, p50/p99, double
//!    assignments (a hostname handed to two emails), "no VM" answers;
//! 3. measures wake latency: a VM long-polls `/vm_startup`, a claim assigns it, and we time
//!    claim-response → long-poll-response (and claim-sent → long-poll-response);
//! 4. the offers/instances API with an API key: `GET /api/v1/instances` (key lookup, two
//!    rate-limit counter writes, a listing) and, for comparison, `GET /health` (limits raised
//!    so nothing is refused: this measures their cost; refusals are tested in tests/api/offers.rs).
//!
//! Traffic goes to 127.0.0.1 only; every loop is bounded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Args {
    server: String,
    vms: usize,
    claims: usize,
    concurrency: usize,
    count_seconds: u64,
    wakes: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        server: "target/release/gpufleet".into(),
        vms: 20_000,
        claims: 20_000,
        concurrency: 64,
        count_seconds: 5,
        wakes: 50,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let value = pair.get(1).context("every flag takes a value")?;
        match pair[0].as_str() {
            "--server" => args.server = value.clone(),
            "--vms" => args.vms = value.parse()?,
            "--claims" => args.claims = value.parse()?,
            "--concurrency" => args.concurrency = value.parse()?,
            "--count-seconds" => args.count_seconds = value.parse()?,
            "--wakes" => args.wakes = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn between<'a>(html: &'a str, start: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let to = html[from..].find('<')? + from;
    Some(&html[from..to])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let total_vms = args.vms + args.wakes;
    let seeded = Command::new(&args.server)
        .args([
            "seed-vms",
            "--count",
            &total_vms.to_string(),
            "--tokens-out",
        ])
        .arg(dir.path().join("tokens.json"))
        .arg("--data-dir")
        .arg(dir.path())
        .status()
        .context("running seed-vms")?;
    if !seeded.success() {
        bail!("seed-vms failed");
    }
    let tokens: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tokens.json"))?)?;
    let key_out = Command::new(&args.server)
        .args(["api-key", "--user", "bench", "--data-dir"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .output()
        .context("running api-key")?;
    let api_key = String::from_utf8(key_out.stdout)?.trim().to_string();

    let mut server = Command::new(&args.server)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("GPUFLEET_ADMIN_PASSWORD", "bench-admin-password")
        // Phase 4 measures the limiter's cost, so its limits must not refuse the load.
        .env("GPUFLEET_RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("GPUFLEET_KEY_RATE_LIMIT_PER_MINUTE", "1000000000")
        // Seeded VMs have no agent to heartbeat: keep them live for the whole run (the
        // liveness condition is still evaluated by every claim and count).
        .env("GPUFLEET_HEARTBEAT_TIMEOUT_SECONDS", "86400")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server")?;
    let mut stdout = BufReader::new(server.stdout.take().context("stdout")?);
    // Log lines (warnings) may come before the one that announces the URL.
    let mut line = String::new();
    while !line.starts_with("gpufleet local mode:") {
        line.clear();
        if stdout.read_line(&mut line)? == 0 {
            bail!("the server exited before announcing its URL");
        }
    }
    // Keep reading so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    println!("server: {url} (release build, SQLite WAL, {total_vms} seeded VMs)");

    let mut result = run(&args, &url, &tokens).await;
    if result.is_ok() {
        result = api_phase(&args, &url, &api_key).await;
    }
    server.kill().ok();
    server.wait().ok();
    result
}

async fn run(args: &Args, url: &str, tokens: &[serde_json::Value]) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;

    // 1. Free count, while every seeded VM is still free (the expensive case).
    let deadline = Instant::now() + Duration::from_secs(args.count_seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url) = (client.clone(), url.to_string());
        tasks.spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = client
                    .get(format!("{url}/api/unassigned_vms_count"))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    out.push(t.elapsed());
                }
            }
            out
        });
    }
    let mut counts = Vec::new();
    while let Some(batch) = tasks.join_next().await {
        counts.extend(batch?);
    }
    counts.sort();
    println!(
        "free count ({} free VMs): {:.0} req/s at concurrency {}, p50 {:.2?}, p99 {:.2?}",
        args.vms + args.wakes,
        counts.len() as f64 / args.count_seconds as f64,
        args.concurrency,
        percentile(&counts, 0.50),
        percentile(&counts, 0.99),
    );

    // 2. Claims.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_string());
        let claims = args.claims;
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= claims {
                    return out;
                }
                let email = format!("bench{i}@example.org");
                let t = Instant::now();
                let html = client
                    .post(format!("{url}/api/request_vm"))
                    .form(&[("email", email.as_str()), ("crd_command", "--code=4/bench")])
                    .send()
                    .await
                    .and_then(|r| r.error_for_status());
                let html = match html {
                    Ok(resp) => resp.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let host = between(&html, "id=\"hostname\">").map(str::to_string);
                out.push((
                    t.elapsed(),
                    email,
                    host,
                    html.contains("no VM is available"),
                ));
            }
        });
    }
    let mut latencies = Vec::with_capacity(args.claims);
    let mut by_host: HashMap<String, Vec<String>> = HashMap::new();
    let (mut assigned, mut no_vm, mut failed) = (0, 0, 0);
    while let Some(batch) = tasks.join_next().await {
        for (latency, email, host, none) in batch? {
            latencies.push(latency);
            match host {
                Some(h) => {
                    assigned += 1;
                    by_host.entry(h).or_default().push(email);
                }
                None if none => no_vm += 1,
                None => failed += 1,
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let doubles: usize = by_host.values().filter(|emails| emails.len() > 1).count();
    println!(
        "claims: {} at concurrency {} in {:.2?}: {:.0} claims/s, p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        args.claims,
        args.concurrency,
        elapsed,
        args.claims as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    println!("claims: {assigned} assigned, {no_vm} \"no VM\", {failed} failed, double assignments: {doubles}");

    // 3. Wake latency. The claim picks the oldest free VM, which is the next seeded one.
    let mut after_response = Vec::new();
    let mut after_send = Vec::new();
    for i in 0..args.wakes {
        let vm = &tokens[args.vms.min(args.claims) + i];
        let hostname = vm["hostname"].as_str().context("hostname")?.to_string();
        let token = vm["token"].as_str().context("token")?.to_string();
        let poll = {
            let (client, url, hostname) = (client.clone(), url.to_string(), hostname.clone());
            tokio::spawn(async move {
                let resp = client
                    .post(format!("{url}/vm_startup"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({"hostname": hostname}))
                    .send()
                    .await;
                let done = Instant::now();
                let body: serde_json::Value = match resp {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
                (done, body)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await; // let the VM start waiting
        let sent = Instant::now();
        let html = client
            .post(format!("{url}/api/request_vm"))
            .form(&[
                ("email", format!("wake{i}@example.org").as_str()),
                ("crd_command", "--code=4/wake"),
            ])
            .send()
            .await?
            .text()
            .await?;
        let responded = Instant::now();
        if between(&html, "id=\"hostname\">") != Some(hostname.as_str()) {
            bail!("wake {i}: expected {hostname} to be claimed");
        }
        let (done, body) = tokio::time::timeout(Duration::from_secs(30), poll).await??;
        if body["status"] != "success" {
            bail!("wake {i}: long-poll answered {body}");
        }
        after_response.push(done.saturating_duration_since(responded));
        after_send.push(done.saturating_duration_since(sent));
    }
    after_response.sort();
    after_send.sort();
    println!(
        "wake latency ({} VMs): claim response → VM answered p50 {:.2?} p99 {:.2?}; claim sent → VM answered p50 {:.2?} p99 {:.2?}",
        args.wakes,
        percentile(&after_response, 0.5),
        percentile(&after_response, 0.99),
        percentile(&after_send, 0.5),
        percentile(&after_send, 0.99),
    );
    Ok(())
}

/// Requests per second and latency of one GET at the configured concurrency.
async fn hammer(
    client: &reqwest::Client,
    url: String,
    key: Option<String>,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<(f64, Duration, Duration, usize)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tasks.spawn(async move {
            let (mut ok, mut refused) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut req = client.get(&url);
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                match req.send().await.map(|r| r.status().as_u16()) {
                    Ok(200) => ok.push(t.elapsed()),
                    Ok(_) | Err(_) => refused += 1,
                }
            }
            (ok, refused)
        });
    }
    let (mut all, mut refused) = (Vec::new(), 0);
    while let Some(batch) = tasks.join_next().await {
        let (ok, r) = batch?;
        all.extend(ok);
        refused += r;
    }
    all.sort();
    Ok((
        all.len() as f64 / seconds as f64,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        refused,
    ))
}

async fn api_phase(args: &Args, url: &str, key: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let seconds = args.count_seconds;
    let (rps, p50, p99, failed) = hammer(
        &client,
        format!("{url}/api/v1/instances"),
        Some(key.to_string()),
        args.concurrency,
        seconds,
    )
    .await?;
    println!(
        "GET /api/v1/instances (API key, per-IP and per-key counters written per request): {rps:.0} req/s at concurrency {}, p50 {p50:.2?}, p99 {p99:.2?}, {failed} not 200",
        args.concurrency
    );
    let (rps, p50, p99, failed) = hammer(
        &client,
        format!("{url}/health"),
        None,
        args.concurrency,
        seconds,
    )
    .await?;
    println!(
        "GET /health (no key, no counter; one store read): {rps:.0} req/s, p50 {p50:.2?}, p99 {p99:.2?}, {failed} not 200"
    );
    Ok(())
}
