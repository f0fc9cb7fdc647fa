# The dpdk scenario (sourced by /init): DPDK 22.11's crypto_virtio poll-mode driver on the crypto function,
# bound to uio_pci_generic, then a forced config interrupt on INTx while uio_pci_generic owns the function.
#
# Binds the first 1af4:1054 function to uio_pci_generic (unbinding virtio-pci where the kernel has it built in),
# probes PCI 2.3 INTx masking the way the kernel does (toggle Command bit 10 with one 16-bit write, read back;
# then with a 1-byte write to offset 5),
# reserves hugepages, then runs the steps of vfu.steps= in order, each under a time limit, between
# "VFU-DPDKSTEP name=<step> at=begin" and "... at=end rc=<exit> seconds=<s>"; a step's own output goes to a file
# and only its result lines reach the console, each as "VFU-DPDKOUT <line>" (stdout's, then stderr's; the
# last lines of each too when it fails):
#   autotest       dpdk-test cryptodev_virtio_autotest with /usr/lib/vfu/enotsup.so preloaded (DPDK's
#                  test_cryptodev.c crashes on a refused session otherwise; see guest/dpdk_enotsup.c)
#   verify-cipher  dpdk-test-crypto-perf --ptest verify, AES-128-CBC, against the host's vectors
#   verify-chain   the same, AES-128-CBC then HMAC-SHA1 (cipher-then-auth, digest generated)
#   perf-cipher    dpdk-test-crypto-perf --ptest throughput, AES-128-CBC
#   perf-chain     the same, AES-128-CBC then HMAC-SHA1
#   intx           the forced config interrupt: see intx_check below
# Parameters, from the kernel command line: vfu.steps= (comma list), vfu.ops= vfu.perfsizes= vfu.burst= (crypto-perf
# throughput: total ops, comma list of buffer sizes, burst), vfu.vops= vfu.vlen= (verify: total ops, buffer size of
# /etc/vfu/cperf.data), vfu.hugepages= (2 MiB pages), vfu.steptimeout= (seconds per step), vfu.mem= (guest RAM in
# MiB: the INTx check puts a virtqueue across its end).
STEP_TIMEOUT=$(param steptimeout); STEP_TIMEOUT=${STEP_TIMEOUT:-300}
for m in uio uio_pci_generic; do load_module $m; done

BDF=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor"):$(cat "$d/device")" = 0x1af4:0x1054 ] && { BDF=$(basename "$d"); break; }
done
report_pci boot
if [ -z "$BDF" ]; then say ERROR what=no-crypto-function; return 0; fi
D=/sys/bus/pci/devices/$BDF

# ---- PCI 2.3 INTx masking probe, as the kernel's pci_intx_mask_broken() does it -------------------------------
w_command() { printf "\\$(printf %03o $(( $1 & 0xff )))\\$(printf %03o $(( $1 >> 8 )))" \
                  | dd of=$D/config bs=2 seek=2 count=1 conv=notrunc 2>/dev/null; }
c0=$(cfg16 $D 4); w_command $(( c0 ^ 0x400 )); c1=$(cfg16 $D 4); w_command $(( c0 ))
# and once more with a single-byte write to Command's high byte (offset 5), as setpci COMMAND.b would
w_byte5() { printf "\\$(printf %03o $1)" | dd of=$D/config bs=1 seek=5 count=1 conv=notrunc 2>/dev/null; }
w_byte5 $(( (c0 >> 8) ^ 0x04 )); c2=$(cfg16 $D 4); w_byte5 $(( c0 >> 8 ))
say INTXPROBE command=$c0 toggled=$c1 byte_toggled=$c2 restored=$(cfg16 $D 4) \
    masking=$([ $(( c0 ^ c1 )) = 1024 ] && echo ok || echo broken) \
    byte_write=$([ $(( c0 ^ c2 )) = 1024 ] && echo ok || echo broken)

if [ "$(driver_of $D)" != none ]; then say UNBIND slot=$BDF driver=$(driver_of $D); echo $BDF > $D/driver/unbind; fi
echo "1af4 1054" > /sys/bus/pci/drivers/uio_pci_generic/new_id
[ "$(driver_of $D)" = uio_pci_generic ] || echo $BDF > /sys/bus/pci/drivers/uio_pci_generic/bind
UIO=$(ls $D/uio 2>/dev/null | head -1)
say BIND slot=$BDF driver=$(driver_of $D) uio=${UIO:-none} irq=$(cat $D/irq)
IRQ_MATCH=uio
[ "$(driver_of $D)" = uio_pci_generic ] || { say ERROR what=not-bound-to-uio_pci_generic; return 0; }

echo "$(param hugepages)" > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
mkdir -p /dev/hugepages /var/run; mount -t hugetlbfs nodev /dev/hugepages
say HUGEPAGES $(awk '/HugePages_Total/ {print "total=" $2} /HugePages_Free/ {print "free=" $2}' /proc/meminfo)

# ---- DPDK ------------------------------------------------------------------------------------------------------
EAL="--iova-mode=pa -a $BDF --file-prefix=vfu --log-level=lib.eal:notice"
# what reaches the console: dpdk-test's cases, suite summaries and verdict, the shim's lines, crypto-perf's
# result rows (8 columns for verify, 10 for throughput), and errors
RESULT_LINES='TestCase \[|Test Suite|Tests (Total|Skipped|Executed|Unsupported|Passed|Failed)|^VFU-SHIM'
RESULT_LINES="$RESULT_LINES|^Test (OK|Failed|Skipped)"
RESULT_LINES="$RESULT_LINES|lcore id|^ *[0-9]+( +[0-9.]+){7,9} *\$"
RESULT_LINES="$RESULT_LINES|rror|not supported|[Uu]nsupported|[Ff]ailed|Segmentation|Aborted|PANIC"
run_step() {  # NAME COMMAND...
    n=$1; shift
    say DPDKSTEP name=$n at=begin
    t0=$(cut -d' ' -f1 /proc/uptime)
    timeout $STEP_TIMEOUT "$@" > /tmp/$n.out 2> /tmp/$n.err; rc=$?  # apart: stdout is block-buffered
    t1=$(cut -d' ' -f1 /proc/uptime)
    for f in /tmp/$n.out /tmp/$n.err; do
        grep -E "$RESULT_LINES" $f | grep -v 'Failed Enq *Failed Deq' | sed 's/^/VFU-DPDKOUT /'
        [ $rc = 0 ] || tail -n 8 $f | grep -v '0x' | sed 's/^/VFU-DPDKOUT tail: /'  # not the vector dump
    done
    echo
    say DPDKSTEP name=$n at=end rc=$rc seconds=$(awk -v a=$t0 -v b=$t1 'BEGIN {printf "%.1f", b - a}')
}
PERF="--ptest throughput --devtype crypto_virtio --buffer-sz $(param perfsizes) --total-ops $(param ops)"
PERF="$PERF --burst-sz $(param burst)"
VERIFY="--ptest verify --devtype crypto_virtio --test-file /etc/vfu/cperf.data --test-name aes_cbc_128_sha1_hmac"
VERIFY="$VERIFY --buffer-sz $(param vlen) --total-ops $(param vops) --burst-sz $(param burst)"
CIPHER="--cipher-algo aes-cbc --cipher-op encrypt --cipher-key-sz 16 --cipher-iv-sz 16"
AUTH="--auth-algo sha1-hmac --auth-op generate --auth-key-sz 64 --digest-sz 20"

# ---- the forced config interrupt on INTx ----------------------------------------------------------------------
# With uio_pci_generic bound nothing enables MSI-X, so the device's config interrupt goes out on INTx. Through the
# common configuration (busybox devmem on BAR addresses: uio_pci_generic claims no region) the check negotiates
# VIRTIO_F_VERSION_1, sets DRIVER_OK, then enables queue 0 with its rings across the end of guest RAM: both
# vfu-virtio and QEMU's virtio core answer with DEVICE_NEEDS_RESET and a config interrupt. uio_pci_generic's
# handler claims an interrupt only while Status bit 3 reads 1, and masks it with Command bit 10; then the check
# clears bit 10 with the condition still held (a pending interrupt must come again), reads the ISR (which ends
# the condition: bit 3 reads 0), clears bit 10 again (nothing may come), and resets the device.
virtio_cap() {  # CFG_TYPE -> "BAR OFFSET" of that virtio vendor capability
    p=$(( $(od -An -tu1 -j52 -N1 $D/config) ))
    while [ $p != 0 ]; do
        set -- $(od -An -tu1 -j$p -N5 $D/config)
        [ $1 = 9 ] && [ $4 = "$CAP" ] && { echo $5 $(cfg32 $D $(( p + 8 ))); return; }
        p=$2
    done
}
bar_addr() { sed -n "$(( $1 + 1 ))p" $D/resource | cut -d' ' -f1; }
uio_events() { cat /sys/class/uio/$UIO/event; }
wait_events() {  # N: until uio_pci_generic counted N interrupts since armed, at most 5 s; then a moment more
    for _ in $(seq 50); do [ $(( $(uio_events) - E0 )) -ge $1 ] && break; sleep 0.1; done; sleep 0.2
}
intx_state() { echo "events=$(( $(uio_events) - E0 )) status=$(cfg16 $D 6) command=$(cfg16 $D 4)" \
                    "device_status=$(printf 0x%02x $(devmem $(( COMMON + 20 )) 8))"; }
intx_check() {
    CAP=1; set -- $(virtio_cap); COMMON=$(( $(bar_addr $1) + $2 ))
    CAP=3; set -- $(virtio_cap); ISR=$(( $(bar_addr $1) + $2 ))
    w_command $(( ( $(cfg16 $D 4) | 0x6 ) & ~0x400 ))   # memory space, bus master, INTx not disabled
    devmem $(( COMMON + 20 )) 8 0
    for _ in $(seq 50); do [ $(( $(devmem $(( COMMON + 20 )) 8) )) = 0 ] && break; sleep 0.1; done
    devmem $(( COMMON + 20 )) 8 1; devmem $(( COMMON + 20 )) 8 3
    devmem $(( COMMON + 8 )) 32 1; devmem $(( COMMON + 12 )) 32 1   # driver_feature word 1: VIRTIO_F_VERSION_1
    devmem $(( COMMON + 8 )) 32 0; devmem $(( COMMON + 12 )) 32 0
    devmem $(( COMMON + 20 )) 8 11; devmem $(( COMMON + 20 )) 8 15  # FEATURES_OK, DRIVER_OK
    devmem $(( COMMON + 22 )) 16 0                                  # queue_select 0
    edge=$(( $(param mem) * 1048576 - 16 ))
    for off in 32 40 48; do devmem $(( COMMON + off )) 32 $edge; devmem $(( COMMON + off + 4 )) 32 0; done
    E0=$(uio_events)
    say INTX at=armed $(intx_state) irq=$(cat $D/irq)
    devmem $(( COMMON + 28 )) 16 1                                  # queue_enable
    wait_events 1; say INTX at=fired $(intx_state)
    fired=$(( $(uio_events) - E0 ))
    w_command $(( $(cfg16 $D 4) & ~0x400 ))
    wait_events $(( fired + 1 )); say INTX at=unmasked $(intx_state)
    isr=$(printf 0x%02x $(devmem $ISR 8))
    say INTX at=isr-read isr=$isr $(intx_state)
    w_command $(( $(cfg16 $D 4) & ~0x400 ))
    sleep 1; say INTX at=quiet $(intx_state)
    devmem $(( COMMON + 20 )) 8 0
    say INTX at=reset $(intx_state) nobody_cared=$(dmesg | grep -c 'nobody cared') \
        irq_disabled=$(dmesg | grep -c 'Disabling IRQ')
}

report_irqs start
for step in $(param steps | tr , ' '); do
    case $step in
        autotest) run_step autotest env DPDK_TEST=cryptodev_virtio_autotest LD_PRELOAD=/usr/lib/vfu/enotsup.so \
                      dpdk-test -l 0 $EAL ;;
        verify-cipher) run_step verify-cipher dpdk-test-crypto-perf -l 0,1 $EAL -- $VERIFY --optype cipher-only \
                           $CIPHER ;;
        verify-chain) run_step verify-chain dpdk-test-crypto-perf -l 0,1 $EAL -- $VERIFY --optype cipher-then-auth \
                          $CIPHER $AUTH ;;
        perf-cipher) run_step perf-cipher dpdk-test-crypto-perf -l 0,1 $EAL -- $PERF --optype cipher-only $CIPHER ;;
        perf-chain) run_step perf-chain dpdk-test-crypto-perf -l 0,1 $EAL -- $PERF --optype cipher-then-auth \
                        $CIPHER $AUTH ;;
        intx) say DPDKSTEP name=intx at=begin; intx_check; say DPDKSTEP name=intx at=end rc=0 ;;
        *) say ERROR what=unknown-step step=$step ;;
    esac
done
report_irqs end
