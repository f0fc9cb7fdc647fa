#!/bin/bash
# Build libvfio-user as a shared library from Debian's qemu *source* package (subprojects/libvfio-user).
# The binding in vfu_virtio/libvfio_user/ is written for exactly one revision of that tree: PINNED below, with the
# project's patch PATCH applied (its header says why). Output (git-ignored): $VMKIT/lib/libvfio-user.so.0,
# $VMKIT/include/vfio-user/*.h, $VMKIT/lib/libvfio-user.commit (one line: PINNED+<first 16 hex of the patch's
# sha256>, which the loader checks), and libvfio-user's own sample device $VMKIT/bin/gpio-pci-idio-16 (a
# non-virtio vfio-user PCI device, linked against $VMKIT/lib: run it with LD_LIBRARY_PATH=$VMKIT/lib; the
# conformance tests use it). `native/libvfio-user.sh --stamp` prints the stamp line and builds nothing.
# Needs: meson ninja-build pkg-config gcc patch libjson-c-dev libcmocka-dev (scripts/setup installs them).
set -euo pipefail
PINNED=0b28d205572c80b568a1003db2c8f37ca333e4d7
PATCH=$(cd "$(dirname "$0")" && pwd)/libvfio-user-hostile-peers.patch
STAMP="$PINNED+$(sha256sum < "$PATCH" | cut -c1-16)"
if [ "${1:-}" = --stamp ]; then echo "$STAMP"; exit 0; fi
VMKIT=${VMKIT:?VMKIT must be set}
. "$(dirname "$0")/../scripts/lib/papt.sh"
S=$VMKIT/src; rm -rf "$S"; mkdir -p "$S"; cd "$S"
papt trixie source --download-only qemu/trixie
tar -xJf qemu_*.orig.tar.xz --wildcards '*/subprojects/libvfio-user/*' '*/subprojects/libvfio-user.wrap'
rm -f qemu_*
L=$(echo "$S"/qemu-*/subprojects/libvfio-user)
if ! grep -q "revision = $PINNED" "$L.wrap"; then
  echo "native/libvfio-user.sh: the qemu source carries a libvfio-user revision other than the pinned $PINNED:" >&2
  cat "$L.wrap" >&2
  echo "the ctypes binding (vfu_virtio/libvfio_user) is written for $PINNED; check the API before re-pinning" >&2
  exit 1
fi
patch -p1 --forward --batch --quiet -d "$L" < "$PATCH"
meson setup "$S/build" "$L" --buildtype=release >/dev/null
ninja -C "$S/build" lib/libvfio-user.so.0.0.1 samples/gpio-pci-idio-16 >/dev/null
mkdir -p "$VMKIT/lib" "$VMKIT/bin" "$VMKIT/include/vfio-user/pci_caps"
cp -a "$S"/build/lib/libvfio-user.so* "$VMKIT/lib/"
cp "$S/build/samples/gpio-pci-idio-16" "$VMKIT/bin/"
cp "$L"/include/*.h "$VMKIT/include/vfio-user/"
cp "$L"/include/pci_caps/*.h "$VMKIT/include/vfio-user/pci_caps/"
echo "$STAMP" > "$VMKIT/lib/libvfio-user.commit"
rm -rf "$S"
