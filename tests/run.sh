#!/usr/bin/env bash
# Sets up what the tests need (Deno 2.9.6 from npm, Debian's test tools) and
# runs the whole test suite. Extra arguments go to `deno test`.
set -euo pipefail
cd "$(dirname "$0")/.."

DENO_VERSION=2.9.6
if ! command -v deno >/dev/null 2>&1 || [[ "$(deno --version | head -n1)" != "deno $DENO_VERSION "* ]]; then
  npm install -g "deno@$DENO_VERSION"
fi

# Debian packages: real FTP clients, a real DNS server, and the NAT lab's tools.
declare -A pkg_for=(
  [lftp]=lftp [curl]=curl [python3]=python3 [dnsmasq]=dnsmasq-base
  [nft]=nftables [ip]=iproute2 [vsftpd]=vsftpd [openssl]=openssl [rclone]=rclone
  [flock]=util-linux [runuser]=util-linux [fuser]=psmisc [useradd]=passwd
  [systemd-analyze]=systemd [fail2ban-regex]=fail2ban [chromium]=chromium
  # The port-mapping lab: a real router daemon (installed neither enabled nor started)
  # and two independent clients to cross-check its mappings.
  [miniupnpd]=miniupnpd-nftables [natpmpc]=natpmpc [upnpc]=miniupnpc
)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("${pkg_for[$cmd]}")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash tests/tools/fetch_ftpd.sh || echo "fetch_ftpd.sh failed: the Pure-FTPd proxy test will skip (fail under CI=true)" >&2
deno install --quiet
exec deno test --allow-all --no-check=remote tests/ "$@"
