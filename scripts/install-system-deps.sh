#!/usr/bin/env bash
# Debian packages the tests and services need: dcmtk (modality tools and DICOM encoders used by the tests),
# chromium (renders the evaluation report in a test). Idempotent: installs only what is missing.
# Without root or apt-get it lists what is missing and exits 0; the tests that need a tool then skip and say why.
set -euo pipefail

declare -A wanted=(
    [dcmsend]=dcmtk
    [chromium]=chromium
)

missing=()
for binary in "${!wanted[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("${wanted[$binary]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: missing Debian packages (install them as root): ${missing[*]}" >&2
    exit 0
fi
echo "install-system-deps: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
