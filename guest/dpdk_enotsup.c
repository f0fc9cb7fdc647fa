/* LD_PRELOAD shim for DPDK 22.11's dpdk-test (cryptodev_virtio_autotest): a refused session is a skip, not a
 * crash. Client side only: nothing here reaches the device.
 *
 * DPDK 22.11's crypto_virtio PMD reports every refused session as -1, so rte_errno is EPERM: the refusals it
 * makes itself (auth-only transforms: "Unsupported operation chain order parameter") and the device's (a
 * create-session request answered with a status other than VIRTIO_CRYPTO_OK, e.g. QEMU's builtin backend for
 * every cipher+hash chain). Several helpers of DPDK's test_cryptodev.c take a NULL session for "skip" only when
 * rte_errno is ENOTSUP; with EPERM they enqueue an operation with a NULL session and the PMD dereferences it
 * (SIGSEGV in the "Negative HMAC SHA1" suite, which ends the run before the suites after it).
 *
 * rte_cryptodev_sym_session_create() is wrapped: when it returns NULL with rte_errno other than ENOTSUP,
 * rte_errno becomes ENOTSUP and one line "VFU-SHIM refused=<transforms> errno=<old rte_errno>" is printed
 * (transforms: cipher, auth, aead joined by '+', in chain order). Tests that assert a session instead of
 * skipping on ENOTSUP count these refusals as failures or skips the same way as without the shim.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

/* the head of struct rte_crypto_sym_xform (DPDK 22.11 rte_crypto_sym.h): next, then the type */
struct sym_xform {
	struct sym_xform *next;
	int type;  /* enum rte_crypto_sym_xform_type: 1 AUTH, 2 CIPHER, 3 AEAD */
};

typedef void *(*session_create_fn)(uint8_t dev_id, struct sym_xform *xforms, void *mempool);

void *rte_cryptodev_sym_session_create(uint8_t dev_id, struct sym_xform *xforms, void *mempool)
{
	static session_create_fn real;
	static const char *const kind[] = {"?", "auth", "cipher", "aead"};
	char chain[80] = "";
	int *rte_errno_p, len = 0;
	void *session;

	if (!real)
		real = (session_create_fn)dlsym(RTLD_NEXT, "rte_cryptodev_sym_session_create");
	session = real(dev_id, xforms, mempool);
	if (session)
		return session;
	rte_errno_p = dlsym(RTLD_DEFAULT, "per_lcore__rte_errno");  /* this thread's rte_errno (TLS) */
	if (!rte_errno_p || *rte_errno_p == ENOTSUP)
		return session;
	for (struct sym_xform *x = xforms; x && len < (int)sizeof(chain) - 8; x = x->next)
		len += snprintf(chain + len, sizeof(chain) - len, "%s%s", len ? "+" : "",
				x->type >= 1 && x->type <= 3 ? kind[x->type] : kind[0]);
	printf("VFU-SHIM refused=%s errno=%d\n", len ? chain : "none", *rte_errno_p);
	fflush(stdout);
	*rte_errno_p = ENOTSUP;
	return session;
}
