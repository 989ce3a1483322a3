#!/usr/bin/env bash
# A local stand-in for the base image of BentoML's generated Dockerfile, for machines that
# cannot pull it (the container tests; air-gapped builds). The bento is not changed: the
# stand-in takes the name the Dockerfile's FROM resolves to, so `bentoml containerize
# --backend buildah` builds on it as it would on the real one.
#
#   deploy/base-image.sh [IMAGE]        # default docker.io/library/python:3.11-slim
#
# It is Debian bookworm (debootstrap) with Python 3.11 and pip on the PATH, like the
# official image (pip may install into the system: Debian's EXTERNALLY-MANAGED marker is
# removed), plus this host's CA bundle, so that the build's own installs (pip, uv) trust
# what this host trusts. Nothing is done when IMAGE is already in local storage.
#
# Needs root and Debian's debootstrap, buildah and podman. Honours buildah's and podman's
# own environment (STORAGE_DRIVER, default vfs here; CONTAINERS_STORAGE_CONF).
#   WORKBENCH_ROOTFS_DIR  work folder (default deploy/.rootfs; .debs are cached there)
#   DEBIAN_MIRROR         default http://deb.debian.org/debian
#   HOST_CA_BUNDLE        default /etc/ssl/certs/ca-certificates.crt
set -euo pipefail

image=${1:-docker.io/library/python:3.11-slim}
here=$(cd "$(dirname "$0")" && pwd)
work=$(realpath -m "${WORKBENCH_ROOTFS_DIR:-$here/.rootfs}")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}

for tool in debootstrap buildah podman; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }
done
if buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "base image $image: already in local storage, reused"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
[ -f "$ca_bundle" ] || { echo "no CA bundle at $ca_bundle (set HOST_CA_BUNDLE)" >&2; exit 1; }

mkdir -p "$work/debs"
rootfs=$(mktemp -d "$work/rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
chmod 755 "$rootfs"  # it becomes the image's /; mktemp made it 0700

echo "debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --cache-dir="$work/debs" \
  --include=python3,python3-pip,python-is-python3,ca-certificates \
  bookworm "$rootfs" "$mirror"

rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
[ -e "$rootfs/usr/bin/pip" ] || ln -s pip3 "$rootfs/usr/bin/pip"
cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

certs=/etc/ssl/certs/ca-certificates.crt
echo "importing $rootfs as $image"
tar -C "$rootfs" --numeric-owner -c . | podman import \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PIP_CERT=$certs" --change "ENV SSL_CERT_FILE=$certs" \
  --change "ENV UV_NATIVE_TLS=1" \
  --change 'CMD ["python3"]' \
  --message "workbench stand-in for $image (debootstrap bookworm)" - "$image"
echo "base image $image: built"
