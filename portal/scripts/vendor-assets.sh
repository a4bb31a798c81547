#!/usr/bin/env bash
# Copies the portal's third-party assets from their npm packages into
# portal/assets: htmx (htmx.org) and the Vazirmatn font (vazirmatn, OFL-1.1).
# The copies are committed, so building the portal needs no npm; run this
# only to move to another version.
set -euo pipefail

HTMX_VERSION="2.0.11"
VAZIRMATN_VERSION="33.0.3"

here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "htmx.org@${HTMX_VERSION}" "vazirmatn@${VAZIRMATN_VERSION}" >/dev/null
mkdir htmx vazirmatn
tar -xzf htmx.org-*.tgz -C htmx --strip-components=1
tar -xzf vazirmatn-*.tgz -C vazirmatn --strip-components=1

install -m 0644 htmx/dist/htmx.min.js "$here/assets/htmx.min.js"
install -m 0644 htmx/LICENSE "$here/assets/htmx.LICENSE"
mkdir -p "$here/assets/fonts"
for weight in Regular Bold; do
  install -m 0644 "vazirmatn/fonts/webfonts/Vazirmatn-${weight}.woff2" \
    "$here/assets/fonts/Vazirmatn-${weight}.woff2"
done
install -m 0644 vazirmatn/OFL.txt "$here/assets/fonts/OFL.txt"
echo "htmx.org ${HTMX_VERSION}, vazirmatn ${VAZIRMATN_VERSION}" > "$here/assets/VERSIONS"
