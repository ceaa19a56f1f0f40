#!/usr/bin/env bash
# make docker-smoke: build the image from the real Dockerfile with podman, run it the way a
# hardened deployment does (read-only root, a tmpfs at /tmp, non-root), and check that it turns
# healthy, answers a request correctly, serves the explorer page's files, loaded every kernel from
# the cache baked into the image (none compiled at start) and exits 0 on SIGTERM.
#
# No Docker engine or image registry is needed: podman (Debian's, installed here when missing)
# builds and runs the image. The base image named by the Dockerfile's first FROM is pulled when a
# registry answers; otherwise a stand-in for it is made once with debootstrap from the Debian
# mirror this machine's apt sources name (with python3 and python3-venv) and imported under that
# name. The stand-in is cached in build/docker-smoke/, so later runs skip debootstrap.
# Build and run use the host's network: the smoke's traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/lossd:smoke
CACHE=build/docker-smoke
CONTAINER="lossd-smoke-$$"
START=$SECONDS

say() { printf 'docker-smoke: %s\n' "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }
elapsed() { echo "$((SECONDS - $1)) s"; }

apt_install() {  # Debian packages, when a command is missing (CI starts from a clean machine)
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >/dev/null ||
        { apt-get update >/dev/null && apt-get -o DPkg::Lock::Timeout=600 install -y \
            --no-install-recommends "$@" >/dev/null; }
}

debian_mirror() {  # the mirror apt uses here for release $1 (deb822 .sources, then sources.list)
    local found
    found=$(awk -v suite="$1" 'BEGIN { RS = "" }
        $0 ~ "(^|\n)Suites:([^\n]* )?" suite "( |\n|$)" {
            for (i = 1; i < NF; i++) if ($i == "URIs:") { print $(i + 1); exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$found" ] || found=$(awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2; exit }' \
        /etc/apt/sources.list 2>/dev/null || true)
    echo "${found:-http://deb.debian.org/debian}"
}

stand_in() {  # $1: image name, $2: tarball; debootstrap the Debian release the tag names
    local suite=${1##*-} mirror rootfs="$CACHE/rootfs"  # python:3.11-slim-bookworm: bookworm
    if [ ! -s "$2" ]; then
        command -v debootstrap >/dev/null || apt_install debootstrap
        mirror=$(debian_mirror "$suite")
        say "no registry: debootstrap $suite from $mirror as a stand-in for $1"
        rm -rf "$rootfs"
        timeout 1200 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            "$suite" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
            fail "debootstrap (see $CACHE/debootstrap.log)"
        # The stand-in trusts what this machine trusts, as an image pulled here would need to
        # (pip reads PIP_CERT, set below, rather than the system bundle).
        cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar --numeric-owner -C "$rootfs" -cf "$2.part" . && mv "$2.part" "$2"
        rm -rf "$rootfs"
    fi
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' \
        "$2" "$1" >/dev/null
}

base_image() {  # the Dockerfile's first FROM: present, pulled, or a stand-in
    local base qualified t=$SECONDS tarball
    base=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
    case "$base" in */*) qualified=$base ;; *) qualified=docker.io/library/$base ;; esac
    if podman image exists "$qualified"; then
        say "base image $qualified: present"
    elif timeout 600 podman pull --quiet "$qualified" >/dev/null 2>&1; then
        say "base image $qualified: pulled in $(elapsed "$t")"
    else
        tarball="$CACHE/${base//[:\/]/_}.tar"
        stand_in "$qualified" "$tarball"
        say "base image $qualified: stand-in ready in $(elapsed "$t")" \
            "($(du -h "$tarball" | cut -f1) cached in $tarball)"
    fi
}

build() {
    local t=$SECONDS size previous
    previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    # chroot isolation: the RUN steps need no OCI runtime set-up; docker format keeps HEALTHCHECK.
    timeout 2400 podman build --isolation=chroot --format docker --network host --pull=never \
        --tag "$IMAGE" --file Dockerfile . >"$CACHE/build.log" 2>&1 ||
        { tail -30 "$CACHE/build.log" >&2; fail "podman build (see $CACHE/build.log)"; }
    # The image this build replaced is untagged now: drop it rather than pile them up.
    if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    size=$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')
    say "built $IMAGE from the Dockerfile in $(elapsed "$t"): $size," \
        "$(grep -c -- '--> Using cache' "$CACHE/build.log" || true) steps from podman's layer cache"
}

run_and_check() {
    local port url t=$SECONDS healthy="" response ready code
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    url="http://127.0.0.1:$port"
    trap 'podman rm --force --time 0 "$CONTAINER" >/dev/null 2>&1 || true' EXIT
    # No health-check timer (podman would ask systemd for one): the loop below runs the checks.
    podman run --detach --name "$CONTAINER" --runtime runc --network host \
        --read-only --tmpfs /tmp --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC" \
        --health-interval disable --env LOSSD_HOST=127.0.0.1 --env "LOSSD_PORT=$port" \
        "$IMAGE" >/dev/null 2>"$CACHE/run.err" || { cat "$CACHE/run.err" >&2; fail "podman run"; }
    say "started $CONTAINER on $url: read-only root, tmpfs /tmp," \
        "user $(podman inspect --format '{{.Config.User}}' "$CONTAINER")"

    # Healthy is what the image's own HEALTHCHECK says.
    for _ in $(seq 300); do
        [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] ||
            { podman logs "$CONTAINER" >&2; fail "the container exited during start-up"; }
        if podman healthcheck run "$CONTAINER" >/dev/null 2>&1; then healthy=yes; break; fi
        sleep 1
    done
    [ -n "$healthy" ] || { podman logs "$CONTAINER" >&2; fail "not healthy after 300 s"; }
    say "healthy $(elapsed "$t") after start" \
        "($(podman inspect --format '{{.State.Health.Status}}' "$CONTAINER"))"

    # One request: the README's huber example, with its documented answer.
    response=$(curl --silent --show-error --fail-with-body --max-time 30 -X POST \
        "$url/loss/huber" -H 'Content-Type: application/json' \
        -d '{"predictions": [[0.5, 2.0], [1.0, -1.0]], "targets": [[0.0, 0.0], [1.0, 1.0]], "params": {"delta": 1.0}, "gradient": true}') ||
        fail "POST /loss/huber: $response"
    python3 - "$response" <<'EOF' || fail "POST /loss/huber answered $response"
import json, sys
out = json.loads(sys.argv[1])
assert out["value"] == 0.78125 and out["per_sample"] == [0.8125, 0.75], out
assert out["gradient"] == [[0.125, 0.25], [0.0, -0.25]], out
EOF
    say "POST /loss/huber: value 0.78125, per-sample losses and gradient as documented"

    # The explorer page's files are the package's (pyproject.toml's package-data), as committed.
    for file in index.html explorer.js vendor/uPlot.iife.min.js; do
        path=/explore/static/$file
        [ "$file" = index.html ] && path=/explore
        curl --silent --show-error --fail --max-time 10 "$url$path" |
            cmp --silent - "service/explorer/static/$file" || fail "GET $path: not the committed file"
    done
    say "explorer: /explore and its files served from the installed package"

    # No kernel compiled at start: /readyz and the ready log line count cache hits and compiles.
    ready=$(curl --silent --show-error --fail --max-time 10 "$url/readyz")
    python3 - "$ready" <<'EOF' || fail "the baked numba cache was not used: /readyz says $ready"
import json, sys
ready = json.loads(sys.argv[1])
assert ready["kernels_compiled"] == 0 and ready["kernels_from_cache"] > 0, ready
EOF
    say "cache hit: /readyz $ready"
    podman logs "$CONTAINER" >"$CACHE/run.log" 2>&1
    grep -q 'ready: .* 0 compiled' "$CACHE/run.log" || fail "no 'ready: ... 0 compiled' log line"
    say "log: $(grep -m1 -o 'ready: [^"]*' "$CACHE/run.log")"

    # SIGTERM drains and exits 0.
    t=$SECONDS
    podman kill --signal TERM "$CONTAINER" >/dev/null
    code=$(timeout 60 podman wait "$CONTAINER") || fail "still running 60 s after SIGTERM"
    [ "$code" = 0 ] || { podman logs "$CONTAINER" >&2; fail "exit code $code after SIGTERM"; }
    say "SIGTERM: exit 0 after $(elapsed "$t")"
}

main() {
    [ "$(id -u)" = 0 ] || fail "run as root: podman runs rootful here; missing tools come from apt-get"
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
        apt_install podman runc
    fi
    command -v curl >/dev/null || apt_install curl
    mkdir -p "$CACHE"
    base_image
    build
    run_and_check
    say "passed in $(elapsed "$START")"
}

# podman's default of 1048576 open files is above this machine's hard limit: stay below it.
NOFILE=$(( $(ulimit -Hn) < 65536 ? $(ulimit -Hn) : 65536 ))
NPROC=$(( $(ulimit -Hu) < 8192 ? $(ulimit -Hu) : 8192 ))
main "$@"; exit  # one line: bash has read the whole script before it runs any of it
