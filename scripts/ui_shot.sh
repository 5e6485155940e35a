#!/usr/bin/env bash
# Render a page in headless Chromium: OUT.png (screenshot) and OUT.png.html (rendered DOM, grep-able).
# Usage: bash scripts/ui_shot.sh URL OUT.png   (installs the Debian chromium package when missing)
set -u
URL=$1; OUT=$2
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
mkdir -p "$(dirname "$OUT")"
shot() { local p; p=$(mktemp -d)
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$p" --virtual-time-budget="${VTB:-10000}" --window-size=1400,900 "$@" 2>/dev/null
  local rc=$?; rm -rf "$p"; return $rc; }
shot --screenshot="$OUT" "$URL" >/dev/null || exit $?
shot --dump-dom "$URL" > "$OUT.html"
