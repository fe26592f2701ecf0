#!/usr/bin/env bash
# Fetches Debian trixie's nft (1.1.3) into DIR without touching the system, and writes DIR/bin/nft,
# a wrapper that runs it. Put DIR/bin first on PATH to test with it:
#
#   scripts/nft-trixie.sh /var/tmp/nft-trixie && PATH=/var/tmp/nft-trixie/bin:$PATH nft --version
#
# How (DESIGN.md, "nft versions"): `apt-get download` through a trixie sources list kept in
# DIR/apt (its own lists and cache; the system's apt state is never read or written), then
# `dpkg-deb -x` of nft and every library it loads into DIR/root. trixie's nft needs trixie's
# glibc (2.41), so the wrapper starts it through trixie's own dynamic loader with
# --library-path; the system's libraries are never used. The mirror is the one the system's
# apt sources name (Debian's own when none does).
#
# Idempotent: when DIR/bin/nft already runs, it only prints its version. Needs apt-get,
# dpkg-deb and the Debian archive keyring (present on Debian and its images).
set -euo pipefail

dir=${1:?usage: nft-trixie.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
wrapper="$dir/bin/nft"

if [ -x "$wrapper" ] && version=$("$wrapper" --version 2>/dev/null); then
  echo "$version ($wrapper)"
  exit 0
fi

# The configured Debian mirror: the first URI ending in /debian in the system's sources, in
# either format (deb822 `URIs:` or one-line `deb URI suite ...`).
mirror=$(
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -n -E 's#^(URIs:|deb(\s+\[[^]]*\])?)\s+(\S+/debian)/?(\s.*)?$#\3#p' | head -n 1
) || true
mirror=${mirror:-http://deb.debian.org/debian}

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || { echo "nft-trixie: $keyring missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$apt/etc/preferences.d"
echo "deb [signed-by=$keyring] $mirror trixie main" >"$apt/sources.list"
: >"$apt/status"
# Everything apt reads or writes lives in $apt: the sources, the lists, the cache, and an
# empty dpkg status (so it never consults the system's installed packages).
opts=(
  -o "Dir::Etc::sourcelist=$apt/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d"
  -o "Dir::State::Lists=$apt/lists"
  -o "Dir::State::status=$apt/status"
  -o "Dir::Cache=$apt/cache"
  -o "APT::Architecture=$(dpkg --print-architecture)"
  -o "Debug::NoLocking=1"
  -q
)
echo "nft-trixie: fetching trixie's package lists from $mirror"
apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 || { cat "$apt/update.log" >&2; exit 1; }

# nft and everything it loads (ldd of trixie's nft, measured): the list in DESIGN.md.
packages=(nftables libnftables1 libnftnl11 libc6 libjansson4 libgmp10 libedit2 libxtables12
  libmnl0 libbsd0 libtinfo6 libmd0)
(cd "$apt/debs" && apt-get "${opts[@]}" download "${packages[@]}") >"$apt/download.log" 2>&1 ||
  { cat "$apt/download.log" >&2; exit 1; }

root="$dir/root"
rm -rf "$root"
mkdir -p "$root"
for deb in "$apt/debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done

loader=$(cd "$root" && ls usr/lib/*/ld-linux*.so.* lib*/ld-linux*.so.* 2>/dev/null | head -n 1) || true
[ -n "$loader" ] || { echo "nft-trixie: no dynamic loader in trixie's libc6" >&2; exit 1; }
triplet=$(basename "$(dirname "$loader")")

mkdir -p "$dir/bin"
cat >"$wrapper.tmp" <<EOF
#!/bin/sh
# trixie's nft through trixie's loader and libraries (scripts/nft-trixie.sh). exec: nft keeps
# this process id, and its exit status or the signal that killed it reach the caller unchanged.
root='$root'
exec "\$root/$loader" --library-path "\$root/usr/lib/$triplet:\$root/lib/$triplet" "\$root/usr/sbin/nft" "\$@"
EOF
chmod 0755 "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"
rm -rf "$apt/debs" "$apt/cache" "$apt/lists"

version=$("$wrapper" --version) || { echo "nft-trixie: $wrapper does not run" >&2; exit 1; }
echo "$version ($wrapper)"
