/**
 * The command line's help texts: the general usage and each command's.
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };

/** The program's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** The general usage, for `pitifulnat --help` and mistakes without a command. */
export const USAGE = `pitifulnat ${VERSION}: an FTP server and FTP NAT fixer for home routers

Usage: pitifulnat <command> [options]

Commands:
  serve [--config FILE]          run the FTP server (no config: a read-only demo on 127.0.0.1:2121)
  proxy [--config FILE]          stand in front of an existing FTP server (proxy.upstream)
                                 and fix its NAT problems
  check [--config FILE] [--client ADDR]
                                 validate the config, resolve the public address, bind the
                                 passive range; exit 0 only when all is well
  status [--config FILE] [--url URL] [--json]
                                 print the running server's status snapshot
  hash-password [--cost N]       read a password and print the hash to paste into the config
  user add|passwd|del|list [NAME] [--config FILE]
                                 add a user, change a password, remove a user, list the users
                                 (edits the config file in place)
  help [COMMAND]                 print this usage, or a command's help

Options:
  -h, --help                     help for a command
  -V, --version                  print the version

Config lookup: --config FILE, else $PITIFULNAT_CONFIG, else /etc/pitifulnat/config.yaml
(serve alone falls back to the embedded demo config).
`;

/** Each command's help, for `pitifulnat COMMAND --help`. */
export const HELP: Record<string, string> = {
  serve: `Usage: pitifulnat serve [--config FILE]

Runs the FTP server. Without a config file (none given, $PITIFULNAT_CONFIG unset and
/etc/pitifulnat/config.yaml absent) it serves a small demo directory read-only to anonymous
users on 127.0.0.1:2121. SIGTERM/SIGINT stop it; SIGHUP reloads the config.
`,
  proxy: `Usage: pitifulnat proxy [--config FILE]

Runs the NAT-fixing proxy in front of the FTP server named in proxy.upstream (vsftpd, a
NAS's own). Clients connect to listen.address:port; the proxy relays the control connection,
answers PASV/EPSV with the announced address and a port from the passive range, connects back
to active-mode clients itself, and relays the data connections. Needs a config file with a
proxy section. SIGTERM/SIGINT stop it; SIGHUP reloads the config.
`,
  check: `Usage: pitifulnat check [--config FILE] [--client ADDR]

Validates the config, resolves the public address now (printing the answer, the DNS server
asked or the URL fetched, and the time taken), tells what a remote and a LAN client would be
told in PASV replies, checks that the ports can be bound, that users can log in to their
homes, and, when a server is running, what it announces. --client ADDR (an IPv4 or IPv6
address) prints what that client would be told.

Exit codes (with several causes, the lowest): 0 all is well (internet, LAN only, or this
machine only); 2 bad arguments; 3 config error; 4 loopback listen.address with a public
address; 5 public address unreachable from the internet (private, loopback, CGNAT,
documentation range, in lan_networks); 6 public name does not resolve, or public_address.url
gives no address; 7 a port cannot be used (in use, needs privileges, passive range holds the
control port); 8 status port cannot be bound; 9 nobody can log in; 10 a home is missing or
not readable/writable; 11 FTPS certificate expired or not for the public name; 12 proxy
upstream unreachable or refusing; 13 no router answers port_mapping.
`,
  status: `Usage: pitifulnat status [--config FILE] [--url URL] [--json]

Prints what the status page shows, for a terminal: the public address (where it came from,
when it was resolved, the last error, its changes), what remote and LAN clients are told,
open sessions with their transfers, recent transfers, failed logins and bans. --json prints
the snapshot as the server's /status serves it. Needs status.port in the config, or --url,
an http:// or https:// URL of the snapshot.
`,
  "hash-password": `Usage: pitifulnat hash-password [--cost N]

Reads a password (prompt without echo on a terminal, else the first line of stdin) and prints
a salted scrypt hash to paste into the config as a user's password. --cost is log2 of scrypt's
N, 10-20 (default 12: N=4096, r=8, p=1, 4 MiB and about 8 ms per login on a desktop CPU,
six times SHA-512-crypt's); each step up doubles memory and time.
`,
  user:
    `Usage: pitifulnat user add NAME --home DIR [--permissions LIST] [--config FILE] [--reload PID]
       pitifulnat user passwd NAME [--config FILE] [--reload PID]
       pitifulnat user del NAME [--config FILE] [--reload PID]
       pitifulnat user list [--config FILE]

Manages the users in the config file without editing the YAML by hand. add, passwd and del
change only the user's own lines (comments and layout are kept), check the result as the
server would, and replace the file atomically, keeping its mode, owner and group.

  add NAME        adds a user whose home is DIR (a relative DIR is taken from the current
                  folder and written as an absolute path); --permissions is a comma-separated
                  list of read, write, delete, mkdir, rename (default read). The password is
                  prompted for twice without echo on a terminal, else read from the first line
                  of stdin, and stored as a scrypt hash, as hash-password makes it.
  passwd NAME     sets a new password for NAME, read the same way.
  del NAME        removes NAME.
  list            prints each user's name, home and permissions (never the password hash).

A running server reads the change when it reloads: systemctl reload pitifulnat, or
kill -HUP PID. --reload PID sends that SIGHUP, but only to a process that /proc shows is
pitifulnat serve or proxy reading this same config file.

Exit codes: 0 done; 1 an error (no config file, a config error, NAME exists on add or is
unknown on passwd/del, the file cannot be written, PID is not that server); 2 bad arguments.
`,
  help: `Usage: pitifulnat help [COMMAND]

Prints the general usage, or COMMAND's help (the same as pitifulnat COMMAND --help).
`,
};
