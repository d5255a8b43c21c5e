#!/bin/sh
# Install the Debian packages SealSkin's tests, benchmarks and image builds need,
# but only those that are missing. Quiet and quick when everything is present.
set -eu

# debootstrap: image builds; chromium: headless browser tests; caddy, wrk: benchmarks.
PACKAGES="debootstrap chromium caddy wrk ca-certificates"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *" installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "sysdeps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi

echo "sysdeps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "sysdeps: done"
