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

# Xvnc links libGL, whose Debian dependencies drag in Mesa's DRI drivers with LLVM (~160 MB)
# and tigervnc's vncserver wrapper needs Perl; our Xvnc runs without GLX acceleration
# and without the wrapper, so those packages are dropped.
dpkg --purge --force-depends libgl1-mesa-dri libllvm15 libz3-4 libdrm-amdgpu1 libdrm-nouveau2 \
    libdrm-radeon1 libdrm-intel1 libsensors5 libsensors-config \
    perl libperl5.36 perl-modules-5.36 libfile-readbackwards-perl >/dev/null 2>&1
test -x /usr/bin/Xvnc && test -x /usr/bin/jwm && test -x /usr/bin/xterm

install -d -m 755 /opt/sealskin
install -m 755 /tmp/recipe/start.sh /opt/sealskin/start.sh
install -m 644 /tmp/recipe/index.html.in /opt/sealskin/index.html.in
install -m 644 /tmp/recipe/nginx.conf.in /opt/sealskin/nginx.conf.in
install -m 644 /tmp/recipe/jwmrc /etc/jwm/system.jwmrc
install -d -m 755 /config
# nginx from Debian ships a default site and logs we never use.
rm -rf /etc/nginx/sites-enabled/* /etc/nginx/sites-available/* /var/log/nginx
