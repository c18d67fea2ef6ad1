#!/usr/bin/env bash
# Installs the real services the integration tests start privately (they never use a running system service):
# Mosquitto, InfluxDB 1.x, socat (pseudo-terminal pairs) and mbpoll (a third-party Modbus master), from Debian.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
if [ ${#need[@]} -eq 0 ]; then
    echo "test services present: mosquitto, influxd, socat, mbpoll"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "installing ${need[*]}"
$sudo apt-get update -qq
# policy-rc.d-less containers may try to start the services; the tests start their own, so stop any that did.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for service in mosquitto influxdb; do
    if command -v service >/dev/null 2>&1; then $sudo service "$service" stop >/dev/null 2>&1 || true; fi
done
# firmware_bridge: the ATmega328P toolchain and simavr (the firmware is built and emulated in the tests).
fw_need=()
command -v avr-gcc >/dev/null 2>&1 || fw_need+=(gcc-avr)
[ -f /usr/lib/avr/include/avr/io.h ] || fw_need+=(avr-libc)
command -v simavr >/dev/null 2>&1 || fw_need+=(simavr)
[ -f /usr/include/simavr/sim_avr.h ] || fw_need+=(libsimavr-dev)
if [ ${#fw_need[@]} -gt 0 ]; then
    fw_sudo=""
    if [ "$(id -u)" -ne 0 ]; then fw_sudo="sudo"; fi
    echo "installing ${fw_need[*]}"
    $fw_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $fw_sudo apt-get install -y -qq --no-install-recommends "${fw_need[@]}" >/dev/null
fi
