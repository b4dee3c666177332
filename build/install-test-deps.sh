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
