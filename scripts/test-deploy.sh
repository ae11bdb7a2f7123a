#!/usr/bin/env bash
# The checks of deploy/: the Kubernetes manifests against the Kubernetes JSON schemas and
# against each other, the KEDA ScaledObject against KEDA's API types and the fields we rely
# on, the Prometheus snippet and the NATS chart values, the compose file against the Compose
# specification, the Dockerfile (hadolint, and a real build where a Docker engine answers),
# the scripts (shellcheck), the monitoring files (PodMonitor, PrometheusRule, Grafana dashboard;
# their metric names are checked against a real scrape by the cli tests), the command lines and job specs against the built binary, and a
# whole dev cluster end to end (scripts/dev-cluster.sh --workers 2).
#
#   scripts/test-deploy.sh                 # everything
#   scripts/test-deploy.sh --no-cluster    # the static checks only (no release build)
#   RUBRICMILL_BIN=path/to/rubricmill scripts/test-deploy.sh   # use that binary, build nothing
#
# Everything is offline after the first run: Python tools go into a venv under
# ~/.cache/rubricmill/deploy-venv (deploy/checks/requirements.txt, pinned), npm packages into
# ~/.cache/rubricmill/deploy-node. The last line is "deploy checks: N passed, M failed"; the
# exit status is non-zero when any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

run_cluster=1
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

case "${1:-}" in
  "") ;;
  --no-cluster) run_cluster=0 ;;
  -h | --help)
    print_usage "$0"
    exit 0
    ;;
  *)
    echo "unknown option: $1 (see --help)" >&2
    exit 2
    ;;
esac

# Kubernetes versions the manifests must be valid for: an older release still common in
# managed clusters, and the newest kubernetes-validate bundles.
KUBE_VERSIONS=(1.30.0 1.37.0)
# npm packages: KEDA's API types, and the Compose specification schema that dclint ships.
NODE_PACKAGES=("@kubernetes-models/keda@2.0.0" "dclint@3.1.0")

cache="$HOME/.cache/rubricmill"
venv="$cache/deploy-venv"
node_dir="$cache/deploy-node"
checks="$repo/deploy/checks"

use_ci_target_dir

passed=0
failed=0
failed_names=()

log() { printf -- '--- %s\n' "$*"; }

# run_check NAME COMMAND...: runs one check, prints its output and its verdict, counts it.
run_check() {
  local name=$1
  shift
  log "$name"
  if "$@"; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "FAILED: $name"
  fi
}

skip() { echo "skipping: $*"; }

# --- tools -------------------------------------------------------------------------------

# ensure_venv: the pinned Python tools, reinstalled when requirements.txt changes.
ensure_venv() {
  local stamp="$venv/.requirements.sha256" want
  want=$(sha256sum "$checks/requirements.txt" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "installing the check tools into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$checks/requirements.txt"
  echo "$want" >"$stamp"
}

# ensure_node_packages: the pinned npm packages; install scripts are not run (we only read
# their files and import plain ES modules).
ensure_node_packages() {
  local stamp="$node_dir/.packages" want="${NODE_PACKAGES[*]}"
  if [ -d "$node_dir/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "installing ${NODE_PACKAGES[*]} into $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  echo '{"name": "rubricmill-deploy-checks", "private": true}' >"$node_dir/package.json"
  npm install --prefix "$node_dir" --no-audit --no-fund --ignore-scripts --save-exact \
    --loglevel=error "${NODE_PACKAGES[@]}" >/dev/null
  echo "$want" >"$stamp"
}

py() { "$venv/bin/python" "$checks/validate.py" "$@"; }

# --- checks that need no more than the tools ----------------------------------------------

check_keda_api_types() {
  py scaled-objects deploy/k8s | node "$checks/keda.mjs" "$node_dir/node_modules"
}

check_compose_schema() {
  py compose deploy/compose.yaml --schema "$node_dir/node_modules/dclint/schemas/compose.schema.json"
}

check_hadolint() {
  "$venv/bin/hadolint" --version
  # DL3008 (pin apt package versions): Debian's point releases replace those versions, so
  # pins break builds; the base image tag pins the release instead.
  "$venv/bin/hadolint" --no-color --ignore DL3008 deploy/Dockerfile && echo "hadolint: deploy/Dockerfile clean"
}

check_shellcheck() {
  "$venv/bin/shellcheck" --version | sed -n 2p
  "$venv/bin/shellcheck" -x scripts/*.sh && echo "shellcheck: scripts clean"
}

check_docker_build() {
  docker build -f deploy/Dockerfile -t rubricmill:deploy-check . &&
    docker run --rm rubricmill:deploy-check --version
}

# --- checks against the built binary ------------------------------------------------------

check_cli_flags() { py cli-flags deploy --bin "$bin"; }
check_job_specs() { py job-specs deploy --bin "$bin" --samples samples; }
check_dev_cluster() { RUBRICMILL_BIN="$bin" scripts/dev-cluster.sh --workers 2; }

# --- main ---------------------------------------------------------------------------------

tools_ok=1
if ! ensure_venv; then
  tools_ok=0
  echo "error: could not install the Python check tools" >&2
fi
node_ok=1
if ! command -v node >/dev/null 2>&1 || ! ensure_node_packages; then
  node_ok=0
  echo "error: could not install the npm packages (node and npm are required)" >&2
fi

if [ "$tools_ok" = 1 ]; then
  kube_args=()
  for v in "${KUBE_VERSIONS[@]}"; do kube_args+=(--kube-version "$v"); done
  run_check "k8s manifests against the Kubernetes schemas" py k8s-schemas deploy/k8s "${kube_args[@]}"
  run_check "k8s cross-references" py k8s-refs deploy/k8s
  run_check "KEDA ScaledObject fields" py keda-fields deploy/k8s
  run_check "Prometheus scrape config" py prometheus deploy/k8s
  run_check "NATS Helm values" py nats-values deploy/k8s
  run_check "monitoring: PodMonitor, alert rules, Grafana dashboard" py monitoring deploy/monitoring deploy/k8s
  run_check "compose cross-references" py compose-refs deploy/compose.yaml
  run_check "Dockerfile lint (hadolint)" check_hadolint
  run_check "shell scripts (shellcheck)" check_shellcheck
else
  run_check "check tools installed" false
fi
if [ "$tools_ok" = 1 ] && [ "$node_ok" = 1 ]; then
  run_check "KEDA ScaledObject against KEDA's API types" check_keda_api_types
  run_check "compose file against the Compose specification" check_compose_schema
else
  run_check "npm check packages installed" false
fi

log "docker build"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  run_check "docker build" check_docker_build
else
  skip "docker build (no Docker engine)"
fi

if [ "$run_cluster" = 1 ]; then
  log "release build"
  if build_release; then
    run_check "command lines use existing subcommands and flags" check_cli_flags
    run_check "job specs pass rubricmill validate" check_job_specs
    run_check "dev cluster end to end" check_dev_cluster
  else
    run_check "release build" false
  fi
else
  skip "release build, command lines, job specs and dev cluster (--no-cluster)"
fi

if [ "$failed" -gt 0 ]; then
  printf 'failed: %s\n' "${failed_names[@]}"
fi
echo "deploy checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
