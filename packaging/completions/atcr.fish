# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_atcr_global_optspecs
    string join \n h/help V/version
end

function __fish_atcr_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_atcr_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_atcr_using_subcommand
    set -l cmd (__fish_atcr_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c atcr -n "__fish_atcr_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c atcr -n "__fish_atcr_needs_command" -s V -l version -d 'Print version'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "serve" -d 'Run the node: the registry, its PDS and hold (or, with `--role hold`, the hold alone)'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "check-config" -d 'Read and check the configuration (file, `ATCR_*` environment, flags) and exit'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "config" -d 'The configuration'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "doctor" -d 'Check permissions, ports, certificates, the clock, storage and the index, and say what to fix; exits 1 when a check fails'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "fsck" -d 'Hash every stored blob and manifest again and list those whose bytes do not match their digest; exits 1 when any does. Only reads, so the daemon may run'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "gc" -d 'Delete blobs no manifest uses (written or linked longer ago than `gc.grace_secs`) and stale uploads, and print what was freed. Through the running daemon (which keeps serving), or on the state itself when the daemon is stopped'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "tls" -d 'HTTPS certificates'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "user" -d 'Local PDS accounts'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "hold" -d 'The hold: who owns this node\'s blob storage, whether pulls are public; and the holds on other machines this registry trusts'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "crew" -d 'The hold\'s crew: who may pull from and push to this node'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "index" -d 'The registry index'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "storage" -d 'Blob storage'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "pds" -d 'The embedded PDS\'s storage (pds.redb, pds.wal)'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "login" -d 'Log in to a node: create an app password with the account password (read once) and keep it for docker-credential-atcr; with --oauth, as a user of another PDS, through a browser sign-in at that PDS'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "completions" -d 'Print a shell completion script (the packages install them), e.g. `atcr completions bash > /etc/bash_completion.d/atcr`'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "man" -d 'Print the manual page (roff; the packages install it): `atcr man | man -l -`'
complete -c atcr -n "__fish_atcr_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand serve" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand serve" -l listen -d 'Address to listen on, e.g. 127.0.0.1:5000 (port 0 picks a free one)' -r
complete -c atcr -n "__fish_atcr_using_subcommand serve" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand serve" -l role -d 'What to run, as `node.role` in the configuration: `full` (registry, PDS and hold) or `hold` (the hold and its PDS only)' -r -f -a "full\t''
hold\t''"
complete -c atcr -n "__fish_atcr_using_subcommand serve" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand check-config" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand check-config" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand check-config" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand config; and not __fish_seen_subcommand_from show help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand config; and not __fish_seen_subcommand_from show help" -f -a "show" -d 'Print the effective configuration, each value with where it came from'
complete -c atcr -n "__fish_atcr_using_subcommand config; and not __fish_seen_subcommand_from show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand config; and __fish_seen_subcommand_from show" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand config; and __fish_seen_subcommand_from show" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the effective configuration, each value with where it came from'
complete -c atcr -n "__fish_atcr_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand doctor" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand doctor" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand doctor" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand fsck" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand fsck" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand fsck" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand fsck" -l quarantine -d 'Move damaged objects to <blob root>/quarantine/ so they are no longer served'
complete -c atcr -n "__fish_atcr_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand gc" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand gc" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand gc" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand gc" -l dry-run -d 'Print what would be freed; delete nothing'
complete -c atcr -n "__fish_atcr_using_subcommand gc" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand tls; and not __fish_seen_subcommand_from trust-instructions help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand tls; and not __fish_seen_subcommand_from trust-instructions help" -f -a "trust-instructions" -d 'Print how docker, podman and containerd clients come to trust this node\'s certificate'
complete -c atcr -n "__fish_atcr_using_subcommand tls; and not __fish_seen_subcommand_from trust-instructions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand tls; and __fish_seen_subcommand_from trust-instructions" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand tls; and __fish_seen_subcommand_from trust-instructions" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand tls; and __fish_seen_subcommand_from trust-instructions" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand tls; and __fish_seen_subcommand_from trust-instructions" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand tls; and __fish_seen_subcommand_from help" -f -a "trust-instructions" -d 'Print how docker, podman and containerd clients come to trust this node\'s certificate'
complete -c atcr -n "__fish_atcr_using_subcommand tls; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -f -a "add" -d 'Create an account `<name>.<handle domain>` with a new did:plc; prints handle and DID. The password must have at least 8 characters'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -f -a "list" -d 'List accounts: name, handle, DID, storage used, quota (and `admin` for administrators)'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -f -a "quota" -d 'Show or set an account\'s storage quota: the bytes of unique blobs its manifests may use'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -f -a "remove" -d 'Remove an account (by name, handle or DID); its repository is kept, inactive'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -f -a "passwd" -d 'Change an account\'s password (at least 8 characters); its sessions end'
complete -c atcr -n "__fish_atcr_using_subcommand user; and not __fish_seen_subcommand_from add list quota remove passwd help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from add" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from add" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from add" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from add" -l password-stdin -d 'Read the password (at least 8 characters) from the first line of stdin (default: ask for it twice at the terminal)'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from add" -l admin -d 'Make the account an administrator'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from list" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from list" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from quota" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from quota" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from quota" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from quota" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from remove" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from remove" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from remove" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from passwd" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from passwd" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from passwd" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from passwd" -l password-stdin -d 'Read the password (at least 8 characters) from the first line of stdin (default: ask for it twice at the terminal)'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from passwd" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "add" -d 'Create an account `<name>.<handle domain>` with a new did:plc; prints handle and DID. The password must have at least 8 characters'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "list" -d 'List accounts: name, handle, DID, storage used, quota (and `admin` for administrators)'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "quota" -d 'Show or set an account\'s storage quota: the bytes of unique blobs its manifests may use'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove an account (by name, handle or DID); its repository is kept, inactive'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "passwd" -d 'Change an account\'s password (at least 8 characters); its sessions end'
complete -c atcr -n "__fish_atcr_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -f -a "show" -d 'Print the captain record (owner, public, allowAllCrew, deployedAt) and the crew size'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -f -a "set" -d 'Change the captain record'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -f -a "add" -d 'Trust a hold on another machine: pushes may send blobs there (holds.default, or a user\'s profile), pulls read them back. Checks that the server answers as that DID'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -f -a "list" -d 'List the trusted holds on other machines: DID and endpoint'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -f -a "remove" -d 'Stop trusting a hold; blobs already sent there can no longer be read through this node'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and not __fish_seen_subcommand_from show set add list remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from show" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from show" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from show" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -l owner -d 'The new owner: a local user (name, handle or DID) or any DID' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -l public -d 'Whether anyone, anonymous callers included, may pull' -r -f -a "true\t''
false\t''"
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -l allow-all-crew -d 'Whether any authenticated user may join the crew (io.atcr.hold.requestCrew)' -r -f -a "true\t''
false\t''"
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from add" -l endpoint -d 'Where its XRPC answers (`https://nas.lan:8443`). Default: the host of a did:web' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from add" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from add" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from add" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from list" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from list" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from remove" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from remove" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from remove" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the captain record (owner, public, allowAllCrew, deployedAt) and the crew size'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from help" -f -a "set" -d 'Change the captain record'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from help" -f -a "add" -d 'Trust a hold on another machine: pushes may send blobs there (holds.default, or a user\'s profile), pulls read them back. Checks that the server answers as that DID'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the trusted holds on other machines: DID and endpoint'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Stop trusting a hold; blobs already sent there can no longer be read through this node'
complete -c atcr -n "__fish_atcr_using_subcommand hold; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and not __fish_seen_subcommand_from add remove list help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and not __fish_seen_subcommand_from add remove list help" -f -a "add" -d 'Make a user (name, handle or DID) a crew member, replacing any membership it has'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and not __fish_seen_subcommand_from add remove list help" -f -a "remove" -d 'Remove a user\'s crew membership (every crew record naming it)'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and not __fish_seen_subcommand_from add remove list help" -f -a "list" -d 'List the crew: member DID, handle (local users), role, permissions'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and not __fish_seen_subcommand_from add remove list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from add" -l role -d 'read: blob:read; write: blob:read, blob:write; admin: those and crew:admin' -r -f -a "read\t''
write\t''
admin\t''"
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from add" -l permission -d 'Grant exactly these permissions instead of the role\'s (repeatable): blob:read, blob:write, crew:admin' -r
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from add" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from add" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from add" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from remove" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from remove" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from remove" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from list" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from list" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from help" -f -a "add" -d 'Make a user (name, handle or DID) a crew member, replacing any membership it has'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a user\'s crew membership (every crew record naming it)'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the crew: member DID, handle (local users), role, permissions'
complete -c atcr -n "__fish_atcr_using_subcommand crew; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand index; and not __fish_seen_subcommand_from rebuild help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand index; and not __fish_seen_subcommand_from rebuild help" -f -a "rebuild" -d 'Recreate the registry index from the repositories\' records and blob storage (with the daemon stopped)'
complete -c atcr -n "__fish_atcr_using_subcommand index; and not __fish_seen_subcommand_from rebuild help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand index; and __fish_seen_subcommand_from rebuild" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand index; and __fish_seen_subcommand_from rebuild" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand index; and __fish_seen_subcommand_from rebuild" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand index; and __fish_seen_subcommand_from rebuild" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand index; and __fish_seen_subcommand_from help" -f -a "rebuild" -d 'Recreate the registry index from the repositories\' records and blob storage (with the daemon stopped)'
complete -c atcr -n "__fish_atcr_using_subcommand index; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand storage; and not __fish_seen_subcommand_from migrate help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand storage; and not __fish_seen_subcommand_from migrate help" -f -a "migrate" -d 'Copy every blob from the configured backend to the one the `[storage]` section of another file describes (e.g. from disk to S3), with the daemon stopped. Each blob is verified against its digest while it streams; blobs already there with the right size are skipped, so an interrupted run resumes. Nothing is deleted from the source'
complete -c atcr -n "__fish_atcr_using_subcommand storage; and not __fish_seen_subcommand_from migrate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from migrate" -l to-config -d 'A configuration file whose `[storage]` section is the target (the rest is ignored)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from migrate" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from migrate" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from migrate" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from migrate" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from help" -f -a "migrate" -d 'Copy every blob from the configured backend to the one the `[storage]` section of another file describes (e.g. from disk to S3), with the daemon stopped. Each blob is verified against its digest while it streams; blobs already there with the right size are skipped, so an interrupted run resumes. Nothing is deleted from the source'
complete -c atcr -n "__fish_atcr_using_subcommand storage; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and not __fish_seen_subcommand_from recover help" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and not __fish_seen_subcommand_from recover help" -f -a "recover" -d 'Start again after pds.wal was lost (deleted, emptied, written over) when pds.redb still needed it: keeps what pds.redb holds and gives up the commits only the log had (daemon stopped). Does nothing when the two files agree'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and not __fish_seen_subcommand_from recover help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from recover" -l config -d 'Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults)' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from recover" -l data-dir -d 'State directory' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from recover" -l listen -d 'The daemon\'s listen address, as `listen` in the configuration; this command listens on nothing. With pds.public_host unset, its port is part of the node\'s identity (localhost:PORT): give the daemon\'s' -r
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from recover" -l accept-loss -d 'Required to give up the commits the lost log held'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from recover" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from help" -f -a "recover" -d 'Start again after pds.wal was lost (deleted, emptied, written over) when pds.redb still needed it: keeps what pds.redb holds and gives up the commits only the log had (daemon stopped). Does nothing when the two files agree'
complete -c atcr -n "__fish_atcr_using_subcommand pds; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand login" -s u -l username -d 'Account: short name, handle or DID' -r
complete -c atcr -n "__fish_atcr_using_subcommand login" -l ca-file -d 'Trust this CA (PEM), e.g. the node\'s own from /ca.crt; default: the system\'s' -r -F
complete -c atcr -n "__fish_atcr_using_subcommand login" -l oauth -d 'A user of another PDS: sign in through the browser (the command prints the link to open and waits on a loopback address for it to come back); no password is read'
complete -c atcr -n "__fish_atcr_using_subcommand login" -l password-stdin -d 'Read the account password from the first line of stdin (default: ask for it at the terminal)'
complete -c atcr -n "__fish_atcr_using_subcommand login" -l insecure -d 'Plain HTTP (a node on a trusted LAN without TLS). Loopback (127.0.0.0/8, ::1, localhost) speaks plain HTTP without it, as docker does'
complete -c atcr -n "__fish_atcr_using_subcommand login" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand completions" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand man" -s h -l help -d 'Print help'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "serve" -d 'Run the node: the registry, its PDS and hold (or, with `--role hold`, the hold alone)'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "check-config" -d 'Read and check the configuration (file, `ATCR_*` environment, flags) and exit'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "config" -d 'The configuration'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "doctor" -d 'Check permissions, ports, certificates, the clock, storage and the index, and say what to fix; exits 1 when a check fails'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "fsck" -d 'Hash every stored blob and manifest again and list those whose bytes do not match their digest; exits 1 when any does. Only reads, so the daemon may run'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "gc" -d 'Delete blobs no manifest uses (written or linked longer ago than `gc.grace_secs`) and stale uploads, and print what was freed. Through the running daemon (which keeps serving), or on the state itself when the daemon is stopped'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "tls" -d 'HTTPS certificates'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "user" -d 'Local PDS accounts'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "hold" -d 'The hold: who owns this node\'s blob storage, whether pulls are public; and the holds on other machines this registry trusts'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "crew" -d 'The hold\'s crew: who may pull from and push to this node'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "index" -d 'The registry index'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "storage" -d 'Blob storage'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "pds" -d 'The embedded PDS\'s storage (pds.redb, pds.wal)'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "login" -d 'Log in to a node: create an app password with the account password (read once) and keep it for docker-credential-atcr; with --oauth, as a user of another PDS, through a browser sign-in at that PDS'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "completions" -d 'Print a shell completion script (the packages install them), e.g. `atcr completions bash > /etc/bash_completion.d/atcr`'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "man" -d 'Print the manual page (roff; the packages install it): `atcr man | man -l -`'
complete -c atcr -n "__fish_atcr_using_subcommand help; and not __fish_seen_subcommand_from serve check-config config doctor fsck gc tls user hold crew index storage pds login completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the effective configuration, each value with where it came from'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from tls" -f -a "trust-instructions" -d 'Print how docker, podman and containerd clients come to trust this node\'s certificate'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "add" -d 'Create an account `<name>.<handle domain>` with a new did:plc; prints handle and DID. The password must have at least 8 characters'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "list" -d 'List accounts: name, handle, DID, storage used, quota (and `admin` for administrators)'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "quota" -d 'Show or set an account\'s storage quota: the bytes of unique blobs its manifests may use'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "remove" -d 'Remove an account (by name, handle or DID); its repository is kept, inactive'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "passwd" -d 'Change an account\'s password (at least 8 characters); its sessions end'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from hold" -f -a "show" -d 'Print the captain record (owner, public, allowAllCrew, deployedAt) and the crew size'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from hold" -f -a "set" -d 'Change the captain record'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from hold" -f -a "add" -d 'Trust a hold on another machine: pushes may send blobs there (holds.default, or a user\'s profile), pulls read them back. Checks that the server answers as that DID'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from hold" -f -a "list" -d 'List the trusted holds on other machines: DID and endpoint'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from hold" -f -a "remove" -d 'Stop trusting a hold; blobs already sent there can no longer be read through this node'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from crew" -f -a "add" -d 'Make a user (name, handle or DID) a crew member, replacing any membership it has'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from crew" -f -a "remove" -d 'Remove a user\'s crew membership (every crew record naming it)'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from crew" -f -a "list" -d 'List the crew: member DID, handle (local users), role, permissions'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from index" -f -a "rebuild" -d 'Recreate the registry index from the repositories\' records and blob storage (with the daemon stopped)'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from storage" -f -a "migrate" -d 'Copy every blob from the configured backend to the one the `[storage]` section of another file describes (e.g. from disk to S3), with the daemon stopped. Each blob is verified against its digest while it streams; blobs already there with the right size are skipped, so an interrupted run resumes. Nothing is deleted from the source'
complete -c atcr -n "__fish_atcr_using_subcommand help; and __fish_seen_subcommand_from pds" -f -a "recover" -d 'Start again after pds.wal was lost (deleted, emptied, written over) when pds.redb still needed it: keeps what pds.redb holds and gives up the commits only the log had (daemon stopped). Does nothing when the two files agree'
