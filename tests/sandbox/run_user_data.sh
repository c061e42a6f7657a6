#!/bin/bash
# Runs a rendered VM bootstrap (shared/src/adapters/aws/ec2/user_data.sh) as root in a private mount namespace
# where /etc is a throwaway copy and /opt, /home, /usr/local/bin and /var/log are empty
# throwaway directories, all under ROOT, and /root, /run, /var/spool, /var/lib, /var/cache
# and /var/tmp are empty memory file systems; stub commands (STUBS) come first on PATH. The real
# machine's files are never written. Usage: run_user_data.sh SCRIPT ROOT STUBS [OS_ID]
# (OS_ID replaces the copy's /etc/os-release, e.g. ubuntu or amzn). Run twice over the same
# ROOT, the second script sees what the first left (a bake, then a boot). Needs root and
# unshare. Extra arguments go to the script.
set -euo pipefail
script=$1 root=$2 stubs=$3 os_id=${4:-}
shift 4 || shift $#
mkdir -p "$root"/{opt,home,usr-local-bin,var-log,tmp}
[ -d "$root/etc" ] || cp -a /etc "$root/etc"
if [ -n "$os_id" ]; then
  rm -f "$root/etc/os-release"
  printf 'ID=%s\nNAME=%s\n' "$os_id" "$os_id" > "$root/etc/os-release"
fi
exec unshare --mount --propagation private -- bash -c '
  set -euo pipefail
  root=$1 script=$2 stubs=$3
  shift 3
  mount --bind "$root/etc" /etc
  mount --bind "$root/opt" /opt
  mount --bind "$root/home" /home
  mount --bind "$root/usr-local-bin" /usr/local/bin
  mount --bind "$root/var-log" /var/log
  # Nothing else the script might write is the real one either.
  for d in /root /run /var/spool /var/lib /var/cache /var/tmp; do mount -t tmpfs tmpfs "$d"; done
  export PATH="$stubs:$PATH" TMPDIR="$root/tmp" STUB_LOG="$stubs/calls.log" STUBS="$stubs"
  exec bash "$script" "$@"
' _ "$root" "$script" "$stubs" "$@"
