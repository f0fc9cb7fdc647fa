# The linux scenario (sourced by /init): Linux's own virtio_crypto driver on the crypto function.
#
# Loads the virtio, AF_ALG, tcrypt and PKCS#8 modules, reports what the kernel made of the virtio PCI functions,
# runs AF_ALG requests through the driver name virtio_crypto_aes_cbc, the kernel's AES test vectors (tcrypt
# mode=10) and RSA through keyctl (/bin/pkey with the host's key from /etc/vfu/), each between two interrupt
# counts, then resets the crypto device twice (virtio driver unbind/bind, then PCI driver unbind/bind) and
# repeats the AF_ALG checks after each.
#
# Parameters, from the kernel command line: vfu.key= vfu.iv= (hex), vfu.seed= (input pattern),
# vfu.sizes= (comma list of bytes), vfu.reset=1 (do the two resets), vfu.tcrypt=1 (tcrypt mode=10),
# vfu.pkey=1 (keyctl RSA with /etc/vfu/rsa.pk8, message, digest), vfu.bench= (comma list of sizes) and
# vfu.benchms= (milliseconds per benchmark size).
CRYPTO_DRV=/sys/bus/virtio/drivers/virtio_crypto
AFALG_LIMIT=60  # seconds for one afalg run before it is killed and the next check goes on
PCI_DRV=/sys/bus/pci/drivers/virtio-pci

for m in virtio_pci virtio_crypto algif_skcipher algif_akcipher pkcs8_key_parser; do load_module $m; done
R=/proc/sys/crypto/af_alg_restrict  # 7.x: AF_ALG may not bind an implementation by its driver name
[ -e $R ] && say SYSCTL name=crypto.af_alg_restrict value=$(cat $R)

report_virtio() {
    for v in /sys/bus/virtio/devices/*; do
        [ -e "$v" ] || continue
        say VIRTIO phase=$1 name=$(basename "$v") device=$(cat "$v/device") vendor=$(cat "$v/vendor") \
            status=$(cat "$v/status") features=$(cat "$v/features") driver=$(driver_of "$v") \
            pci=$(basename "$(readlink -f "$v/..")")
    done
}
report_algs() {
    awk -v ph="$1" '
        function flush() { if (drv ~ /^virtio/) print "VFU-ALG phase=" ph " name=" name " driver=" drv \
                               " type=" type " selftest=" st; name = drv = type = st = "" }
        $1 == "name" { name = $3 } $1 == "driver" { drv = $3 } $1 == "type" { type = $3 }
        $1 == "selftest" { st = $3 } NF == 0 { flush() } END { flush() }' /proc/crypto
}
report_rsa() {  # every RSA instance the kernel built, with the implementation under it
    awk -v ph="$1" '
        function flush() { if (name ~ /rsa/) print "VFU-RSAIMPL phase=" ph " name=" name " driver=" drv \
                               " priority=" prio; name = drv = prio = "" }
        $1 == "name" { name = $3 } $1 == "driver" { drv = $3 } $1 == "priority" { prio = $3 }
        NF == 0 { flush() } END { flush() }' /proc/crypto
}
afalg_checks() {
    for size in $(param sizes | tr , ' '); do
        rm -f /tmp/enc /tmp/dec
        result=$(timeout $AFALG_LIMIT afalg check virtio_crypto_aes_cbc "$(param key)" "$(param iv)" "$(param seed)" \
                 "$size" /tmp)
        rc=$?
        [ -n "$result" ] || result=no-answer-exit-$rc  # a request the device never completed ends here
        enc=none; dec=none
        [ -s /tmp/enc ] && enc=$(sha /tmp/enc)
        [ -s /tmp/dec ] && dec=$(sha /tmp/dec)
        say AFALG phase=$1 size=$size result=$result enc_sha256=$enc dec_sha256=$dec
    done
}
phase() {
    report_pci "$1"
    report_virtio "$1"
    report_algs "$1"
    report_irqs "$1-before"
    afalg_checks "$1"
    report_irqs "$1-after"
}

say STEP name=boot
if [ -n "$(crypto_virtio_devs)" ]; then wait_for_algs; fi
phase boot

if [ "$(param tcrypt)" = 1 ]; then
    say STEP name=tcrypt
    # tcrypt's findings go to dmesg, its errors also to the console: they are reported here as VFU-TCRYPTLOG
    # lines instead (a kernel may lack a mode it tests: Debian's 6.1 has no xctr), the console is kept quiet
    seen=$(dmesg | wc -l); level=$(cut -f1 /proc/sys/kernel/printk); echo 1 > /proc/sys/kernel/printk
    report_irqs tcrypt-before
    out=$(timeout 120 modprobe tcrypt mode=10 2>&1); rc=$?  # tcrypt never stays loaded: EAGAIN is its success
    report_irqs tcrypt-after
    echo "$level" > /proc/sys/kernel/printk
    dmesg | tail -n +$(( seen + 1 )) | grep -E 'tcrypt|alg: ' | sed 's/^/VFU-TCRYPTLOG /'
    say TCRYPT mode=10 rc=$rc output=$(echo "$out" | tr ' \n' '__')
fi
if [ "$(param pkey)" = 1 ]; then
    say STEP name=pkey
    report_irqs pkey-before
    out=$(timeout 60 pkey /etc/vfu/rsa.pk8 /etc/vfu/message /etc/vfu/digest 2>&1); rc=$?
    say PKEY $(echo "$out" | tr '\n' ' ') rc=$rc
    report_irqs pkey-after
    report_rsa pkey
fi

if [ "$(param reset)" = 1 ] && [ -n "$(crypto_virtio_devs)" ]; then
    say STEP name=virtio-rebind
    for v in $(crypto_virtio_devs); do
        echo "$v" > $CRYPTO_DRV/unbind
        gone=yes; grep -q virtio_crypto_aes_cbc /proc/crypto && gone=no
        echo "$v" > $CRYPTO_DRV/bind
        say RESET kind=virtio-rebind dev=$v algs_gone_while_unbound=$gone driver=$(driver_of /sys/bus/virtio/devices/$v)
    done
    wait_for_algs
    phase virtio-rebind

    say STEP name=pci-rebind
    for v in $(crypto_virtio_devs); do
        slot=$(basename "$(readlink -f /sys/bus/virtio/devices/$v/..)")
        echo "$slot" > $PCI_DRV/unbind
        echo "$slot" > $PCI_DRV/bind
        say RESET kind=pci-rebind slot=$slot driver=$(driver_of /sys/bus/pci/devices/$slot) \
            virtio=$(crypto_virtio_devs | tr '\n' ' ' | sed 's/ $//; s/ /,/g')
    done
    wait_for_algs
    phase pci-rebind
fi

for size in $(param bench | tr , ' '); do
    say STEP name=bench-$size
    say BENCH driver=virtio_crypto_aes_cbc size=$size \
        $(timeout $(( $(param benchms) / 1000 + AFALG_LIMIT )) afalg bench virtio_crypto_aes_cbc "$size" "$(param benchms)")
done
