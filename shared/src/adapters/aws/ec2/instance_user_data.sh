#!/bin/bash
# gpufleet instance bootstrap for POST /api/v1/instances on aws_ec2, rendered per instance by
# shared/src/adapters/aws/ec2/user_data.rs and sent gzipped as EC2 user_data.
# The caller's values (SSH key, image, start-up script) arrive only as base64 inside single
# quotes: the shell never parses them, so no value can break out of this script. The login
# user is validated against [a-z_][a-z0-9_-]* before it is put here.
set -euo pipefail
exec > >(tee -a /var/log/gpufleet-instance.log) 2>&1
LOGIN_USER='__SSH_USER__'
install -d -m 0700 /etc/gpufleet
echo '__SSH_KEY_B64__' | base64 -d > /etc/gpufleet/ssh_key.pub
echo '__IMAGE_B64__' | base64 -d > /etc/gpufleet/image
echo '__ONSTART_B64__' | base64 -d > /etc/gpufleet/onstart.sh
chmod 0700 /etc/gpufleet/onstart.sh

# The caller's public key, for the image's login user.
if [ -s /etc/gpufleet/ssh_key.pub ] && id "$LOGIN_USER" >/dev/null 2>&1; then
  home=$(getent passwd "$LOGIN_USER" | cut -d: -f6)
  install -d -m 0700 -o "$LOGIN_USER" "$home/.ssh"
  { cat /etc/gpufleet/ssh_key.pub; echo; } >> "$home/.ssh/authorized_keys"
  chown "$LOGIN_USER" "$home/.ssh/authorized_keys"
  chmod 0600 "$home/.ssh/authorized_keys"
fi

# The container image, with the GPUs, restarted with the machine.
image=$(cat /etc/gpufleet/image)
if [ -n "$image" ]; then
  if ! command -v docker >/dev/null; then
    (command -v dnf >/dev/null && dnf install -y -q docker) || (apt-get update -q && apt-get install -y -q docker.io)
  fi
  systemctl enable --now docker
  gpu_flags=()
  if command -v nvidia-smi >/dev/null; then gpu_flags=(--gpus all); fi
  docker pull "$image"
  docker run -d --name gpufleet-workload --restart unless-stopped --network host "${gpu_flags[@]}" "$image"
fi

# The caller's start-up script runs last, as root on the machine (it is theirs).
if [ -s /etc/gpufleet/onstart.sh ]; then
  /bin/bash /etc/gpufleet/onstart.sh
fi
