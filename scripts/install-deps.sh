#!/usr/bin/env bash
# Idempotent: installs only what is missing. Debian packages for C, npm for test tooling.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libmicrohttpd-dev libjson-c-dev libsqlite3-dev libssl-dev libargon2-dev libcmocka-dev
  python3 curl jq wrk sqlite3 strace
  libcurl4-openssl-dev chromium
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js: any installed node/npm will do (the machine may carry NodeSource's build, which bundles
# npm and conflicts with Debian's npm package); install Debian's only when they are missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "install-deps: apt installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm: the official R4 definitions/examples (generator input, round-trip tests) and test tooling.
if [ ! -f node_modules/.bevan-deps-ok ] || [ package.json -nt node_modules/.bevan-deps-ok ]; then
  echo "install-deps: npm ci"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
  touch node_modules/.bevan-deps-ok
fi
