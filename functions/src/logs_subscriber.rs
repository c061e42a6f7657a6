//! The CloudWatch Logs subscription function: the VMs' CloudWatch agent writes to one log
//! group, each VM to its stream `<hostname>.<proof>` (`TokenHash::log_stream`); the
//! subscription delivers batches here (base64 + gzip, decoded by `LogsEvent`), and the
//! lines go through the same use case as `POST /api/vm-logs` once the proof is checked.

use aws_lambda_events::cloudwatch_logs::LogsEvent;
use shared::usecases::vm_agent;
use shared::{AppState, Error};

/// Appends the batch's messages to the VM whose stream it is. A stream that names no VM (a
/// machine already destroyed) or carries a wrong proof (one VM writing under another's
/// name) is dropped with a log line: retrying could never succeed.
pub async fn handle(state: &AppState, event: LogsEvent) -> Result<usize, Error> {
    let data = event.aws_logs.data;
    if data.message_type == "CONTROL_MESSAGE" {
        return Ok(0); // CloudWatch's own reachability probe
    }
    let messages: Vec<&str> = data.log_events.iter().map(|e| e.message.as_str()).collect();
    match vm_agent::append_stream_logs(state.into(), &data.log_stream, &messages).await {
        Ok(kept) => Ok(kept),
        Err(Error::NotFound(_)) => {
            tracing::warn!(stream = %data.log_stream, group = %data.log_group, "logs for an unknown VM dropped");
            Ok(0)
        }
        Err(Error::Forbidden(_)) => {
            tracing::warn!(stream = %data.log_stream, group = %data.log_group, "logs in a stream without its VM's proof dropped");
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::TestState;
    use base64::Engine as _;
    use std::io::Write as _;

    /// A subscription event exactly as CloudWatch sends it: JSON, gzipped, base64.
    fn event(stream: &str, messages: &[&str]) -> LogsEvent {
        let data = serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/gpufleet/vms",
            "logStream": stream,
            "subscriptionFilters": ["gpufleet-vm-logs"],
            "logEvents": messages.iter().enumerate().map(|(i, m)| serde_json::json!({
                "id": i.to_string(), "timestamp": 1_795_327_200_000i64 + i as i64, "message": m
            })).collect::<Vec<_>>(),
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data.to_string().as_bytes()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        // Parsed from text, as the Lambda runtime parses the invocation payload.
        let payload = serde_json::json!({"awslogs": {"data": encoded}}).to_string();
        serde_json::from_str(&payload).unwrap()
    }

    fn stream_of(hostname: &str) -> String {
        // As test_support's `vm` makes them.
        shared::domain::TokenHash::of(&format!("token-{hostname}")).log_stream(hostname)
    }

    #[tokio::test]
    async fn a_real_payload_lands_under_the_right_vm() {
        let t = TestState::new();
        t.vm("vm-1").await;
        t.vm("vm-2").await;
        let kept = handle(
            &t.state,
            event(
                &stream_of("vm-2"),
                &["\u{1b}[32mcloud-init: ok\u{1b}[0m", "agent started"],
            ),
        )
        .await
        .unwrap();
        assert_eq!(kept, 2);
        let page = t.state.store.read_logs("vm-2", 0).await.unwrap().unwrap();
        assert_eq!(page.lines, vec!["cloud-init: ok", "agent started"]);
        assert_eq!(t.state.store.read_logs("vm-1", 0).await.unwrap(), None);
        assert_eq!(handle(&t.state, event("ghost", &["x"])).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_vm_cannot_write_into_another_vms_log() {
        let t = TestState::new();
        t.vm("vm-1").await;
        t.vm("vm-2").await;
        // vm-2's role may write any stream: the bare hostname, vm-1's own proof under
        // vm-2's name, or a guessed proof are all dropped.
        let vm1_proof = stream_of("vm-1");
        let vm1_proof = vm1_proof.rsplit_once('.').unwrap().1;
        for forged in [
            "vm-1".to_string(),
            format!("vm-2.{vm1_proof}"),
            "vm-1.00000000000000000000000000000000".to_string(),
            "vm-1.".to_string(),
            ".".to_string(),
        ] {
            assert_eq!(
                handle(&t.state, event(&forged, &["forged line"]))
                    .await
                    .unwrap(),
                0,
                "{forged}"
            );
        }
        assert_eq!(t.state.store.read_logs("vm-1", 0).await.unwrap(), None);
        assert_eq!(t.state.store.read_logs("vm-2", 0).await.unwrap(), None);
    }
}
