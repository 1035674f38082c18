#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv: Debian's `prometheus` (which
# brings `promtool`), for the local Prometheus and the PrometheusRule tests.
#
# Idempotent: installs nothing when both binaries are already on PATH, so `make test` can call
# it every time. Only root can install; anyone else gets a message saying what is missing and
# the tests that need it fail under CI (they skip, with this script's name, outside CI).
set -euo pipefail

missing=()
for binary in prometheus promtool; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${missing[*]}; run as root (or: sudo apt-get install --no-install-recommends prometheus)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${missing[*]} and no apt-get here; install the prometheus package by hand" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: the recommended extras (node exporter, web assets) are not needed.
# Debian's package installs a systemd unit; nothing starts it in a container without systemd.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "system-deps: installed $(prometheus --version 2>&1 | head -n 1)"
