#!/bin/bash
# Build SealSkin's local images (no registry): debootstrap a minimal Debian
# rootfs, add each image's packages and files in a chroot, `docker import` it.
#
#   images/build.sh [probe|desktop|all]     (default: all)
#
# A build is skipped when sealskin/<name>:latest already carries the label
# org.sealskin.recipe=<hash of images/<name>/*, its package list and this script>.
# SEALSKIN_BUILD_FORCE=1 rebuilds regardless of the label.
# Work files live in images/.build/ (gitignored); the debootstrap rootfs is
# cached there as a tarball so building both images debootstraps only once.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK="$HERE/.build"
SUITE=bookworm
BASE_TAR="$WORK/rootfs-$SUITE-minbase.tar"

say() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[build] ERROR: %s\n' "$*" >&2; exit 1; }

# --- helpers -----------------------------------------------------------------

# The Debian mirror this machine already uses (never a host name hard-coded here).
debian_mirror() {
    local url=""
    shopt -s nullglob
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        url=$(awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u = ""; s = 0; next }
            tolower($1) == "uris:" { u = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
            END { if (u != "" && s) print u }' "$f" | head -n1)
        [ -n "$url" ] && break
    done
    if [ -z "$url" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            url=$(awk -v suite="$SUITE" '$1 == "deb" {
                    for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == suite) { print $i; exit } } }' "$f")
            [ -n "$url" ] && break
        done
    fi
    shopt -u nullglob
    [ -n "$url" ] || die "no Debian '$SUITE' mirror found in /etc/apt/sources.list(.d)"
    printf '%s\n' "${url%/}"
}

recipe_hash() {
    local name=$1
    (
        cd "$HERE"
        sha256sum build.sh
        find "$name" -type f -not -name '*.pyc' -not -path '*/__pycache__/*' -print0 |
            sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -c1-16
}

current_hash() {
    docker image inspect --format '{{ index .Config.Labels "org.sealskin.recipe" }}' \
        "sealskin/$1:latest" 2>/dev/null || true
}

# Mount points a chroot'ed apt needs; always undone by unmount_chroot.
mount_chroot() {
    local root=$1
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
}

unmount_chroot() {
    local root=$1 m
    for m in dev/pts dev sys proc; do
        if mountpoint -q "$root/$m"; then umount -l "$root/$m" || true; fi
    done
}

ensure_base() {
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    if [ -s "$BASE_TAR" ]; then
        say "using cached rootfs $BASE_TAR"
        return
    fi
    command -v debootstrap >/dev/null || die "debootstrap missing: run images/sysdeps.sh"
    local mirror tmp
    mirror=$(debian_mirror)
    tmp="$WORK/debootstrap"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    say "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
    debootstrap --variant=minbase "$SUITE" "$tmp" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    tar -C "$tmp" --numeric-owner -cf "$BASE_TAR.part" .
    mv "$BASE_TAR.part" "$BASE_TAR"
    rm -rf "$tmp"
    say "cached rootfs: $(du -h "$BASE_TAR" | cut -f1)"
}

# Remove what a container never needs: apt lists and caches, docs, man pages, locales.
slim_rootfs() {
    local root=$1
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
        "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/lintian "$root"/usr/share/linda
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name 'locale.alias' \
        -exec rm -rf {} + 2>/dev/null || true
    find "$root/usr/lib" -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
    rm -f "$root/usr/sbin/policy-rc.d"
    : >"$root/etc/resolv.conf"
    printf 'sealskin\n' >"$root/etc/hostname"
}

build_image() {
    local name=$1 dir="$HERE/$1" hash have root mirror packages
    [ -d "$dir" ] || die "unknown image '$name' (no $dir)"
    hash=$(recipe_hash "$name")
    have=$(current_hash "$name")
    if [ "$have" = "$hash" ] && [ "${SEALSKIN_BUILD_FORCE:-0}" != 1 ]; then
        say "sealskin/$name:latest is up to date (recipe $hash), skipping"
        return
    fi
    say "building sealskin/$name:latest (recipe $hash)"
    [ "$(id -u)" -eq 0 ] || die "building needs root (debootstrap and chroot)"
    ensure_base
    root="$WORK/$name/rootfs"
    unmount_chroot "$root" 2>/dev/null || true
    # Never rm -rf through a bind mount of the host's /dev.
    if grep -q " $WORK/$name/" /proc/mounts; then die "$WORK/$name still has mounts"; fi
    rm -rf "$WORK/$name"
    mkdir -p "$root"
    tar -C "$root" --numeric-owner -xf "$BASE_TAR"
    trap 'unmount_chroot "'"$root"'"' EXIT

    mirror=$(debian_mirror)
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" \
        >"$root/etc/apt/sources.list"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # Packages must not start services inside the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    # Never install docs, man pages or translations in the first place.
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-sealskin-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/01-sealskin-norecommends"

    packages=$(grep -v '^[[:space:]]*#' "$dir/packages" | tr '\n' ' ')
    mount_chroot "$root"
    say "$name: apt-get install $packages"
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        LANG=C.UTF-8 sh -c "apt-get update -qq && apt-get install -y -qq $packages" \
        >"$WORK/$name/apt.log" 2>&1 ||
        { tail -n 30 "$WORK/$name/apt.log" >&2; die "$name: package install failed (log: $WORK/$name/apt.log)"; }

    # Image-specific files and setup: images/<name>/setup.sh runs in the chroot with
    # the image directory's files available under /tmp/recipe.
    mkdir -p "$root/tmp/recipe"
    cp -a "$dir/." "$root/tmp/recipe/"
    if [ -f "$dir/setup.sh" ]; then
        say "$name: running setup.sh"
        chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
            sh -e /tmp/recipe/setup.sh || die "$name: setup.sh failed"
    fi
    unmount_chroot "$root"
    trap - EXIT
    if grep -q " $root/" /proc/mounts; then die "could not unmount the chroot mounts of $root"; fi
    slim_rootfs "$root"

    # docker import --change directives: images/<name>/image.conf, one per line.
    local changes=() line
    while IFS= read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        changes+=(--change "$line")
    done <"$dir/image.conf"
    changes+=(--change "LABEL org.sealskin.recipe=$hash")
    changes+=(--change "LABEL org.sealskin.image=$name")

    local old_id
    old_id=$(docker image inspect --format '{{.Id}}' "sealskin/$name:latest" 2>/dev/null || true)
    say "$name: docker import"
    tar -C "$root" --numeric-owner -cf - . |
        docker import "${changes[@]}" -m "sealskin $name recipe $hash" - "sealskin/$name:latest" >/dev/null
    rm -rf "${WORK:?}/$name"
    # Drop the image this one replaces (kept if a container still uses it).
    if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "sealskin/$name:latest")" ]; then
        docker image rm "$old_id" >/dev/null 2>&1 || true
    fi
    say "built sealskin/$name:latest: $(docker image inspect --format '{{.Size}}' "sealskin/$name:latest" |
        awk '{ printf "%.0f MB", $1 / 1000000 }')"
}

# --- main ----------------------------------------------------------------------

target=${1:-all}
case "$target" in
    probe|desktop) names=("$target") ;;
    base) names=() ;;  # only the cached debootstrap rootfs
    all) names=(probe desktop) ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "usage: $0 [probe|desktop|all]" ;;
esac

docker info >/dev/null 2>&1 || die "Docker Engine not reachable (docker info failed)"
mkdir -p "$WORK"
# One build at a time: parallel callers (test sessions) wait for each other.
exec 9>"$WORK/.lock"
flock 9

[ "$target" = base ] && ensure_base
for name in "${names[@]}"; do
    build_image "$name"
done
