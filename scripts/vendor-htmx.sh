#!/usr/bin/env bash
# Copies htmx from node_modules (npm `htmx.org`, pinned in package.json) into the console's
# static files, with its licence and version: the console loads nothing from the internet.
# Run after changing the pinned version (`npm install` first); commit what it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
source=node_modules/htmx.org
target=services/gateway/console_static
version=$(node -p "require('./$source/package.json').version")
cp "$source/dist/htmx.min.js" "$target/htmx.min.js"
cp "$source/LICENSE" "$target/htmx.LICENSE"
echo "htmx.org $version (npm), copied by scripts/vendor-htmx.sh" > "$target/htmx.VERSION"
echo "vendored htmx.org $version into $target"
