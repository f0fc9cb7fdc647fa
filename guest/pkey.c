/* pkey: RSA through the kernel's asymmetric keys (keyctl), the guest-side check of akcipher offload.
 *
 *   pkey RSA_PKCS8_DER MESSAGE_FILE DIGEST_FILE
 *
 * Loads the PKCS#8 RSA private key into the process keyring (add_key "asymmetric": pkcs8_key_parser), then
 * with the info string "enc=pkcs1 hash=sha256": signs DIGEST_FILE (the 32-byte SHA-256 of the message, as the
 * host computed it) with KEYCTL_PKEY_SIGN (RSASSA-PKCS1-v1_5 is deterministic, so the host recomputes the
 * signature), verifies it and a copy with one bit flipped (KEYCTL_PKEY_VERIFY: the copy must be refused),
 * encrypts the message (KEYCTL_PKEY_ENCRYPT; random padding, so the host decrypts it) and decrypts that
 * (KEYCTL_PKEY_DECRYPT). Which implementation does the work -- the device's virtio-crypto-rsa /
 * virtio-pkcs1-rsa or the software rsa-generic -- is the kernel's choice by priority; the caller counts the
 * device's interrupts around this program to see whether it was the device.
 *
 * Prints one line of key=value fields: bits, sign (ok or error:<errno name>), sig (hex), verify, verify_corrupt
 * (rejected when the kernel refused the flipped signature), encrypt, enc (hex), decrypt (ok, mismatch or error).
 * Exit status 0 when every step behaved, 1 otherwise, 2 on bad usage or unreadable files.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEY_SPEC_PROCESS_KEYRING -2
#define KEYCTL_PKEY_QUERY 24
#define KEYCTL_PKEY_ENCRYPT 25
#define KEYCTL_PKEY_DECRYPT 26
#define KEYCTL_PKEY_SIGN 27
#define KEYCTL_PKEY_VERIFY 28
#define INFO "enc=pkcs1 hash=sha256"
/* how the kernel refuses a bad signature: EKEYREJECTED (digest differs), EBADMSG or EINVAL (bad padding) */
#define REJECTED(e) ((e) == EKEYREJECTED || (e) == EBADMSG || (e) == EINVAL)

struct pkey_query {     /* struct keyctl_pkey_query, <linux/keyctl.h> */
	uint32_t supported_ops, key_size;
	uint16_t max_data_size, max_sig_size, max_enc_size, max_dec_size;
	uint32_t spare[10];
};

struct pkey_params {    /* struct keyctl_pkey_params, <linux/keyctl.h> */
	int32_t key_id;
	uint32_t in_len;
	uint32_t out_len;   /* in2_len for VERIFY */
	uint32_t spare[7];
};

static long keyctl5(int op, unsigned long a, unsigned long b, unsigned long c, unsigned long d)
{
	return syscall(SYS_keyctl, op, a, b, c, d);
}

static size_t slurp(const char *path, unsigned char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		exit(2);
	}
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static void hex(const char *name, const unsigned char *p, size_t n)
{
	printf(" %s=", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static const char *err(void)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "error:%s", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	return buf;
}

int main(int argc, char **argv)
{
	static unsigned char der[8192], msg[512], sig[1024], bad[1024], enc[1024], dec[1024];
	unsigned char digest[64];
	struct pkey_query q;
	struct pkey_params p;
	size_t der_len, msg_len, digest_len;
	long key, n, sig_len = 0, enc_len = 0;
	int ok = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: pkey RSA_PKCS8_DER MESSAGE_FILE DIGEST_FILE\n");
		return 2;
	}
	der_len = slurp(argv[1], der, sizeof(der));
	msg_len = slurp(argv[2], msg, sizeof(msg));
	digest_len = slurp(argv[3], digest, sizeof(digest));
	key = syscall(SYS_add_key, "asymmetric", "vfu-rsa", der, der_len, KEY_SPEC_PROCESS_KEYRING);
	if (key < 0) {
		printf("load=%s\n", err());
		return 1;
	}
	memset(&q, 0, sizeof(q));
	if (keyctl5(KEYCTL_PKEY_QUERY, key, 0, (unsigned long)INFO, (unsigned long)&q) < 0) {
		printf("load=ok query=%s\n", err());
		return 1;
	}
	printf("load=ok bits=%u", q.key_size);

	memset(&p, 0, sizeof(p));
	p.key_id = key;
	p.in_len = digest_len;
	p.out_len = q.max_sig_size;
	n = keyctl5(KEYCTL_PKEY_SIGN, (unsigned long)&p, (unsigned long)INFO, (unsigned long)digest, (unsigned long)sig);
	if (n < 0) {
		printf(" sign=%s", err());
		ok = 0;
	} else {
		sig_len = n;
		printf(" sign=ok");
		hex("sig", sig, sig_len);
		p.out_len = sig_len;  /* in2_len */
		n = keyctl5(KEYCTL_PKEY_VERIFY, (unsigned long)&p, (unsigned long)INFO, (unsigned long)digest,
			    (unsigned long)sig);
		printf(" verify=%s", n < 0 ? err() : "ok");
		ok &= n >= 0;
		memcpy(bad, sig, sig_len);
		bad[sig_len / 2] ^= 0x01;
		n = keyctl5(KEYCTL_PKEY_VERIFY, (unsigned long)&p, (unsigned long)INFO, (unsigned long)digest,
			    (unsigned long)bad);
		printf(" verify_corrupt=%s", n < 0 && REJECTED(errno) ? "rejected" : n < 0 ? err() : "ACCEPTED");
		ok &= n < 0 && REJECTED(errno);
	}

	p.in_len = msg_len;
	p.out_len = q.max_enc_size;
	n = keyctl5(KEYCTL_PKEY_ENCRYPT, (unsigned long)&p, (unsigned long)INFO, (unsigned long)msg, (unsigned long)enc);
	if (n < 0) {
		printf(" encrypt=%s", err());
		ok = 0;
	} else {
		enc_len = n;
		printf(" encrypt=ok");
		hex("enc", enc, enc_len);
		p.in_len = enc_len;
		p.out_len = q.max_dec_size;
		n = keyctl5(KEYCTL_PKEY_DECRYPT, (unsigned long)&p, (unsigned long)INFO, (unsigned long)enc,
			    (unsigned long)dec);
		if (n < 0) {
			printf(" decrypt=%s", err());
			ok = 0;
		} else {
			int same = (size_t)n == msg_len && !memcmp(dec, msg, msg_len);

			printf(" decrypt=%s", same ? "ok" : "mismatch");
			ok &= same;
		}
	}
	printf("\n");
	return ok ? 0 : 1;
}
