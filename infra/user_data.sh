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
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
GPUFLEET_UNIT
systemctl daemon-reload
systemctl enable --now gpufleet-agent.service

boot_end=$(date +%s)
curl -fsS --retry 5 -X POST '__API_URL__/api/vm-metrics/__HOSTNAME__' \
  -H 'Content-Type: application/json' -H 'Authorization: Bearer __TOKEN__' \
  -d "{\"cloud_init_start\": $boot_start, \"cloud_init_end\": $boot_end}" || true
