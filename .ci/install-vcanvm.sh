#!/usr/bin/env bash
# Installs what the vcan microVM tests (sim/vcanvm) need on a Debian amd64
# machine: qemu, and three Debian packages downloaded (not installed) into
# the harness's cache, which unpacks them itself:
#   linux-image-<version>-amd64  the kernel linux-image-amd64 points at, with
#                                the modules can, can-raw, can-isotp, can-dev, vcan
#   busybox-static               init, insmod, ip and poweroff for the initramfs
#   can-utils                    candump, cansend, isotpsend, isotprecv
# Idempotent: packages already present are kept, older versions removed.
# Run as root (apt-get install). The packages go into the cache of the user
# who runs the tests: root's (CI), or under sudo the invoking user's.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

owner=""
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  owner="$SUDO_USER"
  cachehome="$(getent passwd "$owner" | cut -d: -f6)/.cache"
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
  cachehome="$XDG_CACHE_HOME"
elif [ -n "${HOME:-}" ]; then
  cachehome="$HOME/.cache"
else
  echo "install-vcanvm: neither XDG_CACHE_HOME nor HOME is set; the tests look for the packages there" >&2
  exit 1
fi
cache="$cachehome/ecu-kubelet/vcanvm"
debs="$cache/debs"

apt-get update -q
# qemu-system-x86 brings qemu-system-x86_64 and its firmware (SeaBIOS);
# the recommended extras (GUI, network boot ROMs) are not needed.
apt-get install -y -q --no-install-recommends qemu-system-x86 dpkg

# The kernel package that the linux-image-amd64 metapackage points at, e.g.
# linux-image-6.1.0-56-amd64 on bookworm.
kernel=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }')
if [ -z "$kernel" ]; then
  echo "install-vcanvm: apt-cache depends linux-image-amd64 names no linux-image-*-amd64 package" >&2
  exit 1
fi

new_cachehome=""
[ -d "$cachehome" ] || new_cachehome=yes
mkdir -p "$debs"
if [ -n "$owner" ]; then
  # The harness writes its image beside the packages, as that user.
  chown -R "$owner:" "$cachehome/ecu-kubelet"
  [ -z "$new_cachehome" ] || chown "$owner:" "$cachehome"
fi
cd "$debs"
for pkg in "$kernel" busybox-static can-utils; do
  version=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2; exit }')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "install-vcanvm: apt has no candidate for $pkg" >&2
    exit 1
  fi
  # apt-get download names files <name>_<version with : as %3a>_<arch>.deb.
  file="${pkg}_${version//:/%3a}_amd64.deb"
  if [ ! -s "$file" ]; then
    # Download into a private directory: apt-get download writes partial
    # files under the final name, which a concurrent test must not see.
    tmp=$(mktemp -d "$debs/.download.XXXXXX")
    (cd "$tmp" && apt-get download -q "$pkg=$version" 2>&1 | grep -v 'Download is performed unsandboxed' || true)
    if [ ! -s "$tmp/$file" ]; then
      echo "install-vcanvm: apt-get download $pkg=$version did not produce $file" >&2
      rm -rf "$tmp"
      exit 1
    fi
    mv "$tmp/$file" "$file"
    rm -rf "$tmp"
    [ -z "$owner" ] || chown "$owner:" "$file"
  fi
  # Keep only this version, so that the harness's choice is unambiguous.
  case "$pkg" in
    linux-image-*) pattern='linux-image-[0-9]*-amd64_*_amd64.deb' ;;
    *) pattern="${pkg}_*_amd64.deb" ;;
  esac
  for old in $pattern; do
    [ "$old" = "$file" ] || [ ! -e "$old" ] || rm -f -- "$old"
  done
  echo "install-vcanvm: $debs/$file"
done
command -v qemu-system-x86_64 >/dev/null
echo "install-vcanvm: ready ($(qemu-system-x86_64 --version | head -n1))"
