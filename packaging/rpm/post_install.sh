ln -sf atcr /usr/bin/docker-credential-atcr
systemd-sysusers /usr/lib/sysusers.d/atcr.conf >/dev/null 2>&1 || :
systemd-tmpfiles --create /usr/lib/tmpfiles.d/atcr.conf >/dev/null 2>&1 || :
chown root:atcr /etc/atcr/atcr.toml 2>/dev/null || :
if [ $1 -eq 1 ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable --now atcr.service >/dev/null 2>&1 || :
else
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl try-restart atcr.service >/dev/null 2>&1 || :
fi
