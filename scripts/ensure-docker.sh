#!/usr/bin/env bash
# Make sure the binaries tamer's integration tests need are present: dockerd
# (the tests start their own private engine), busybox (test images are built
# from it, no registry is reachable), zstd (backups) and faketime (age rules).
set -u
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
{ [ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1; } || missing+=(busybox-static)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
# faketime shifts one process's clock: every age rule is tested with it.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
# sshd (the fleet tests log in to three loopback sshd's), Prometheus (the metrics test scrapes
# tamer with a real server; promtool checks the text format), systemd-analyze (unit checks).
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "!!! tamer integration tests need: ${missing[*]} (not installed, and not root to install them)." >&2
  echo "!!! They will be SKIPPED. Install with: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "installing ${missing[*]} for tamer's integration tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
