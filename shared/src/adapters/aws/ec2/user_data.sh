#!/bin/bash
# gpufleet VM bootstrap, rendered per VM by the provisioner (shared/src/adapters/aws/ec2/user_data.rs) and
# sent gzipped as EC2 user_data. Every __PLACEHOLDER__ is validated before it is put here
# (hostname: [a-z0-9-]; token: hex; URLs: a strict character set; user and process names:
# [a-z0-9_-]), and the values only ever appear inside single quotes, quoted heredocs or as
# single words, so nothing can break out of this script.
#
# It makes the VM able to serve its participant a remote desktop: an unprivileged desktop
# user (whose home is the participant's working directory) in the chrome-remote-desktop
# group, an XFCE session for Chrome Remote Desktop, the CRD host, the CloudWatch agent and
# the gpufleet agent. What the image lacks is installed where a package exists (Ubuntu);
# otherwise the VM is reported `error`, naming what is missing. Each step's time is reported
# as a startup metric. docs/vm-image.md says what an image needs; infra/bake_image.sh bakes one.
set -Eeuo pipefail
exec > >(tee -a /var/log/gpufleet-bootstrap.log) 2>&1
boot_start=$(date +%s)

API='__API_URL__'
HOST='__HOSTNAME__'
DESKTOP_USER='__DESKTOP_USER__'
IN_USE_PROCESS='__IN_USE_PROCESS__'
CRD_START_HOST=/opt/google/chrome-remote-desktop/start-host

api() {
  curl -fsS --retry 5 -X POST "$API$1" -H 'Content-Type: application/json' \
    -H 'Authorization: Bearer __TOKEN__' -d "$2"
}
timings=""
record() { timings="$timings, \"$1_start\": $2, \"$1_end\": $(date +%s)"; }
fail() {
  trap - ERR
  echo "gpufleet: $1"
  api /api/vm-status "{\"hostname\": \"$HOST\", \"status\": \"error\", \"reason\": \"$1\"}" || true
  exit 1
}
# Any step that fails unexpectedly is reported, not left to the boot timeout.
trap 'fail "the boot script failed at line $LINENO; see /var/log/gpufleet-bootstrap.log"' ERR

# Which package manager can fill what the image lacks.
os_id=""
[ -r /etc/os-release ] && os_id=$(. /etc/os-release && echo "${ID:-}")
case "$os_id" in
  ubuntu|debian) pm=apt ;;
  amzn) pm=dnf ;;
  *) pm=none ;;
esac
# First boots often find apt's lock held by its daily timers: wait for it. No recommended
# extras (XFCE's would bring a display manager onto the GPU).
apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -q || return 1
    apt_updated=yes
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "$@"
}
missing=""

install -d -m 0700 /etc/gpufleet
cat > /etc/gpufleet/agent.env <<'GPUFLEET_ENV'
GPUFLEET_ALLOCATOR_URL=__API_URL__
GPUFLEET_HOSTNAME=__HOSTNAME__
GPUFLEET_AGENT_TOKEN=__TOKEN__
GPUFLEET_DESKTOP_USER=__DESKTOP_USER__
GPUFLEET_ENV
if [ -n "$IN_USE_PROCESS" ]; then
  echo "GPUFLEET_WATCH_PROCESS=$IN_USE_PROCESS" >> /etc/gpufleet/agent.env
fi
chmod 0600 /etc/gpufleet/agent.env
hostnamectl set-hostname "$HOST" || true
# The participant's session must not read this script (and the VM's token) or the instance
# role from the metadata service: only root may reach it. The agent's unit re-applies this
# at every boot (firewall rules do not survive a reboot).
imds_rule=(OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT)
if command -v iptables >/dev/null; then
  iptables -C "${imds_rule[@]}" 2>/dev/null || iptables -I "${imds_rule[@]}"
else
  missing="$missing iptables,"
fi

# Boot and cloud-init logs to CloudWatch Logs (the deployment's VM log group, one stream per
# hostname), where the logs-subscriber function appends them to this VM's log. The agent sends
# its own lines through the API, so they are not collected twice. Not fatal when missing;
# first, so a boot that fails later still ships its log.
LOG_GROUP='__LOG_GROUP__'
CWA=/opt/aws/amazon-cloudwatch-agent
if [ -n "$LOG_GROUP" ]; then
  t=$(date +%s)
  if [ ! -x "$CWA/bin/amazon-cloudwatch-agent-ctl" ]; then
    case "$pm" in
      dnf) dnf install -y -q amazon-cloudwatch-agent || true ;;
      apt)
        cwa_deb=$(mktemp --suffix=.deb)
        curl -fsSL --retry 5 -o "$cwa_deb" \
          https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb \
          && dpkg -i -E "$cwa_deb" || true ;;
    esac
  fi
  if [ -x "$CWA/bin/amazon-cloudwatch-agent-ctl" ]; then
    cat > "$CWA/etc/gpufleet.json" <<'GPUFLEET_CWA'
{"logs": {"logs_collected": {"files": {"collect_list": [
  {"file_path": "/var/log/gpufleet-bootstrap.log", "log_group_name": "__LOG_GROUP__", "log_stream_name": "__LOG_STREAM__"},
  {"file_path": "/var/log/cloud-init-output.log", "log_group_name": "__LOG_GROUP__", "log_stream_name": "__LOG_STREAM__"}
]}}}}
GPUFLEET_CWA
    "$CWA/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s -c "file:$CWA/etc/gpufleet.json" || true
  else
    echo "no CloudWatch agent on this image; logs reach gpufleet through the agent only"
  fi
  record cloudwatch "$t"
fi

# The participant's desktop user and session: start-host refuses to run as root.
t=$(date +%s)
getent group chrome-remote-desktop >/dev/null || groupadd --system chrome-remote-desktop
if ! id -u "$DESKTOP_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --comment 'gpufleet participant' "$DESKTOP_USER"
fi
# An existing account must be an unprivileged one (the participant gets its session).
if [ "$(id -u "$DESKTOP_USER")" -lt 1000 ] \
  || id -Gn "$DESKTOP_USER" | tr ' ' '\n' | grep -qxE 'sudo|admin|wheel|root'; then
  fail "the desktop user $DESKTOP_USER is a system account or an administrator; choose another DesktopUser"
fi
usermod -a -G chrome-remote-desktop "$DESKTOP_USER"
if ! command -v xfce4-session >/dev/null; then
  if [ "$pm" = apt ]; then
    apt_install xfce4 xfce4-terminal dbus-x11 || missing="$missing a desktop (XFCE),"
  else
    missing="$missing a desktop (XFCE),"
  fi
fi
cat > /etc/chrome-remote-desktop-session <<'GPUFLEET_SESSION'
exec /usr/bin/xfce4-session
GPUFLEET_SESSION
chmod 0644 /etc/chrome-remote-desktop-session
record desktop "$t"

# The Chrome Remote Desktop host (Google publishes it for Debian/Ubuntu on x86_64 only).
t=$(date +%s)
if [ ! -x "$CRD_START_HOST" ]; then
  if [ "$pm" = apt ]; then
    crd_deb=$(mktemp --suffix=.deb)
    if curl -fsSL --retry 5 -o "$crd_deb" \
      https://dl.google.com/linux/direct/chrome-remote-desktop_current_amd64.deb; then
      apt_install "$crd_deb" || missing="$missing Chrome Remote Desktop,"
    else
      missing="$missing Chrome Remote Desktop (download failed),"
    fi
  else
    missing="$missing Chrome Remote Desktop,"
  fi
fi
record crd "$t"

# The agent: baked into the image, or downloaded once.
if [ ! -x /usr/local/bin/gpufleet ]; then
  curl -fsSL --retry 5 --retry-delay 3 -o /usr/local/bin/gpufleet '__AGENT_URL__'
  chmod 0755 /usr/local/bin/gpufleet
fi

if [ -n "$missing" ]; then
  fail "this image lacks:${missing%,}; bake an image with infra/bake_image.sh (docs/vm-image.md)"
fi

# The agent runs as root (it switches to the desktop user to start the host) and restarts.
cat > /etc/systemd/system/gpufleet-agent.service <<'GPUFLEET_UNIT'
[Unit]
Description=gpufleet agent (status, GPU health, assignment, remote desktop, logs)
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=/etc/gpufleet/agent.env
ExecStartPre=/bin/sh -c 'iptables -C OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT 2>/dev/null || iptables -I OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT'
ExecStart=/usr/local/bin/gpufleet agent --execute-crd
StandardOutput=append:/var/log/gpufleet-agent.log
StandardError=append:/var/log/gpufleet-agent.log
Restart=always
RestartSec=5
# At shutdown (a destroy ends the machine) the agent syncs the participant's work once more.
TimeoutStopSec=75

[Install]
WantedBy=multi-user.target
GPUFLEET_UNIT
systemctl daemon-reload
systemctl enable --now gpufleet-agent.service

api "/api/vm-metrics/$HOST" \
  "{\"cloud_init_start\": $boot_start, \"cloud_init_end\": $(date +%s)$timings}" || true
