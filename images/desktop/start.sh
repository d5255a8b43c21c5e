#!/bin/bash
# sealskin/desktop entrypoint (PID 1): Xvnc + jwm + xterm as PUID/PGID,
# websockify on 127.0.0.1:6080, nginx on :3000 under $SUBFOLDER with Basic auth
# ($CUSTOM_USER/$PASSWORD). SIGTERM stops everything; any part dying stops the container.
set -euo pipefail

log() { printf '[sealskin-desktop] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PUID=${PUID:-1000}
PGID=${PGID:-1000}
CUSTOM_USER=${CUSTOM_USER:-abc}
PASSWORD=${PASSWORD:-}
GEOMETRY=${SEALSKIN_GEOMETRY:-1280x800}
DISPLAY_NUM=1
RUN=/run/sealskin

[[ "$PUID" =~ ^[0-9]+$ && "$PGID" =~ ^[0-9]+$ ]] || die "PUID and PGID must be numbers"
[[ "$GEOMETRY" =~ ^[0-9]{3,5}x[0-9]{3,5}$ ]] || die "SEALSKIN_GEOMETRY must look like 1280x800"
[ -n "$PASSWORD" ] || die "PASSWORD is not set (Basic auth for $CUSTOM_USER needs one)"
case "$CUSTOM_USER$PASSWORD" in
    *$'\n'*|*$'\r'*) die "CUSTOM_USER and PASSWORD must be single lines" ;;
esac
case "$CUSTOM_USER" in *:*) die "CUSTOM_USER must not contain ':'" ;; esac

# Prefix: "/<session-id>/"; only URL-path characters, so it is safe inside nginx.conf.
inner=${SUBFOLDER:-/}
inner=${inner#/}
inner=${inner%/}
[[ "$inner" =~ ^[A-Za-z0-9._~/-]*$ ]] || die "SUBFOLDER has characters outside [A-Za-z0-9._~/-]"
if [ -n "$inner" ]; then PREFIX="/$inner/"; else PREFIX="/"; fi

# The desktop user: name "abc" like linuxserver images, uid/gid from PUID/PGID.
getent group "$PGID" >/dev/null || groupadd -o -g "$PGID" abc
getent passwd "$PUID" >/dev/null || useradd -o -u "$PUID" -g "$PGID" -d /config -s /bin/bash -M abc
USER_NAME=$(getent passwd "$PUID" | cut -d: -f1)
install -d -o "$PUID" -g "$PGID" /config
[ "$(stat -c %u /config)" = "$PUID" ] || chown "$PUID:$PGID" /config || true

install -d -m 755 "$RUN" "$RUN/www"
install -d -m 1777 /tmp/.X11-unix
umask 027
printf '%s:{PLAIN}%s\n' "$CUSTOM_USER" "$PASSWORD" >"$RUN/htpasswd"
chgrp www-data "$RUN/htpasswd"
umask 022
unset PASSWORD

vnc_url="vnc.html?autoconnect=1&amp;resize=remote&amp;reconnect=1&amp;path=${PREFIX#/}websockify"
sed "s|@VNC_URL@|${vnc_url//&/\\&}|g" /opt/sealskin/index.html.in >"$RUN/www/index.html"
catch_all=""
[ "$PREFIX" = "/" ] || catch_all="        location / { return 404; }"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@CATCH_ALL@|$catch_all|" \
    /opt/sealskin/nginx.conf.in >"$RUN/nginx.conf"

as_user() {
    env -i HOME=/config USER="$USER_NAME" PATH="$PATH" LANG="${LANG:-C.UTF-8}" \
        ${LC_ALL:+LC_ALL="$LC_ALL"} ${TZ:+TZ="$TZ"} DISPLAY=":$DISPLAY_NUM" \
        setpriv --reuid="$PUID" --regid="$PGID" --init-groups "$@"
}

pids=()
stop_all() {
    trap - TERM INT
    log "stopping"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}
trap 'stop_all; exit 0' TERM INT

log "starting Xvnc :$DISPLAY_NUM ($GEOMETRY) as uid $PUID"
rm -f "/tmp/.X$DISPLAY_NUM-lock" "/tmp/.X11-unix/X$DISPLAY_NUM"
as_user Xvnc ":$DISPLAY_NUM" -geometry "$GEOMETRY" -depth 24 -SecurityTypes None \
    -localhost=1 -rfbport 5901 -AlwaysShared -AcceptSetDesktopSize=1 -desktop SealSkin \
    -nolisten tcp &
pids+=($!)
for _ in $(seq 100); do
    [ -S "/tmp/.X11-unix/X$DISPLAY_NUM" ] && break
    kill -0 "${pids[0]}" 2>/dev/null || die "Xvnc exited"
    sleep 0.1
done
[ -S "/tmp/.X11-unix/X$DISPLAY_NUM" ] || die "Xvnc did not start"
as_user jwm &
pids+=($!)
# A terminal, reopened if the user closes it.
as_user bash -c 'cd /config; while :; do xterm -geometry 110x32+40+40 -fa "DejaVu Sans Mono" \
    -fs 11 -bg "#101418" -fg "#d8dee9" -title "SealSkin terminal"; sleep 1; done' &
pids+=($!)
as_user python3 -m websockify 127.0.0.1:6080 127.0.0.1:5901 &
pids+=($!)
# Answer on :3000 only once the whole chain is up: SealSkin's readiness check is a GET there.
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/6080) 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || die "websockify exited"
    sleep 0.1
done
nginx -c "$RUN/nginx.conf" &
pids+=($!)
log "serving noVNC on :3000 under $PREFIX"

set +e
wait -n
status=$?
log "a component exited (status $status); stopping the container"
stop_all
exit 1
