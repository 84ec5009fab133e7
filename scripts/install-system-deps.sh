#!/usr/bin/env bash
# Debian packages the tests and services need: dcmtk (modality tools and DICOM encoders used by the tests), dicom3tools
# (dciodvfy checks the SR and Secondary Capture against the standard's modules),
# chromium (renders the evaluation report in a test), Orthanc with its DICOMweb and GDCM plugins (the PACS of the
# DICOM service's integration tests and benchmark). Idempotent: installs only what is missing.
# Without root or apt-get it lists what is missing and exits 0; the tests that need a tool then skip and say why.
set -euo pipefail

declare -A wanted=(
    [dcmsend]=dcmtk
    [chromium]=chromium
    [Orthanc]=orthanc
    [dciodvfy]=dicom3tools
)
# Packages that install files rather than a command: file -> package.
declare -A wanted_files=(
    [/usr/share/orthanc/plugins/libOrthancDicomWeb.so]=orthanc-dicomweb
    [/usr/share/orthanc/plugins/libOrthancGdcm.so]=orthanc-gdcm
)

missing=()
for binary in "${!wanted[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("${wanted[$binary]}")
done
for file in "${!wanted_files[@]}"; do
    [ -e "$file" ] || missing+=("${wanted_files[$file]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: missing Debian packages (install them as root): ${missing[*]}" >&2
    exit 0
fi
echo "install-system-deps: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Debian's orthanc package would start a system-wide Orthanc listening on every address; the tests start their
# own on loopback, so keep maintainer scripts from starting services while installing (policy-rc.d, exit 101).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
