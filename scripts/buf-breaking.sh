#!/usr/bin/env bash
# `buf breaking` against the last released contract, never against the branch itself:
# the newest `v*` tag when there is one, else the commit recorded in protos/RELEASED
# (the release procedure updates it: README, "Contracts"). Its buf.yaml and protos/ are
# taken with `git archive`, so this works in a worktree and in any checkout that holds
# that commit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-node_modules/.bin/buf}
against=$(git tag --list 'v*' --sort=-version:refname | head -n 1)
if [ -z "$against" ]; then
  against=$(grep -v '^[[:space:]]*#' protos/RELEASED | grep -m 1 -o '[0-9a-f]\{40\}' || true)
fi
if [ -z "$against" ] || ! git rev-parse --verify --quiet "${against}^{commit}" >/dev/null; then
  echo "buf breaking: no released commit to compare with (no v* tag, and protos/RELEASED" \
    "names '${against}', which this checkout does not hold; fetch it, or tag a release)" >&2
  exit 1
fi
released=$(mktemp -d)
trap 'rm -rf "$released"' EXIT
git archive "$against" buf.yaml protos | tar -x -C "$released"
echo "buf breaking: against ${against} ($(git rev-parse --short "${against}^{commit}"))"
"$BUF" breaking --against "$released"
