#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis server binaries that the tests need are installed.
#
# The tests start their own throw-away servers (tests/services.py): on 127.0.0.1, on free
# ports, in temporary folders. This script only installs the Debian packages `postgresql`
# and `redis-server` when their binaries are missing, and makes sure that no system
# service they come with is left running or enabled. It is idempotent, and when
# everything is present it does nothing but a few file checks.
set -euo pipefail

have_postgres() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [[ -x $bin/initdb && -x $bin/pg_ctl && -x $bin/postgres ]]; then
            return 0
        fi
    done
    return 1
}

have_redis() {
    command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]]
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    {
        echo "ensure-services: missing Debian package(s): ${missing[*]}"
        echo "  The tests start real PostgreSQL and Redis servers. Install them with:"
        echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive \\"
        echo "      apt-get install -y --no-install-recommends ${missing[*]}"
        echo "  or run this script (scripts/ensure-services.sh) as root."
    } >&2
    exit 1
fi

echo "ensure-services: installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive

# Keep Debian from starting the packaged services while installing, when the machine
# does not already forbid it (a Docker image usually does, with an `exit 101` policy).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# Temporary, from agentguard scripts/ensure-services.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() {
    if ((own_policy)); then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

apt_opts=(-q -o DPkg::Lock::Timeout=300)
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

# Whatever got started anyway is stopped and disabled: the tests own their own servers.
systemd_up=0
[[ -d /run/systemd/system ]] && systemd_up=1
for pkg in "${missing[@]}"; do
    case $pkg in
    postgresql)
        if command -v pg_lsclusters >/dev/null 2>&1; then
            while read -r ver name _; do
                [[ -n ${ver:-} && -n ${name:-} ]] || continue
                pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
                # Debian's own switch: the cluster is no longer started at boot.
                if [[ -f /etc/postgresql/$ver/$name/start.conf ]]; then
                    echo manual >"/etc/postgresql/$ver/$name/start.conf" || true
                fi
            done < <(pg_lsclusters --no-header 2>/dev/null || true)
        fi
        service postgresql stop >/dev/null 2>&1 || true
        if ((systemd_up)); then
            systemctl disable --now postgresql >/dev/null 2>&1 || true
        elif command -v systemctl >/dev/null 2>&1; then
            systemctl disable postgresql >/dev/null 2>&1 || true # works offline too
        fi
        update-rc.d postgresql disable >/dev/null 2>&1 || true
        ;;
    redis-server)
        service redis-server stop >/dev/null 2>&1 || true
        if ((systemd_up)); then
            systemctl disable --now redis-server >/dev/null 2>&1 || true
        elif command -v systemctl >/dev/null 2>&1; then
            systemctl disable redis-server >/dev/null 2>&1 || true # works offline too
        fi
        update-rc.d redis-server disable >/dev/null 2>&1 || true
        ;;
    esac
done

if ! have_postgres || ! have_redis; then
    {
        echo "ensure-services: after installing ${missing[*]}, initdb/pg_ctl/postgres" \
            "(/usr/lib/postgresql/*/bin) or redis-server are still missing."
        echo "  If a package is installed with its files gone, reinstall it:"
        echo "    apt-get install --reinstall postgresql-<version> redis-server"
    } >&2
    exit 1
fi
echo "ensure-services: ${missing[*]} installed; no system service left running" >&2
