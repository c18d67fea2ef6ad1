#!/usr/bin/env bash
# Installs, from Debian, what the tests need beyond Python: the real services they start privately (they never
# use a running system service) — Mosquitto, InfluxDB 1.x, socat (pseudo-terminal pairs), mbpoll (a third-party
# Modbus master), strace (the chaos harness kills the station inside a write of its buffer with it) — and the
# ATmega328P toolchain plus simavr for firmware_bridge (built and emulated in the tests);
# for the site carbon report: poppler-utils (pdftoppm, pdftotext, pdfinfo read the PDF back) and chromium (opens the
# HTML page headless); for the station installer (tests/test_deploy_station.py): systemd (systemd-analyze verifies every
# unit, systemd-sysusers makes the service user in a test root; nothing is started) and shellcheck; for the
# VictoriaMetrics store (tests/central/test_store_*contract.py): victoria-metrics, the single-node server.
# Installs only what is missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v avr-gcc >/dev/null 2>&1 || need+=(gcc-avr)
[ -f /usr/lib/avr/include/avr/io.h ] || need+=(avr-libc)
command -v simavr >/dev/null 2>&1 || need+=(simavr)
[ -f /usr/include/simavr/sim_avr.h ] || need+=(libsimavr-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
if [ ${#need[@]} -eq 0 ]; then
    echo "test dependencies present: mosquitto, influxd, socat, mbpoll, strace, avr-gcc, avr-libc, simavr, poppler-utils," \
        "chromium, systemd-analyze, shellcheck, victoria-metrics"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "installing ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Some containers start the services on install; the tests start their own, so stop any that did.
for service in mosquitto influxdb victoria-metrics; do
    if command -v service >/dev/null 2>&1; then $sudo service "$service" stop >/dev/null 2>&1 || true; fi
done
