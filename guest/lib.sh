# Helpers shared by the guest scenarios (sourced by /init; busybox sh).
#   say TAG k=v ...      one marker line "VFU-TAG k=v ..."
#   param NAME           the value of vfu.NAME= on the kernel command line (empty when absent)
#   driver_of DIR        the driver bound to a sysfs device directory, or "none"
#   load_module NAME     modprobe NAME unless built in; one VFU-MODULE marker (loaded=yes|builtin|no)
#   report_pci PHASE     one VFU-PCI marker per virtio PCI function (vendor 0x1af4)
#   report_irqs PHASE    one VFU-IRQ marker per /proc/interrupts line whose name matches $IRQ_MATCH
#   cfg DEV OFF LEN      LEN bytes of DEV's PCI config space at OFF, as hex, lowest address first
#   cfg16 DEV OFF        the little-endian 16-bit config word at OFF, as 0xNNNN
#   cfg32 DEV OFF        the little-endian 32-bit config dword at OFF, as a decimal number
#   sha FILE             the SHA-256 of FILE, hex
#   crypto_virtio_devs   the virtio devices (virtioN) of device id 20, crypto
#   wait_for_algs        wait (10 s at most) until virtio_crypto's algorithms are registered and self-tested
say() { echo "VFU-$*"; }
param() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "vfu.$1="*) echo "${w#*=}" ;; esac
    done
}
driver_of() { d=$(readlink "$1/driver") && basename "$d" || echo none; }
load_module() {
    if grep -q "/$1\.ko" "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null; then say MODULE name=$1 loaded=builtin
    elif err=$(modprobe "$1" 2>&1); then say MODULE name=$1 loaded=yes
    else say MODULE name=$1 loaded=no error=$(echo "$err" | tr ' ' '_'); fi
}
report_pci() {
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor")" = 0x1af4 ] || continue
        msix=0; msi=0
        for v in "$d"/msi_irqs/*; do
            [ -e "$v" ] || continue
            case "$(cat "$v")" in msix) msix=$((msix + 1)) ;; *) msi=$((msi + 1)) ;; esac
        done
        say PCI phase=$1 slot=$(basename "$d") vendor=$(cat "$d/vendor") device=$(cat "$d/device") \
            subsystem_vendor=$(cat "$d/subsystem_vendor") subsystem_device=$(cat "$d/subsystem_device") \
            class=$(cat "$d/class") revision=$(cat "$d/revision") driver=$(driver_of "$d") \
            msix_vectors=$msix msi_vectors=$msi irq=$(cat "$d/irq")
    done
}
IRQ_MATCH=virtio
report_irqs() {
    awk -v ph="$1" -v re="$IRQ_MATCH" '$0 ~ re {
        n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i
        sub(":", "", $1); print "VFU-IRQ phase=" ph " irq=" $1 " chip=" $i " name=" $NF " count=" n }' /proc/interrupts
}
cfg() { od -An -v -tx1 -j"$2" -N"$3" "$1/config" | tr -d ' \n'; }
cfg16() { b=$(cfg "$1" "$2" 2); echo "0x${b#??}${b%??}"; }
cfg32() { od -An -v -tu4 -j"$2" -N4 "$1/config" | tr -d ' \n'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
crypto_virtio_devs() {
    for v in /sys/bus/virtio/devices/*; do
        [ "$(cat "$v/device" 2>/dev/null)" = 0x0014 ] && basename "$v"
    done
}
algs_settled() {  # no virtio algorithm still a test larval or untested (7.x self-tests after registering)
    awk '$1 == "driver" {d = $3} $1 == "type" {t = $3} $1 == "selftest" {s = $3}
         NF == 0 {if (d ~ /^virtio/ && (t == "larval" || s != "passed")) bad = 1; d = t = s = ""}
         END {if (d ~ /^virtio/ && (t == "larval" || s != "passed")) bad = 1; exit bad}' /proc/crypto
}
wait_for_algs() {  # the driver registers its algorithms when it probes; the kernel self-tests them
    for _ in $(seq 100); do grep -q 'virtio_crypto_aes_cbc' /proc/crypto && algs_settled && return; sleep 0.1; done
}
