//! Cold-start measurement of a Lambda bootstrap: starts it against a minimal Lambda Runtime
//! API on 127.0.0.1 (what the Lambda service provides), hands it one event, and reports the
//! time from exec to its first `next` call (ready), to its response, and its peak RSS.
//!
//! `GPUFLEET_FUNCTION=home gpufleet-coldstart --bootstrap target/release/gpufleet-lambda --event events/home/get.json --runs 9`
//!
//! The function's configuration comes from this process's environment (scripts/coldstart.sh
//! sets dummy values; events that need no store call measure the whole path without one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Args {
    bootstrap: String,
    event: String,
    runs: usize,
    /// Where the function's own output goes (appended), so a wrong answer can be explained.
    log: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        bootstrap: String::new(),
        event: String::new(),
        runs: 9,
        log: None,
    };
    for pair in raw.chunks(2) {
        let value = pair.get(1).context("every flag takes a value")?;
        match pair[0].as_str() {
            "--bootstrap" => args.bootstrap = value.clone(),
            "--event" => args.event = value.clone(),
            "--runs" => args.runs = value.parse()?,
            "--log" => args.log = Some(value.clone()),
            other => bail!("unknown flag {other}"),
        }
    }
    if args.bootstrap.is_empty() || args.event.is_empty() {
        bail!("usage: gpufleet-coldstart --bootstrap PATH --event PATH [--runs N] [--log PATH]");
    }
    Ok(args)
}

struct Sample {
    ready: Duration,
    response: Duration,
    peak_rss_kib: u64,
    status: String,
}

/// One HTTP request from the function: method, path and body.
fn read_request(stream: &mut TcpStream) -> anyhow::Result<(String, String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((method, path, body))
}

fn peak_rss_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn one_start(args: &Args, event: &[u8]) -> anyhow::Result<Sample> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let output = match &args.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {path}"))?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let started = Instant::now();
    let mut child = Command::new(&args.bootstrap)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "coldstart")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "coldstart")
        .stdout(output.0)
        .stderr(output.1)
        .spawn()
        .with_context(|| format!("starting {}", args.bootstrap))?;
    let mut ready = None;
    let result = (|| -> anyhow::Result<Sample> {
        for stream in listener.incoming() {
            let mut stream = stream?;
            let (method, path, body) = read_request(&mut stream)?;
            if method == "GET" && path.ends_with("/invocation/next") {
                if ready.is_some() {
                    bail!("asked for a second event before answering the first");
                }
                ready = Some(started.elapsed());
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis()
                    + 30_000;
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:coldstart\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n",
                    event.len()
                )?;
                stream.write_all(event)?;
            } else if method == "POST" && path.contains("/invocation/req-1/") {
                let response = started.elapsed();
                stream.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")?;
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let status = if path.ends_with("/error") {
                    format!("error: {}", String::from_utf8_lossy(&body))
                } else if let Some(failures) = value["batchItemFailures"].as_array() {
                    format!("{} batch item failure(s)", failures.len())
                } else {
                    value["statusCode"].to_string()
                };
                return Ok(Sample {
                    ready: ready.context("a response before any event")?,
                    response,
                    peak_rss_kib: peak_rss_kib(&child),
                    status,
                });
            } else if path.ends_with("/init/error") {
                bail!("init error: {}", String::from_utf8_lossy(&body));
            } else {
                bail!("unexpected {method} {path}");
            }
        }
        bail!("the listener closed")
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let event = std::fs::read(&args.event).with_context(|| args.event.clone())?;
    let mut samples = Vec::new();
    for _ in 0..args.runs {
        samples.push(one_start(&args, &event)?);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut ready: Vec<f64> = samples.iter().map(|s| ms(s.ready)).collect();
    let mut response: Vec<f64> = samples.iter().map(|s| ms(s.response)).collect();
    let mut rss: Vec<f64> = samples
        .iter()
        .map(|s| s.peak_rss_kib as f64 / 1024.0)
        .collect();
    for v in [&mut ready, &mut response, &mut rss] {
        v.sort_by(f64::total_cmp);
    }
    // The function the artifact runs as (its GPUFLEET_FUNCTION, inherited), else the binary.
    let name = std::env::var("GPUFLEET_FUNCTION").unwrap_or_else(|_| {
        args.bootstrap
            .trim_end_matches("/bootstrap")
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    println!(
        "{name:<22} runs {:>2}  ready p50 {:>6.1} ms (max {:>6.1})  first response p50 {:>6.1} ms  peak RSS p50 {:>5.1} MiB (max {:>5.1})  answer {}",
        samples.len(),
        percentile(&ready, 0.5),
        percentile(&ready, 1.0),
        percentile(&response, 0.5),
        percentile(&rss, 0.5),
        percentile(&rss, 1.0),
        samples[0].status,
    );
    Ok(())
}
