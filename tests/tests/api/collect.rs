//! Participants' work: real agent processes sync files from their working directories to
//! the local server; a destroy collects first; the zip has every file byte for byte. And the
//! S3 adapter, through the real SDK on the emulator: the same contract as the local store,
//! presigned uploads and a multipart-assembled download.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::contract::{run_work_store, UrlClient};
use shared::ports::{UploadUrl, WorkStore};

use crate::helpers::*;

fn collecting(config: &mut shared::config::Config) {
    config.collect.patterns =
        shared::domain::collect::Patterns::parse("*.slp,results/*.csv").unwrap();
    config.collect.interval = Duration::from_secs(5);
    config.collect.final_wait = Duration::from_secs(4);
}

fn work_dir(app: &TestApp, hostname: &str) -> PathBuf {
    app.data_dir.join("work").join(hostname)
}

async fn launch(app: &TestApp, n: usize) -> Vec<String> {
    let resp = app
        .admin(app.client.post(app.url("/api/launch")))
        .header("accept", "application/json")
        .form(&[("instance_count", n.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    eventually(Duration::from_secs(60), "the VMs booted", || async {
        app.free_count().await == n as u64
    })
    .await;
    let mut names: Vec<String> = app
        .state
        .store
        .list_vms()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.hostname)
        .collect();
    names.sort();
    names
}

/// `POST /destroy` as an API client: the operation, with each VM's final sync.
async fn destroy(app: &TestApp) -> Value {
    let resp = app
        .admin(app.client.post(app.url("/destroy")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The download's manifest (JSON), or the status when there is none.
async fn manifest(app: &TestApp) -> Result<Value, u16> {
    let resp = app
        .admin(app.client.get(app.url("/api/scp-client")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => Ok(resp.json().await.unwrap()),
        other => Err(other),
    }
}

/// Follows the 303 as a browser does and unpacks the zip: (name → bytes).
async fn download(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let resp = app
        .admin(app.client.get(app.url("/api/scp-client")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the redirect is followed to the zip");
    assert_eq!(resp.headers()["content-type"], "application/zip");
    unzip(&resp.bytes().await.unwrap())
}

/// Unpacks with Python's zipfile (an independent reader), which also checks every CRC.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("work.zip");
    std::fs::write(&zip, bytes).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile, json, base64\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert z.testzip() is None\n\
             print(json.dumps([[i.filename, base64.b64encode(z.read(i)).decode()] for i in z.infolist()]))",
        )
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<(String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine as _;
    entries
        .into_iter()
        .map(|(name, b64)| {
            (
                name,
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn files_of(manifest: &Value, hostname: &str) -> Vec<(String, u64)> {
    manifest["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostname"] == hostname)
        .map(|v| {
            v["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap().to_string(),
                        f["size"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_sync_their_work_and_destroy_delivers_the_last_file() {
    let app = spawn_app_with(Options {
        config: Some(collecting),
        ..Options::default()
    })
    .await;
    assert_eq!(manifest(&app).await, Err(404), "nothing collected yet");
    // A stranger's PUT to the local store is refused before any body is read.
    for (path, len) in [("/local-store/nope", 10u64), ("/local-store/", 1)] {
        let resp = app
            .client
            .put(app.url(path))
            .header("content-length", len)
            .body(vec![0u8; len as usize])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }
    let vms = launch(&app, 2).await;
    let (a, b) = (&vms[0], &vms[1]);
    // A participant on VM a claims it: its folder carries the email.
    app.claim("ann@example.org", "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0Ab\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)").await;
    let claimed = app
        .state
        .store
        .list_vms()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.assignment.is_some())
        .unwrap()
        .hostname;

    let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(&work_dir(&app, a).join("labels/session 1.slp"), &binary);
    write(
        &work_dir(&app, a).join("results/run.csv"),
        b"epoch,loss\n1,0.5\n",
    );
    write(&work_dir(&app, a).join("notes.txt"), b"not collected");
    write(
        &work_dir(&app, a).join(".cache/hidden.slp"),
        b"not collected",
    );
    std::os::unix::fs::symlink("/etc/hostname", work_dir(&app, a).join("link.slp")).unwrap();
    write(&work_dir(&app, b).join("b.slp"), b"version 1");

    eventually(
        Duration::from_secs(20),
        "the interval sync collected both VMs",
        || async {
            manifest(&app).await.is_ok_and(|m| {
                files_of(&m, a).len() == 2 && files_of(&m, b) == [("b.slp".to_string(), 9)]
            })
        },
    )
    .await;

    // A changed file is uploaded again at the next sync.
    write(&work_dir(&app, b).join("b.slp"), b"version 2, longer");
    eventually(
        Duration::from_secs(20),
        "the changed file was re-uploaded",
        || async {
            manifest(&app)
                .await
                .is_ok_and(|m| files_of(&m, b) == [("b.slp".to_string(), 17)])
        },
    )
    .await;

    // Written right before the destroy: the final sync still delivers it.
    write(
        &work_dir(&app, a).join("last-minute.slp"),
        b"saved at 16:59",
    );
    let started = Instant::now();
    let body = destroy(&app).await;
    let collected = body["operation"]["collected"].as_array().unwrap();
    assert_eq!(collected.len(), 2, "{body}");
    assert!(collected.iter().all(|c| c["answered"] == true), "{body}");
    println!(
        "MEASURE destroy with a final sync of 2 VMs: {:?}",
        started.elapsed()
    );
    assert!(app.state.store.list_vms().await.unwrap().is_empty());

    // The VMs are gone; their work is not.
    let zip = download(&app).await;
    let names: Vec<&str> = zip.iter().map(|(n, _)| n.as_str()).collect();
    let folder = |h: &str| {
        if *h == claimed {
            format!("{h} (ann@example.org)")
        } else {
            h.to_string()
        }
    };
    let get = |name: String| {
        zip.iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} not in {names:?}"))
            .1
            .clone()
    };
    assert_eq!(get(format!("{}/labels/session 1.slp", folder(a))), binary);
    assert_eq!(
        get(format!("{}/results/run.csv", folder(a))),
        b"epoch,loss\n1,0.5\n"
    );
    assert_eq!(
        get(format!("{}/last-minute.slp", folder(a))),
        b"saved at 16:59"
    );
    assert_eq!(get(format!("{}/b.slp", folder(b))), b"version 2, longer");
    assert_eq!(zip.len(), 4, "nothing else: {names:?}");

    // The admin deletes it once downloaded.
    let resp = app
        .admin(app.client.post(app.url("/api/collected/delete")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(manifest(&app).await, Err(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_killed_before_the_final_sync_is_listed_as_missing() {
    let app = spawn_app_with(Options {
        config: Some(collecting),
        ..Options::default()
    })
    .await;
    let vms = launch(&app, 2).await;
    write(&work_dir(&app, &vms[0]).join("kept.slp"), b"synced before");
    eventually(Duration::from_secs(20), "the first sync", || async {
        manifest(&app)
            .await
            .is_ok_and(|m| files_of(&m, &vms[0]).len() == 1)
    })
    .await;
    let dead = app.state.store.get_vm(&vms[0]).await.unwrap().unwrap();
    let pid = dead
        .instance_id
        .unwrap()
        .trim_start_matches("local-")
        .to_string();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    write(
        &work_dir(&app, &vms[0]).join("lost.slp"),
        b"written after the agent died",
    );

    let started = Instant::now();
    let body = destroy(&app).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "it waited for the dead agent: {waited:?}"
    );
    let collected = body["operation"]["collected"].as_array().unwrap();
    let of = |h: &str| {
        collected
            .iter()
            .find(|c| c["hostname"] == h)
            .unwrap()
            .clone()
    };
    assert_eq!(of(&vms[0])["answered"], false, "{body}");
    assert_eq!(of(&vms[0])["files"], 1, "what it synced before is kept");
    assert_eq!(of(&vms[1])["answered"], true, "{body}");
    let m = manifest(&app).await.unwrap();
    assert_eq!(m["did_not_answer"], serde_json::json!([vms[0]]));
    assert_eq!(files_of(&m, &vms[0]), [("kept.slp".to_string(), 13)]);

    // The dashboard says so, next to the download.
    let (status, html) = app.admin_get("/admin", false).await;
    assert_eq!(status, 200);
    assert!(html.contains("missed the final sync"), "{html}");
    assert!(html.contains("Download participants"));
}

/// An agent stopped with SIGTERM (a machine shutting down) syncs one last time first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_agent_syncs_last() {
    let app = spawn_app_with(Options {
        config: Some(|c| {
            collecting(c);
            c.collect.interval = Duration::from_secs(3600);
        }),
        ..Options::default()
    })
    .await;
    let vms = launch(&app, 1).await;
    eventually(
        Duration::from_secs(20),
        "the first (empty) sync",
        || async {
            shared::usecases::collect::collected((&app.state).into())
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
    write(&work_dir(&app, &vms[0]).join("at-shutdown.slp"), b"bye");
    let vm = app.state.store.get_vm(&vms[0]).await.unwrap().unwrap();
    let pid = vm
        .instance_id
        .unwrap()
        .trim_start_matches("local-")
        .to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    eventually(
        Duration::from_secs(20),
        "the file synced at shutdown",
        || async {
            manifest(&app)
                .await
                .is_ok_and(|m| files_of(&m, &vms[0]) == [("at-shutdown.slp".to_string(), 3)])
        },
    )
    .await;
}

/// Presigned URLs and downloads over HTTP, as a VM and a browser use them.
struct Http(reqwest::Client);

#[async_trait::async_trait]
impl UrlClient for Http {
    async fn put(&self, url: &UploadUrl, bytes: Vec<u8>) -> bool {
        let mut req = self.0.put(&url.url).body(bytes);
        for (k, v) in &url.headers {
            req = req.header(k, v);
        }
        req.send().await.is_ok_and(|r| r.status().is_success())
    }
    async fn get(&self, url: &str) -> Option<Vec<u8>> {
        let resp = self.0.get(url).send().await.ok()?;
        resp.status().is_success().then_some(())?;
        Some(resp.bytes().await.ok()?.to_vec())
    }
}

#[tokio::test]
async fn s3_keeps_the_work_store_contract() {
    let store = s3_work_store().await;
    run_work_store(&store, &Http(reqwest::Client::new())).await;
}

/// The whole collection on S3: presigned uploads from a "VM", the manifest, the zip
/// assembled by multipart upload and fetched through its presigned URL, byte for byte.
#[tokio::test]
async fn s3_collection_end_to_end() {
    use shared::usecases::collect::{self, Collection, OfferedFile};
    let dir = tempfile::tempdir().unwrap();
    let store = shared::adapters::SqliteStore::open(dir.path()).unwrap();
    let work = s3_work_store().await;
    let notifier = shared::adapters::InProcessNotifier::default();
    let mut config = shared::config::Config::from_lookup(|_| None).unwrap();
    config.collect.patterns = shared::domain::collect::Patterns::parse("*.slp").unwrap();
    let ports = Collection {
        vms: &store,
        work: &work,
        notifier: &notifier,
        clock: &shared::adapters::SystemClock,
        config: &config.collect,
        liveness: config.liveness(),
        limiter: shared::usecases::rate_limit::Limiter {
            counters: &store,
            clock: &shared::adapters::SystemClock,
        },
    };
    use shared::ports::VmStore as _;
    let token = "token-s3";
    store
        .insert_vm(&shared::domain::Vm::new(
            "vm-s3".into(),
            shared::domain::TokenHash::of(token),
            1,
        ))
        .await
        .unwrap();
    let vm = shared::usecases::vm_agent::authenticate(&store, "vm-s3", Some(token))
        .await
        .unwrap();
    let http = Http(reqwest::Client::new());
    // 9 MiB: the zip needs two multipart parts.
    let big: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 253) as u8).collect();
    let files = [
        ("big.slp", big.clone()),
        ("sub/small.slp", b"small".to_vec()),
    ];
    let offered: Vec<OfferedFile> = files
        .iter()
        .map(|(p, b)| OfferedFile {
            path: p.to_string(),
            size: b.len() as u64,
            sha256: sha256_hex(b),
        })
        .collect();
    let plan = collect::plan_sync(ports, &vm, offered.clone())
        .await
        .unwrap();
    assert_eq!(plan.uploads.len(), 2);
    for (path, url) in &plan.uploads {
        assert!(url.url.contains("/work/vm-s3/"), "{}", url.url);
        let bytes = &files.iter().find(|(p, _)| p == path).unwrap().1;
        assert!(http.put(url, bytes.clone()).await, "PUT {path}");
    }
    collect::finish_sync(ports, &vm, offered.clone(), vec![], None)
        .await
        .unwrap();
    let again = collect::plan_sync(ports, &vm, offered).await.unwrap();
    assert!(again.uploads.is_empty() && again.unchanged.len() == 2);

    let export = collect::export_zip(ports).await.unwrap();
    let zip = http
        .get(&export.url)
        .await
        .expect("the presigned GET works");
    let entries = unzip(&zip);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0], ("vm-s3/big.slp".to_string(), big));
    assert_eq!(
        entries[1],
        ("vm-s3/sub/small.slp".to_string(), b"small".to_vec())
    );
    // The zip is one object under exports/, beside the VM's files and manifest.
    assert_eq!(work.list("exports/").await.unwrap().len(), 1);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The numbers of docs/benchmarks.md ("Collecting participants' work"): 20 real agents with
/// 50 files each; the zip of all 1,000 files; a destroy whose final sync has a new file on
/// every VM. Run: `cargo test -p gpufleet-tests --test api -- --ignored measure_collection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: prints numbers, asserts only correctness"]
async fn measure_collection_of_20_vms() {
    let app = spawn_app_with(Options {
        config: Some(|c| {
            collecting(c);
            c.collect.interval = Duration::from_secs(3600);
            c.collect.final_wait = Duration::from_secs(15);
        }),
        ..Options::default()
    })
    .await;
    let vms = launch(&app, 20).await;
    let file: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 249) as u8).collect();
    for vm in &vms {
        for i in 0..50 {
            write(
                &work_dir(&app, vm).join(format!("labels/{i:02}.slp")),
                &file,
            );
        }
    }
    // Ask every agent for a sync now, as a destroy does, without ending anything.
    let started = Instant::now();
    let vm_records = app.state.store.list_vms().await.unwrap();
    let synced = shared::usecases::collect::final_sync((&app.state).into(), &vm_records)
        .await
        .unwrap();
    assert!(
        synced.iter().all(|s| s.answered && s.files == 50),
        "{synced:?}"
    );
    println!(
        "MEASURE sync of 20 VMs × 50 files of 64 KiB on request: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let m = manifest(&app).await.unwrap();
    let assembled = started.elapsed();
    assert_eq!(m["files"], 1000);
    let started = Instant::now();
    let zip = download(&app).await;
    println!(
        "MEASURE zip of 20 VMs × 50 files ({} MB): assembled in {assembled:?}, downloaded and unpacked in {:?}",
        m["bytes"].as_u64().unwrap() / 1_000_000,
        started.elapsed()
    );
    assert_eq!(zip.len(), 1000);

    for vm in &vms {
        write(&work_dir(&app, vm).join("final.slp"), vm.as_bytes());
    }
    let started = Instant::now();
    let body = destroy(&app).await;
    println!(
        "MEASURE destroy of 20 syncing VMs (final sync of one new file each, then all ended): {:?}",
        started.elapsed()
    );
    let collected = body["operation"]["collected"].as_array().unwrap();
    assert!(collected
        .iter()
        .all(|c| c["answered"] == true && c["files"] == 51));
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
}
