#!/usr/bin/env bash
# Unpacks Debian's pure-ftpd into .tmp/ftpd (ignored by git) for
# tests/integration/proxy_pureftpd_test.ts: the package conflicts with
# vsftpd, which the other tests use, so it is never installed, only
# downloaded (apt-get download) and extracted (dpkg-deb -x). Libraries it
# links against are installed with apt-get when missing, unless that would
# remove a package.
#
# Idempotent: when .tmp/ftpd/usr/sbin/pure-ftpd is there and all its
# libraries resolve, it does nothing. Exits non-zero when it cannot provide
# the binary (the test then skips, or fails under CI=true).
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGE=pure-ftpd
DEST=.tmp/ftpd
CACHE=.tmp/ftpd-cache
BIN=$DEST/usr/sbin/pure-ftpd

missing_libs() {
  ldd "$1" 2>/dev/null | awk '/not found/ { print $1 }'
}

usable() {
  [[ -x $BIN && -x $DEST/usr/bin/pure-pw ]] && [[ -z "$(missing_libs "$BIN")" ]] &&
    "$BIN" --help >/dev/null 2>&1
}

if usable; then
  echo "fetch_ftpd: $BIN is ready"
  exit 0
fi

for tool in apt-get dpkg-deb dpkg-query ldd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch_ftpd: $tool is missing; cannot unpack $PACKAGE" >&2
    exit 1
  fi
done
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"

mkdir -p "$CACHE"
deb=$(ls "$CACHE"/${PACKAGE}_*.deb 2>/dev/null | head -n1 || true)
if [[ -z $deb ]]; then
  # Run from the cache dir: apt-get download writes into the current directory.
  if ! (cd "$CACHE" && apt-get download -qq "$PACKAGE" 2>/dev/null); then
    $sudo apt-get update -qq
    (cd "$CACHE" && apt-get download -qq "$PACKAGE" 2>/dev/null)
  fi
  deb=$(ls "$CACHE"/${PACKAGE}_*.deb | head -n1)
fi

# The libraries it depends on ("libfoo1 (>= 1.0)" entries of Depends), when not installed.
libs=()
for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/[(|].*//; s/ //g' | grep '^lib' || true); do
  status=$(dpkg-query -W -f='${Status}' "$dep" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || libs+=("$dep")
done
if ((${#libs[@]})); then
  if apt-get install -s -qq "${libs[@]}" 2>/dev/null | grep -q '^Remv'; then
    echo "fetch_ftpd: installing ${libs[*]} would remove packages; not doing it" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${libs[@]}" >/dev/null
fi

# Extract next to the destination, then move into place: an interrupted run leaves no half tree.
rm -rf "$DEST.new"
mkdir -p "$DEST.new"
dpkg-deb -x "$deb" "$DEST.new"
rm -rf "$DEST"
mv "$DEST.new" "$DEST"

if ! usable; then
  echo "fetch_ftpd: $BIN does not run; missing libraries: $(missing_libs "$BIN" | tr '\n' ' ')" >&2
  exit 1
fi
echo "fetch_ftpd: unpacked $(basename "$deb") into $DEST"
