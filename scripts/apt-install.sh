#!/usr/bin/env bash
# Installs the Debian packages listed in $1 (one per line, '#' comments) that are not
# installed yet. Uses sudo only when not already root.
set -euo pipefail
list="${1:?usage: apt-install.sh PACKAGE_LIST}"
mapfile -t wanted < <(sed -e 's/#.*//' "$list" | tr -s '[:space:]' '\n' | sed '/^$/d')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "apt-install: installing ${missing[*]}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
