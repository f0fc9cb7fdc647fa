# The faults scenario (sourced by /init): Linux's virtio_crypto driver meets a crypto device that misbehaves on
# purpose. The host served it with --inject faults that count this script's AF_ALG requests (vfu_virtio.qemu.faults),
# so each step meets exactly one fault, in this order:
#   error       AF_ALG cbc(aes) of vfu.okay= bytes (no fault), then of vfu.error= bytes: the device answers its
#               encryption VIRTIO_CRYPTO_ERR
#   hw-ready    AF_ALG of vfu.hwready= bytes; once the process has ended, the device clears VIRTIO_CRYPTO_S_HW_READY
#               (a configuration change) and sets it again seconds later: the algorithms go, AF_ALG cannot bind the
#               driver, the algorithms come back, AF_ALG works again
#   needs-reset AF_ALG of vfu.reset= bytes: the device sets DEVICE_NEEDS_RESET instead of answering the encryption;
#               the request never completes (afalg runs in the background: it sleeps uninterruptibly), the script
#               reads the device status and the configuration interrupt count
# Each step ends with a "VFU-FAULT step=... key=value ..." marker. Parameters, from the kernel command line: vfu.key=
# vfu.iv= (hex), vfu.seed= (input pattern), the sizes above, vfu.wait= (seconds to wait for a change, each).
WAIT=$(param wait); WAIT=${WAIT:-30}
for m in virtio_pci virtio_crypto algif_skcipher; do load_module $m; done

afalg_run() {  # afalg_run SIZE: one AF_ALG round trip by driver name; prints afalg's result token
    rm -f /tmp/enc /tmp/dec
    r=$(timeout 60 afalg check virtio_crypto_aes_cbc "$(param key)" "$(param iv)" "$(param seed)" "$1" /tmp)
    echo "${r:-no-answer}"
}
algs() { grep -q virtio_crypto_aes_cbc /proc/crypto && echo present || echo gone; }
until_algs() {  # until_algs present|gone: wait up to $WAIT seconds; prints what /proc/crypto says at the end
    for _ in $(seq $(( WAIT * 10 ))); do [ "$(algs)" = "$1" ] && break; sleep 0.1; done
    algs
}
config_irqs() { awk -v d="$DEV-config" '$NF == d {n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i;
                                                  print n}' /proc/interrupts; }
dmesg_has() { dmesg | grep -q "$1" && echo yes || echo no; }

DEV=$(crypto_virtio_devs | head -1)
if [ -z "$DEV" ]; then say ERROR what=no-crypto-device; return 0; fi
wait_for_algs
say FAULT step=boot dev=$DEV algs=$(algs) status=$(cat /sys/bus/virtio/devices/$DEV/status) config_irqs=$(config_irqs)

say STEP name=fault-error
okay=$(afalg_run "$(param okay)")
[ "$okay" = ok ] && okay_enc=$(sha /tmp/enc) || okay_enc=none
say FAULT step=error okay=$okay okay_enc_sha256=$okay_enc error=$(afalg_run "$(param error)")

say STEP name=fault-hw-ready
irqs=$(config_irqs)
trigger=$(afalg_run "$(param hwready)")  # ends before the device clears HW_READY
gone=$(until_algs gone)
bind=$(afalg_run 16)  # by driver name: nothing to bind while the algorithms are unregistered
back=$(until_algs present)
wait_for_algs
say FAULT step=hw-ready trigger=$trigger algs_after_clear=$gone bind_while_gone=$bind algs_after_restore=$back \
    after=$(afalg_run "$(param okay)") config_irqs=$(( $(config_irqs) - irqs )) \
    not_ready_logged=$(dmesg_has "Accelerator is not ready") ready_logged=$(dmesg_has "Accelerator device is ready")

say STEP name=fault-needs-reset
irqs=$(config_irqs)
afalg check virtio_crypto_aes_cbc "$(param key)" "$(param iv)" "$(param seed)" "$(param reset)" /tmp \
    > /tmp/reset.out 2>&1 &
pid=$!
for _ in $(seq $(( WAIT * 10 ))); do
    status=$(cat /sys/bus/virtio/devices/$DEV/status)
    [ $(( status & 0x40 )) -ne 0 ] && break
    sleep 0.1
done
sleep 2  # time for the request to complete, if the device completed it after all
state=$(awk '{print $3}' /proc/$pid/stat 2>/dev/null || echo ended)
say FAULT step=needs-reset status=$status afalg_state=$state afalg_output=$(tr ' \n' '__' < /tmp/reset.out) \
    config_irqs=$(( $(config_irqs) - irqs )) algs=$(algs)
