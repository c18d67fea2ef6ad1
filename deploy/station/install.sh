#!/usr/bin/env bash
# Install, update and roll back the sinkwatch station software on Raspberry Pi OS / Debian (bookworm or later).
#
#   sudo deploy/station/install.sh                  install from this source tree (again: refresh the system files
#                                                   and install this tree as a new version)
#   sudo deploy/station/install.sh --update SPEC    install SPEC as a new version, check the config with it, switch,
#                                                   restart; back to the old version by itself if it does not start
#   sudo deploy/station/install.sh --rollback       back to the previous version, restart
#   deploy/station/install.sh --list                the installed versions
#
# SPEC: a source tree, a wheel or sdist file, a version number from the package index, or the name of an installed
# version (--list) to switch to.
# Options: --source SPEC          what a first install installs (default: this source tree)
#          --serial NAME=SERIAL[:IF]  /dev/sinkwatch/NAME for the USB serial adapter with that serial number (and
#                                 interface, default 00); repeat for each adapter; replaces the names given before
#          --wheelhouse DIR       install from wheels in DIR only (a station without internet)
#          --python PYTHON        the interpreter of the virtualenvs (default python3, at least 3.11)
#          --keep N               installed versions to keep, current and previous included (default 3)
#          --no-start             install, but do not (re)start the service
#          --root DIR             install below DIR instead of / (tests, inspection): nothing outside DIR changes,
#                                 no systemctl or udevadm; the virtualenvs work in place below DIR only
#
# Layout (docs/operations.md, "Station installation"):
#   /opt/sinkwatch/versions/<version>/   one virtualenv per installed version, never changed once installed
#   /opt/sinkwatch/current  -> versions/<version>   what the service runs; switched with one rename
#   /opt/sinkwatch/previous -> versions/<version>   what --rollback returns to
#   /etc/sinkwatch/          station.yaml, mqtt-password, signing-key (sinkwatch 0600) in a folder root:sinkwatch 0770: the
#                            daemon writes a config the operator pushes
#   /var/lib/sinkwatch/      the reading buffer (sinkwatch:sinkwatch 0750)
#   /etc/systemd/system/sinkwatch-station.service, /etc/sysusers.d/sinkwatch.conf,
#   /etc/udev/rules.d/70-sinkwatch-serial.rules (+ 71-sinkwatch-names.rules), /etc/systemd/journald.conf.d/50-sinkwatch.conf
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/../.." && pwd)"
PREFIX=/opt/sinkwatch
SERVICE=sinkwatch-station.service
CONF_DIR=/etc/sinkwatch
STATE_DIR=/var/lib/sinkwatch
NAMES_RULES=/etc/udev/rules.d/71-sinkwatch-names.rules

MODE=install
SPEC=""
ROOT=""
WHEELHOUSE=""
PYTHON=python3
KEEP=3
START=1
SERIALS=()
SERIALS_GIVEN=0
CLEANUP=()

say() { printf 'install.sh: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }
on_exit() { local path; for path in "${CLEANUP[@]}"; do rm -rf -- "$path"; done; }
trap on_exit EXIT

while [ $# -gt 0 ]; do
    case "$1" in
        --update) [ $# -ge 2 ] || usage; MODE=update; SPEC="$2"; shift 2 ;;
        --rollback) MODE=rollback; shift ;;
        --list) MODE=list; shift ;;
        --source) [ $# -ge 2 ] || usage; SPEC="$2"; shift 2 ;;
        --serial) [ $# -ge 2 ] || usage; SERIALS+=("$2"); SERIALS_GIVEN=1; shift 2 ;;
        --wheelhouse) [ $# -ge 2 ] || usage; WHEELHOUSE="$(cd "$2" && pwd)"; shift 2 ;;
        --python) [ $# -ge 2 ] || usage; PYTHON="$2"; shift 2 ;;
        --keep) [ $# -ge 2 ] || usage; KEEP="$2"; shift 2 ;;
        --no-start) START=0; shift ;;
        --root) [ $# -ge 2 ] || usage; mkdir -p "$2"; ROOT="$(cd "$2" && pwd)"; shift 2 ;;
        -h|--help) usage ;;
        *) say "unknown argument: $1"; usage ;;
    esac
done
if ! [[ "$KEEP" =~ ^[0-9]+$ ]] || [ "$KEEP" -lt 2 ]; then
    fail "--keep $KEEP: give a number of at least 2 (current and previous)"
fi

r() { printf '%s%s' "$ROOT" "$1"; }  # a path in the target root

# --- versions ---------------------------------------------------------------------------------------------------

link_name() {  # the version a symlink (current, previous) points to, or nothing
    local target
    target="$(readlink "$(r "$PREFIX/$1")" 2>/dev/null)" || return 0
    printf '%s' "${target#versions/}"
}

installed() { [ -n "$1" ] && [[ "$1" != */* ]] && [ -x "$(r "$PREFIX/versions/$1/bin/sinkwatch")" ]; }

version_of() {  # the version number a SPEC installs
    local spec="$1" base
    if [ -d "$spec" ]; then
        [ -f "$spec/pyproject.toml" ] || fail "$spec is a folder without pyproject.toml: not a sinkwatch source tree"
        "$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
            "$spec/pyproject.toml"
    elif [ -f "$spec" ]; then
        base="$(basename "$spec")"
        case "$base" in
            sinkwatch-*.whl) printf '%s\n' "$base" | cut -d- -f2 ;;
            sinkwatch-*.tar.gz) base="${base#sinkwatch-}"; printf '%s\n' "${base%.tar.gz}" ;;
            *) fail "$spec: not a sinkwatch wheel (sinkwatch-<version>-...whl) or sdist (sinkwatch-<version>.tar.gz)" ;;
        esac
    elif [[ "$spec" =~ ^[0-9][0-9A-Za-z.+!]*$ ]]; then
        printf '%s\n' "$spec"
    else
        fail "$spec: not a source tree, a wheel or sdist file, a version number or an installed version (--list)"
    fi
}

fresh_name() {  # a folder name under versions/ for VERSION that is not taken: 0.2.0, else 0.2.0-2, 0.2.0-3, ...
    local name="$1" n=2
    while [ -e "$(r "$PREFIX/versions/$name")" ]; do name="$1-$n"; n=$((n + 1)); done
    printf '%s' "$name"
}

check_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found: apt-get install python3 python3-venv"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || fail "$PYTHON is older than 3.11: sinkwatch needs Python 3.11 (Debian bookworm, Raspberry Pi OS 12)"
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        [ -z "$ROOT" ] || fail "$PYTHON cannot make virtualenvs: apt-get install python3-venv"
        say "installing python3-venv (virtualenvs)"
        apt-get install -y -qq python3-venv >/dev/null
    fi
}

# Installs SPEC into a new virtualenv under versions/ and sets NEW to its name; on any failure the half-made
# virtualenv is removed and nothing else has changed.
install_version() {
    local spec="$1" version dir requirement staging
    check_python
    version="$(version_of "$spec")"
    NEW="$(fresh_name "$version")"
    dir="$(r "$PREFIX/versions/$NEW")"
    mkdir -p "$(r "$PREFIX/versions")"
    CLEANUP+=("$dir")
    say "installing sinkwatch $version from $spec into $PREFIX/versions/$NEW"
    "$PYTHON" -m venv "$dir"
    if [ -d "$spec" ]; then
        # pip builds a source tree in place; build a copy so the tree (a checkout, a read-only medium) is not touched
        staging="$(mktemp -d)"
        CLEANUP+=("$staging")
        tar -C "$spec" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
            --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache -cf - . \
            | tar -C "$staging" -xf -
        requirement="${staging}[station]"
    elif [ -f "$spec" ]; then
        requirement="$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")[station]"
    else
        requirement="sinkwatch[station]==$spec"
    fi
    local pip_options=(--quiet --disable-pip-version-check)
    [ -z "$WHEELHOUSE" ] || pip_options+=(--no-index --find-links "$WHEELHOUSE")
    "$dir/bin/pip" install "${pip_options[@]}" "$requirement" \
        || fail "pip could not install $requirement (nothing changed; the service still runs $(link_name current))"
    local got
    got="$("$dir/bin/sinkwatch" version)" || fail "the new version's sinkwatch command does not run (nothing changed)"
    printf 'version=%s\nsource=%s\ninstalled=%s\n' "$got" "$spec" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        > "$dir/.sinkwatch-install"
    local kept=() path
    for path in "${CLEANUP[@]}"; do [ "$path" = "$dir" ] || kept+=("$path"); done
    CLEANUP=("${kept[@]}")  # the new version stays
    say "installed sinkwatch $got as $PREFIX/versions/$NEW"
}

# The station's config checked by version NAME's own validator (the one `sinkwatch station validate` runs), before
# the service is switched to it.
validate_with() {
    local config
    config="$(r "$CONF_DIR/station.yaml")"
    [ -f "$config" ] || { say "no $CONF_DIR/station.yaml yet: nothing to check"; return 0; }
    "$(r "$PREFIX/versions/$1/bin/sinkwatch")" station validate -c "$config" >&2
}

set_link() {  # set_link current|previous NAME, with one rename (a reader sees the old or the new link, never none)
    local tmp
    tmp="$(r "$PREFIX/.$1.new")"
    rm -f "$tmp"
    ln -s "versions/$2" "$tmp"
    mv -T "$tmp" "$(r "$PREFIX/$1")"
}

switch_to() {
    local old
    old="$(link_name current)"
    [ "$old" != "$1" ] || return 0
    set_link current "$1"
    [ -z "$old" ] || set_link previous "$old"
    say "current version: $1${old:+ (previous: $old)}"
}

prune() {  # remove the oldest versions beyond --keep, never current or previous
    local current previous name count=0
    current="$(link_name current)"
    previous="$(link_name previous)"
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        count=$((count + 1))
        if [ "$count" -gt "$KEEP" ] && [ "$name" != "$current" ] && [ "$name" != "$previous" ]; then
            say "removing old version $name (--keep $KEEP)"
            rm -rf -- "$(r "$PREFIX/versions/$name")"
        fi
    done < <(cd "$(r "$PREFIX/versions")" 2>/dev/null && ls -1t)
}

# --- the service ------------------------------------------------------------------------------------------------

systemd_here() { [ -z "$ROOT" ]; }

# Restart the service on the current version and tell whether it runs. Type=notify: `systemctl restart` returns once
# the daemon said READY=1 and fails when it exits first; a daemon that dies just after is caught by asking again.
restart_service() {
    if ! systemd_here; then say "--root: not starting $SERVICE"; return 0; fi
    systemctl daemon-reload
    if [ ! -f "$CONF_DIR/station.yaml" ]; then
        say "no $CONF_DIR/station.yaml yet: write it from $CONF_DIR/station.yaml.sample, then" \
            "systemctl enable --now $SERVICE"
        return 0
    fi
    systemctl enable --quiet "$SERVICE"
    [ "$START" -eq 1 ] || { say "--no-start: $SERVICE not restarted"; return 0; }
    if ! systemctl restart "$SERVICE"; then return 1; fi
    sleep 5
    systemctl is-active --quiet "$SERVICE"
}

# --- system files -----------------------------------------------------------------------------------------------

id_of() {  # numeric uid or gid of NAME in the target root's passwd/group (root is 0 even in an empty root)
    [ "$2" != root ] || { echo 0; return; }
    awk -F: -v name="$2" '$1 == name { print $3; exit }' "$(r "/etc/$1")"
}

own() {  # own OWNER:GROUP MODE PATH (numeric ids from the target root; as non-root in --root mode: mode only)
    local user="${1%%:*}" group="${1##*:}" uid gid
    chmod "$2" "$3"
    if [ "$(id -u)" -ne 0 ]; then return 0; fi
    uid="$(id_of passwd "$user")"
    gid="$(id_of group "$group")"
    if [ -z "$uid" ] || [ -z "$gid" ]; then fail "user $user or group $group missing in $(r /etc)/passwd, group"; fi
    chown "$uid:$gid" "$3"
}

serial_rules() {  # 71-sinkwatch-names.rules from the --serial options
    local entry name rest serial interface
    printf '# Written by install.sh --serial (deploy/station/70-sinkwatch-serial.rules says how to find a serial number).\n'
    for entry in "${SERIALS[@]}"; do
        name="${entry%%=*}"
        rest="${entry#*=}"
        serial="${rest%%:*}"
        interface="00"
        [[ "$rest" != *:* ]] || interface="${rest#*:}"
        [[ "$entry" == *=* ]] || fail "--serial $entry: give NAME=USB_SERIAL[:INTERFACE], e.g. soil-bus=A10K3XYZ"
        [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] \
            || fail "--serial $entry: the name may hold letters, digits and _ . - only"
        [[ "$serial" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] \
            || fail "--serial $entry: '$serial' is not a USB serial number as udev shows it (ID_SERIAL_SHORT)"
        [[ "$interface" =~ ^[0-9]{2}$ ]] || fail "--serial $entry: the interface is two digits (00, 01, ...)"
        printf 'SUBSYSTEM=="tty", ENV{ID_BUS}=="usb", ENV{ID_SERIAL_SHORT}=="%s", ENV{ID_USB_INTERFACE_NUM}=="%s", SYMLINK+="sinkwatch/%s"\n' \
            "$serial" "$interface" "$name"
    done
}

install_system_files() {
    local sysusers_options=()
    if systemd_here; then
        [ -d /run/systemd/system ] || fail "this system does not run systemd: the station service needs it"
        command -v systemd-sysusers >/dev/null 2>&1 || fail "systemd-sysusers missing: apt-get install systemd"
    else
        sysusers_options=(--root="$ROOT")
    fi
    install -D -m 0644 "$HERE/sinkwatch.sysusers" "$(r /etc/sysusers.d/sinkwatch.conf)"
    systemd-sysusers "${sysusers_options[@]}" sinkwatch.conf

    install -d -m 0755 "$(r "$PREFIX")" "$(r "$PREFIX/versions")" "$(r "$PREFIX/doc")"
    install -m 0644 "$HERE/../README.md" "$(r "$PREFIX/doc/README.md")"
    mkdir -p "$(r "$CONF_DIR")" "$(r "$STATE_DIR")"
    own root:sinkwatch 0770 "$(r "$CONF_DIR")"
    own sinkwatch:sinkwatch 0750 "$(r "$STATE_DIR")"
    install -m 0644 "$HERE/station.yaml.sample" "$(r "$CONF_DIR/station.yaml.sample")"
    # the config (a pushed one is written by the daemon), the broker password and the signing key: the daemon's
    # user only, since a secret is refused in a file others may read (docs/security.md, "Secrets")
    local private
    for private in station.yaml mqtt-password signing-key; do
        [ ! -f "$(r "$CONF_DIR/$private")" ] || own sinkwatch:sinkwatch 0600 "$(r "$CONF_DIR/$private")"
    done

    install -D -m 0644 "$HERE/sinkwatch-station.service" "$(r "/etc/systemd/system/$SERVICE")"
    install -D -m 0644 "$HERE/70-sinkwatch-serial.rules" "$(r /etc/udev/rules.d/70-sinkwatch-serial.rules)"
    if [ "$SERIALS_GIVEN" -eq 1 ]; then
        local rules
        rules="$(serial_rules)"
        printf '%s\n' "$rules" > "$(r "$NAMES_RULES").new"
        chmod 0644 "$(r "$NAMES_RULES").new"
        mv -T "$(r "$NAMES_RULES").new" "$(r "$NAMES_RULES")"
    fi
    install -D -m 0644 "$HERE/journald-sinkwatch.conf" "$(r /etc/systemd/journald.conf.d/50-sinkwatch.conf)"

    if systemd_here; then
        systemctl daemon-reload
        udevadm control --reload
        udevadm trigger --subsystem-match=tty --action=add
        systemctl restart systemd-journald
    fi
}

# --- modes ------------------------------------------------------------------------------------------------------

list_versions() {
    local current previous name marks info
    current="$(link_name current)"
    previous="$(link_name previous)"
    [ -d "$(r "$PREFIX/versions")" ] || { say "nothing installed under $(r "$PREFIX")"; return 0; }
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        marks=""
        [ "$name" != "$current" ] || marks=" [current]"
        [ "$name" != "$previous" ] || marks=" [previous]"
        info="$(tr '\n' ' ' < "$(r "$PREFIX/versions/$name/.sinkwatch-install")" 2>/dev/null || true)"
        printf '%s%s  %s\n' "$name" "$marks" "$info"
    done < <(cd "$(r "$PREFIX/versions")" && ls -1t)
}

serial_rules >/dev/null  # a bad --serial stops here, before anything is installed

if systemd_here && [ "$MODE" != list ] && [ "$(id -u)" -ne 0 ]; then
    fail "run as root (sudo), or give --root DIR to install into a folder"
fi

case "$MODE" in
    list)
        list_versions
        ;;
    install)
        install_system_files
        install_version "${SPEC:-$TREE}"
        if ! validate_with "$NEW"; then
            rm -rf -- "$(r "$PREFIX/versions/$NEW")"
            fail "version $NEW refuses $CONF_DIR/station.yaml (above): fix it and run install.sh again"
        fi
        switch_to "$NEW"
        restart_service || fail "$SERVICE did not start: journalctl -u $SERVICE -n 50"
        prune
        ;;
    update)
        old="$(link_name current)"
        [ -n "$old" ] || fail "nothing installed yet: run install.sh without --update first"
        if installed "$SPEC"; then
            NEW="$SPEC"
            made=0
        else
            install_version "$SPEC"
            made=1
        fi
        if ! validate_with "$NEW"; then
            [ "$made" -eq 0 ] || rm -rf -- "$(r "$PREFIX/versions/$NEW")"
            fail "version $NEW refuses $CONF_DIR/station.yaml (above); still running $old"
        fi
        switch_to "$NEW"
        if ! restart_service; then
            say "$SERVICE did not start with $NEW (journalctl -u $SERVICE -n 50); rolling back to $old"
            switch_to "$old"
            restart_service || say "$SERVICE does not start with $old either: journalctl -u $SERVICE -n 50"
            exit 1
        fi
        prune
        ;;
    rollback)
        current="$(link_name current)"
        previous="$(link_name previous)"
        installed "$previous" || fail "no previous version to roll back to (install.sh --list)"
        validate_with "$previous" \
            || fail "version $previous refuses $CONF_DIR/station.yaml (above): restore a config it knows" \
                    "(e.g. $CONF_DIR/station.yaml.previous) first; still running $current"
        switch_to "$previous"
        restart_service || fail "$SERVICE did not start with $previous: journalctl -u $SERVICE -n 50"
        ;;
esac
