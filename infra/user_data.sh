#!/bin/bash
# gpufleet VM bootstrap, rendered per VM by the provisioner (shared/src/adapters/ec2.rs) and
# sent gzipped as EC2 user_data. Every __PLACEHOLDER__ is validated before it is put here
# (hostname: [a-z0-9-]; token: hex; URLs: a strict character set), and the values only ever
# appear inside quoted heredocs or as single words, so nothing can break out of this script.
set -euo pipefail
exec > >(tee -a /var/log/gpufleet-bootstrap.log) 2>&1
boot_start=$(date +%s)

install -d -m 0700 /etc/gpufleet
cat > /etc/gpufleet/agent.env <<'GPUFLEET_ENV'
GPUFLEET_ALLOCATOR_URL=__API_URL__
GPUFLEET_HOSTNAME=__HOSTNAME__
GPUFLEET_AGENT_TOKEN=__TOKEN__
GPUFLEET_ENV
chmod 0600 /etc/gpufleet/agent.env
hostnamectl set-hostname '__HOSTNAME__' || true

# The agent: baked into the AMI, or downloaded once.
if [ ! -x /usr/local/bin/gpufleet ]; then
  curl -fsSL --retry 5 --retry-delay 3 -o /usr/local/bin/gpufleet '__AGENT_URL__'
  chmod 0755 /usr/local/bin/gpufleet
fi

cat > /etc/systemd/system/gpufleet-agent.service <<'GPUFLEET_UNIT'
[Unit]
Description=gpufleet agent (status, GPU health, assignment, logs)
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=/etc/gpufleet/agent.env
ExecStart=/usr/local/bin/gpufleet agent --execute-crd
StandardOutput=append:/var/log/gpufleet-agent.log
StandardError=append:/var/log/gpufleet-agent.log
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
GPUFLEET_UNIT
systemctl daemon-reload
systemctl enable --now gpufleet-agent.service

# Boot and cloud-init logs to CloudWatch Logs (the deployment's VM log group, one stream per
# hostname), where the logs-subscriber function appends them to this VM's log. The agent sends
# its own lines through the API, so they are not collected twice.
LOG_GROUP='__LOG_GROUP__'
CWA=/opt/aws/amazon-cloudwatch-agent
if [ -n "$LOG_GROUP" ]; then
  if [ ! -x "$CWA/bin/amazon-cloudwatch-agent-ctl" ] && command -v dnf >/dev/null; then
    dnf install -y -q amazon-cloudwatch-agent || true
  fi
  if [ -x "$CWA/bin/amazon-cloudwatch-agent-ctl" ]; then
    cat > "$CWA/etc/gpufleet.json" <<'GPUFLEET_CWA'
{"logs": {"logs_collected": {"files": {"collect_list": [
  {"file_path": "/var/log/gpufleet-bootstrap.log", "log_group_name": "__LOG_GROUP__", "log_stream_name": "__HOSTNAME__"},
  {"file_path": "/var/log/cloud-init-output.log", "log_group_name": "__LOG_GROUP__", "log_stream_name": "__HOSTNAME__"}
]}}}}
GPUFLEET_CWA
    "$CWA/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s -c "file:$CWA/etc/gpufleet.json" || true
  else
    echo "no CloudWatch agent on this image; logs reach gpufleet through the agent only"
  fi
fi

boot_end=$(date +%s)
curl -fsS --retry 5 -X POST '__API_URL__/api/vm-metrics/__HOSTNAME__' \
  -H 'Content-Type: application/json' -H 'Authorization: Bearer __TOKEN__' \
  -d "{\"cloud_init_start\": $boot_start, \"cloud_init_end\": $boot_end}" || true
