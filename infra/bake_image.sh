#!/bin/bash
# Bakes a gpufleet VM image, so VMs boot in seconds instead of installing a desktop each
# time: XFCE, the Chrome Remote Desktop host, the CloudWatch agent and the gpufleet agent.
# Start from an Ubuntu GPU image with the NVIDIA driver (e.g. an AWS Deep Learning AMI on
# Ubuntu, x86_64: Google ships the CRD host for Debian/Ubuntu amd64 only), run this as root,
# then create an AMI from the instance and pass it as the AmiId parameter. It works by hand
# over SSH, as an EC2 Image Builder component (one ExecuteBash step) or as a Packer shell
# provisioner. The desktop user is not created here: each VM's user_data creates it.
#
#   sudo bash infra/bake_image.sh https://<bucket>.s3.amazonaws.com/gpufleet   # the agent binary
set -euo pipefail
agent_url=${1:?usage: bake_image.sh AGENT_URL (where to download the gpufleet agent binary)}
case "$agent_url" in https://*|http://*) ;; *) echo "AGENT_URL must be an http(s) URL"; exit 2 ;; esac
os_id=$(. /etc/os-release && echo "${ID:-}")
case "$os_id" in
  ubuntu|debian) ;;
  *) echo "bake_image.sh: needs Ubuntu or Debian (the Chrome Remote Desktop host is a .deb); found '$os_id'"; exit 1 ;;
esac
[ "$(uname -m)" = x86_64 ] || { echo "bake_image.sh: the Chrome Remote Desktop host is x86_64 only"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n==> %s\n' "$*"; }

apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

step "desktop: XFCE (no recommended extras: no display manager on the GPU)"
apt update -q
apt install -y -q --no-install-recommends xfce4 xfce4-terminal dbus-x11 curl iptables

step "Chrome Remote Desktop host"
curl -fsSL --retry 5 -o "$tmp/crd.deb" \
  https://dl.google.com/linux/direct/chrome-remote-desktop_current_amd64.deb
apt install -y -q --no-install-recommends "$tmp/crd.deb"

step "CloudWatch agent (ships boot logs to the deployment's VM log group)"
curl -fsSL --retry 5 -o "$tmp/cwa.deb" \
  https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb
dpkg -i -E "$tmp/cwa.deb"

step "gpufleet agent"
curl -fsSL --retry 5 -o /usr/local/bin/gpufleet "$agent_url"
chmod 0755 /usr/local/bin/gpufleet

step "checks"
command -v nvidia-smi >/dev/null \
  || echo "warning: no nvidia-smi: this image has no NVIDIA driver; VMs will report GPU n/a"
[ -x /opt/google/chrome-remote-desktop/start-host ] \
  || { echo "the Chrome Remote Desktop host did not install"; exit 1; }
command -v xfce4-session >/dev/null || { echo "XFCE did not install"; exit 1; }
apt clean
echo "baked: create an AMI from this instance and deploy with AmiId=<its id>"
