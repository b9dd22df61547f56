#!/usr/bin/env bash
# Idempotent set-up for `npm start` / `npm test`: npm packages, then a WebGPU adapter.
# On Linux with no adapter it installs Mesa's software Vulkan driver (lavapipe).
# Debian 12's Mesa 22.3 is refused by Dawn, so there it comes from bookworm-backports.
# With --browser (npm test) it also installs Debian's chromium-headless-shell for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[setup] $*"; }
browser=0; [ "${1:-}" = --browser ] && browser=1
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
warn() { echo "[setup] warning: $*" >&2; }
apt_install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
}
apt_update() { $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq; }

for pkg in webgpu tsx esbuild playwright-core; do
  if [ ! -d "node_modules/$pkg" ]; then
    say "installing npm packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    break
  fi
done

# The browser tests drive Debian's Chromium headless shell (WebGPU through SwiftShader when there
# is no GPU) with playwright-core; nothing is downloaded from elsewhere. A failure only warns: the
# browser tests then fail saying what is missing.
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium-headless-shell}
ensure_chromium() {
  [ "$browser" = 1 ] || return 0
  [ -x "$CHROMIUM" ] && return 0
  if ! command -v apt-get >/dev/null; then
    warn "no $CHROMIUM and no apt-get; the browser tests need Chromium's headless shell (set CHROMIUM_PATH)"
    return 0
  fi
  say "installing Chromium's headless shell for the browser tests (chromium-headless-shell)"
  if apt_install chromium-headless-shell >/dev/null 2>&1 \
    || { apt_update >/dev/null 2>&1 && apt_install chromium-headless-shell >/dev/null 2>&1; }; then
    [ -x "$CHROMIUM" ] && return 0
  fi
  warn "could not install chromium-headless-shell; the browser tests will fail"
  return 0
}
ensure_chromium

# Fashion-MNIST for `npm start` (tests do not need it): installed from Debian when missing; a
# failure only warns, and the trainer then says how to get the data or point --data-dir at it.
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ensure_dataset() {
  [ -f "$FMNIST" ] && return 0
  if ! command -v apt-get >/dev/null; then
    warn "Fashion-MNIST not found at $(dirname "$FMNIST") and no apt-get; pass --data-dir DIR to train on it"
    return 0
  fi
  say "installing the Fashion-MNIST data set (dataset-fashion-mnist)"
  if apt_install dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt_update >/dev/null 2>&1 && apt_install dataset-fashion-mnist >/dev/null 2>&1; }; then
    [ -f "$FMNIST" ] && return 0
  fi
  warn "could not install dataset-fashion-mnist; \`npm start\` needs it" \
    "(or --data-dir DIR with the four Fashion-MNIST IDX files)"
  return 0
}

# ffmpeg for `mmpareto prepare` (CREMA-D / AVE) and the tests that build tiny videos with it:
# Debian's package when missing; a failure only warns (prepare then says what to install).
ensure_ffmpeg() {
  command -v ffmpeg >/dev/null && return 0
  if ! command -v apt-get >/dev/null; then
    warn "ffmpeg not found and no apt-get; \`mmpareto prepare\` and its tests need it"
    return 0
  fi
  say "installing ffmpeg (Debian package)"
  if apt_install ffmpeg >/dev/null 2>&1 \
    || { apt_update >/dev/null 2>&1 && apt_install ffmpeg >/dev/null 2>&1; }; then
    command -v ffmpeg >/dev/null && return 0
  fi
  warn "could not install ffmpeg; \`mmpareto prepare\` and its tests need it (apt-get install ffmpeg)"
  return 0
}

probe() { XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} node train/probe-adapter.mjs 2>/dev/null; }
if name=$(probe); then say "WebGPU adapter: $name"; ensure_dataset; ensure_ffmpeg; exit 0; fi

if [ "$(uname -s)" != Linux ] || ! command -v apt-get >/dev/null; then
  echo "[setup] no WebGPU adapter found. Install a GPU driver with Vulkan (Linux), Metal (macOS)" \
    "or D3D12 (Windows)," >&2
  echo "[setup] or a software Vulkan driver such as Mesa lavapipe (>= 23)." >&2
  exit 1
fi
. /etc/os-release
suite=""
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  suite=bookworm-backports
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Reuse the URI of the machine's own Debian entry (mirrors and snapshots are honoured).
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | grep -v security | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    say "adding bookworm-backports from $uri"
    printf '%s\n' 'Types: deb' "URIs: $uri" 'Suites: bookworm-backports' 'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
      | $sudo tee /etc/apt/sources.list.d/mmpareto-backports.sources >/dev/null
  fi
fi
say "no WebGPU adapter: installing the software Vulkan driver (libvulkan1, mesa-vulkan-drivers${suite:+ from $suite})"
export DEBIAN_FRONTEND=noninteractive
apt_update
apt_install ${suite:+-t $suite} libvulkan1 mesa-vulkan-drivers >/dev/null
if name=$(probe); then say "WebGPU adapter: $name"; ensure_dataset; ensure_ffmpeg; exit 0; fi
echo "[setup] still no WebGPU adapter after installing Mesa; check 'vulkaninfo --summary' (Dawn needs Mesa >= 23)." >&2
exit 1
