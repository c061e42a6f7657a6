//! The Lambda artifact as Lambda runs it: the one binary every function of the template
//! runs, started as several functions (`GPUFLEET_FUNCTION`) against a minimal Lambda Runtime
//! API on 127.0.0.1, with its table and queue on the AWS emulator, answers each function's
//! sample event from `events/`. Told no function, or one not in the catalogue, it refuses to
//! start and names the variable.
//!
//! Needs the emulator: `GPUFLEET_TEST_AWS_ENDPOINT` (scripts/test.sh starts it).

#![allow(clippy::unwrap_used)] // tests: a panic is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ARTIFACT: &str = env!("CARGO_BIN_EXE_gpufleet-lambda");

fn endpoint() -> String {
    std::env::var("GPUFLEET_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("the artifact test needs the AWS emulator: run scripts/test.sh, or set GPUFLEET_TEST_AWS_ENDPOINT")
    })
}

/// A table and a queue on the emulator, named for this run.
async fn resources() -> (String, String) {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await;
    let name = format!("gpufleet-artifact-{}", std::process::id());
    shared::adapters::DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), name.clone())
        .create_table_if_missing()
        .await
        .unwrap();
    let queue = aws_sdk_sqs::Client::new(&config)
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let s3 = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    (name, queue)
}

fn read_request(stream: &mut TcpStream) -> (String, String, Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (method, path, body)
}

/// Starts the artifact as `function` with `env`, hands it `event` through a Runtime API on
/// 127.0.0.1 and returns its answer.
fn invoke(function: &str, env: &[(&str, &str)], event: &[u8]) -> Value {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(ARTIFACT)
        .envs(env.iter().copied())
        .env("GPUFLEET_FUNCTION", function)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            listener.local_addr().unwrap().to_string(),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answer = (|| {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let (method, path, body) = read_request(&mut stream);
            if method == "GET" && path.ends_with("/invocation/next") {
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    + 30_000;
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:{function}\r\nContent-Length: {}\r\n\r\n",
                    event.len()
                )
                .unwrap();
                stream.write_all(event).unwrap();
            } else if method == "POST" && path.ends_with("/invocation/req-1/response") {
                stream
                    .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
                return serde_json::from_slice(&body).unwrap();
            } else {
                panic!(
                    "{function}: {method} {path}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        unreachable!("the listener closed")
    })();
    let _ = child.kill();
    let _ = child.wait();
    answer
}

fn event(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../events/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn one_artifact_serves_as_each_function() {
    let (table, queue) = resources().await;
    let endpoint = endpoint();
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("GPUFLEET_TABLE", table.as_str()),
        ("GPUFLEET_DEPLOYMENT", "gpufleet"),
        ("GPUFLEET_QUEUE_URL", queue.as_str()),
        (
            "GPUFLEET_API_URL",
            "https://abc123.execute-api.us-east-1.amazonaws.com",
        ),
        ("GPUFLEET_AMI", "ami-0123456789abcdef0"),
        (
            "GPUFLEET_AGENT_URL",
            "https://downloads.example.org/gpufleet",
        ),
        ("GPUFLEET_ADMIN_PASSWORD", "admin-password"),
        ("GPUFLEET_COLLECT_BUCKET", table.as_str()),
    ];
    // HTTP functions: the health check reads the table and the queue; the claim page reads
    // the free count; an API-key route refuses no key before touching anything.
    let health = invoke("health", &env, &event("health/ok.json"));
    assert_eq!(health["statusCode"], 200, "{health}");
    let body: Value = serde_json::from_str(health["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    // The API document is served on AWS too, by its own function.
    let openapi = invoke("openapi", &env, &event("openapi/get.json"));
    assert_eq!(openapi["statusCode"], 200, "{openapi}");
    let doc: Value = serde_json::from_str(openapi["body"].as_str().unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/api/v1/requests"]["post"].is_object(),
        "{doc}"
    );
    let home = invoke("home", &env, &event("home/get.json"));
    assert_eq!(home["statusCode"], 200, "{home}");
    assert!(home["body"].as_str().unwrap().contains("<form"), "{home}");
    // The download lists the (empty) bucket on S3: nothing collected is a 404.
    let nothing = invoke("scp-client", &env, &event("scp-client/json.json"));
    assert_eq!(nothing["statusCode"], 404, "{nothing}");
    let refused = invoke("get-request", &env, &event("get-request/no-key.json"));
    assert_eq!(refused["statusCode"], 401, "{refused}");
    // The provisioner takes an SQS batch: a job it cannot read is reported back as failed.
    let batch = invoke("provision", &env, &event("provision/poison.json"));
    assert_eq!(
        batch["batchItemFailures"].as_array().map(Vec::len),
        Some(1),
        "{batch}"
    );
}

/// Runs the artifact without a Runtime API and returns its exit status and all its output.
fn refused_start(env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(ARTIFACT)
        .env_clear()
        .envs(env.iter().copied())
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "it did not refuse to start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn without_a_known_function_it_refuses_to_start_naming_the_variable() {
    let (ok, text) = refused_start(&[]);
    assert!(!ok);
    assert!(text.contains("GPUFLEET_FUNCTION"), "{text}");
    let (ok, text) = refused_start(&[("GPUFLEET_FUNCTION", "launch-everything")]);
    assert!(!ok);
    assert!(
        text.contains("GPUFLEET_FUNCTION") && text.contains("launch-everything"),
        "{text}"
    );
    // A known function still needs its configuration: the error names what is missing.
    let (ok, text) = refused_start(&[("GPUFLEET_FUNCTION", "home")]);
    assert!(!ok);
    assert!(text.contains("GPUFLEET_TABLE"), "{text}");
}
