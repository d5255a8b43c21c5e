# Runs inside the desktop rootfs (chroot) after the packages are installed.
set -eu
# noVNC: only the static web client (/usr/share/novnc), not the package's nodejs dependency.
cd /tmp
apt-get download -qq novnc
dpkg-deb -x novnc_*.deb /tmp/novnc
cp -a /tmp/novnc/usr/share/novnc /usr/share/novnc
test -f /usr/share/novnc/vnc.html
rm -rf /tmp/novnc /tmp/novnc_*.deb
python3 -c "import websockify.websocketproxy"

install -d -m 755 /opt/sealskin
install -m 755 /tmp/recipe/start.sh /opt/sealskin/start.sh
install -m 644 /tmp/recipe/index.html.in /opt/sealskin/index.html.in
install -m 644 /tmp/recipe/nginx.conf.in /opt/sealskin/nginx.conf.in
install -d -m 755 /config
# nginx from Debian ships a default site and logs we never use.
rm -rf /etc/nginx/sites-enabled/* /etc/nginx/sites-available/* /var/log/nginx
