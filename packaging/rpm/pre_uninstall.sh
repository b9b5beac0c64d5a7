if [ $1 -eq 0 ]; then
    if [ -L /usr/bin/docker-credential-atcr ]; then rm -f /usr/bin/docker-credential-atcr; fi
    systemctl disable --now atcr.service >/dev/null 2>&1 || :
fi
