#!/bin/bash
# Build sealskin/bench-backend:latest locally (no registry): echo.c compiled statically with the
# host's gcc, `docker import`ed as a one-file image with image.conf's directives.
# Skipped when the image already carries org.sealskin.recipe=<hash of this folder>.
# SEALSKIN_BUILD_FORCE=1 rebuilds regardless.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=sealskin/bench-backend:latest

say() { printf '[bench-backend %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

hash=$(cd "$HERE" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
have=$(docker image inspect --format '{{ index .Config.Labels "org.sealskin.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$hash" ] && [ "${SEALSKIN_BUILD_FORCE:-0}" != 1 ]; then
    say "$IMAGE is up to date (recipe $hash)"
    exit 0
fi
command -v gcc >/dev/null || { echo "[bench-backend] ERROR: gcc missing (apt-get install gcc libc6-dev)" >&2; exit 1; }
root=$(mktemp -d /tmp/sealskin-bench-backend.XXXXXX)
trap 'rm -rf "$root"' EXIT
say "building $IMAGE (recipe $hash)"
gcc -O2 -Wall -Wextra -static -pthread -o "$root/echo" "$HERE/echo.c" 2> >(grep -v 'statically linked' >&2)
changes=()
while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    changes+=(--change "$line")
done <"$HERE/image.conf"
changes+=(--change "LABEL org.sealskin.recipe=$hash" --change "LABEL org.sealskin.image=bench-backend")
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - echo |
    docker import "${changes[@]}" -m "sealskin bench backend $hash" - "$IMAGE" >/dev/null
say "built $IMAGE"
