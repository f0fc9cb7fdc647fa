/* afalg: the guest side of vfu-virtio's guest checks, through the kernel's AF_ALG skcipher interface.
 *
 *   afalg check DRIVER KEYHEX IVHEX SIZE SEED OUT
 *       Encrypts SIZE bytes of the pattern p[i] = (i * 31 + SEED) & 0xff with cbc(aes) bound by DRIVER
 *       name (e.g. virtio_crypto_aes_cbc), writes the ciphertext to OUT, decrypts it again and prints
 *       "VFU-AFALG size=SIZE encrypt=ok decrypt=match|MISMATCH". The host recomputes the ciphertext.
 *   afalg bench DRIVER SIZE MILLISECONDS
 *       Encrypts SIZE-byte requests back to back for about MILLISECONDS and prints
 *       "VFU-BENCH driver=DRIVER size=SIZE ops=N usec=T".
 * Exit status: 0 ok, 1 mismatch, 2+ an AF_ALG step failed (the message names it and errno).
 */
#include <errno.h>
#include <linux/if_alg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_ALG
#define SOL_ALG 279
#endif

static int unhex(const char *s, unsigned char *out, int max)
{
    int n = 0;
    while (s[0] && s[1] && n < max) {
        unsigned int v;
        if (sscanf(s, "%2x", &v) != 1)
            return -1;
        out[n++] = (unsigned char)v;
        s += 2;
    }
    return n;
}

static int open_tfm(const char *driver, const unsigned char *key, int keylen)
{
    struct sockaddr_alg sa = { .salg_family = AF_ALG, .salg_type = "skcipher" };
    strncpy((char *)sa.salg_name, driver, sizeof(sa.salg_name) - 1);
    int tfm = socket(AF_ALG, SOCK_SEQPACKET, 0);
    if (tfm < 0) { printf("VFU-AFALG-ERROR socket: %s\n", strerror(errno)); exit(2); }
    if (bind(tfm, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        printf("VFU-AFALG-ERROR bind(%s): %s\n", driver, strerror(errno)); exit(3);
    }
    if (setsockopt(tfm, SOL_ALG, ALG_SET_KEY, key, keylen) < 0) {
        printf("VFU-AFALG-ERROR setkey: %s\n", strerror(errno)); exit(4);
    }
    return tfm;
}

/* One operation: op is ALG_OP_ENCRYPT or ALG_OP_DECRYPT; in and out are len bytes (len <= 64 KiB). */
static void one_op(int tfm, int op, const unsigned char *iv, const unsigned char *in, unsigned char *out, size_t len)
{
    int s = accept(tfm, NULL, 0);
    if (s < 0) { printf("VFU-AFALG-ERROR accept: %s\n", strerror(errno)); exit(5); }
    char cbuf[CMSG_SPACE(sizeof(__u32)) + CMSG_SPACE(sizeof(struct af_alg_iv) + 16)] = {0};
    struct iovec iov = { .iov_base = (void *)in, .iov_len = len };
    struct msghdr msg = { .msg_control = cbuf, .msg_controllen = sizeof(cbuf), .msg_iov = &iov, .msg_iovlen = 1 };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_ALG; c->cmsg_type = ALG_SET_OP; c->cmsg_len = CMSG_LEN(sizeof(__u32));
    *(__u32 *)CMSG_DATA(c) = op;
    c = CMSG_NXTHDR(&msg, c);
    c->cmsg_level = SOL_ALG; c->cmsg_type = ALG_SET_IV; c->cmsg_len = CMSG_LEN(sizeof(struct af_alg_iv) + 16);
    struct af_alg_iv *ivp = (struct af_alg_iv *)CMSG_DATA(c);
    ivp->ivlen = 16; memcpy(ivp->iv, iv, 16);
    if (sendmsg(s, &msg, 0) != (ssize_t)len) { printf("VFU-AFALG-ERROR sendmsg: %s\n", strerror(errno)); exit(6); }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(s, out + got, len - got);
        if (r <= 0) { printf("VFU-AFALG-ERROR read: %s\n", r ? strerror(errno) : "short"); exit(7); }
        got += (size_t)r;
    }
    close(s);
}

int main(int argc, char **argv)
{
    unsigned char key[64], iv[16] = {0};
    if (argc == 8 && !strcmp(argv[1], "check")) {
        int keylen = unhex(argv[3], key, sizeof(key));
        size_t size = strtoul(argv[5], NULL, 0);
        unsigned seed = strtoul(argv[6], NULL, 0);
        if (keylen <= 0 || unhex(argv[4], iv, 16) != 16 || size == 0 || size > 65536) {
            printf("VFU-AFALG-ERROR bad arguments\n"); return 8;
        }
        unsigned char *pt = malloc(size), *ct = malloc(size), *back = malloc(size);
        for (size_t i = 0; i < size; i++) pt[i] = (unsigned char)(i * 31 + seed);
        int tfm = open_tfm(argv[2], key, keylen);
        one_op(tfm, ALG_OP_ENCRYPT, iv, pt, ct, size);
        one_op(tfm, ALG_OP_DECRYPT, iv, ct, back, size);
        FILE *f = fopen(argv[7], "wb");
        if (!f || fwrite(ct, 1, size, f) != size) { printf("VFU-AFALG-ERROR write %s\n", argv[7]); return 9; }
        fclose(f);
        int ok = !memcmp(pt, back, size);
        printf("VFU-AFALG size=%zu encrypt=ok decrypt=%s\n", size, ok ? "match" : "MISMATCH");
        return ok ? 0 : 1;
    }
    if (argc == 5 && !strcmp(argv[1], "bench")) {
        size_t size = strtoul(argv[3], NULL, 0);
        long ms = strtol(argv[4], NULL, 0);
        if (size == 0 || size > 65536 || size % 16) { printf("VFU-AFALG-ERROR bad size\n"); return 8; }
        memset(key, 0x42, 16);
        unsigned char *buf = calloc(1, size), *out = malloc(size);
        int tfm = open_tfm(argv[2], key, 16);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long ops = 0, usec = 0;
        do {
            one_op(tfm, ALG_OP_ENCRYPT, iv, buf, out, size);
            ops++;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            usec = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
        } while (usec < ms * 1000L);
        printf("VFU-BENCH driver=%s size=%zu ops=%ld usec=%ld\n", argv[2], size, ops, usec);
        return 0;
    }
    fprintf(stderr, "usage: afalg check DRIVER KEYHEX IVHEX SIZE SEED OUT | afalg bench DRIVER SIZE MS\n");
    return 10;
}
