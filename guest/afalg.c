/* afalg: the guest's AF_ALG client for vfu-virtio's guest checks (static; runs from the initramfs).
 *
 * The kernel's AF_ALG "skcipher" sockets are bound by *driver* name (e.g. virtio_crypto_aes_cbc), so
 * every byte goes through that driver and the device behind it, never through a software fallback.
 *
 *   afalg check DRIVER KEYHEX IVHEX SEED SIZE DIR
 *       P = pattern(SEED, SIZE). Writes DIR/enc = CBC-encrypt(P) and DIR/dec = CBC-decrypt(P), both with
 *       KEY and IV, then decrypts DIR/enc again and compares with P. The host recomputes enc and dec
 *       with its own AES (vfu_virtio.qemu.scenario).
 *   afalg bench DRIVER SIZE MS
 *       Encrypts SIZE-byte requests back to back (one in flight) for at least MS milliseconds.
 *
 * pattern(SEED, n): x = SEED (0 becomes 0x9e3779b9); per byte x ^= x << 13; x ^= x >> 17; x ^= x << 5
 * on 32 bits, and the byte is x >> 24.
 *
 * Stdout is one token line for guest/linux.sh to put into a marker: check prints "ok" or "mismatch",
 * bench prints "ops=N usec=T"; a failing step prints "error:STEP:ERRNO". Exit status 0 only for ok.
 */
#include <errno.h>
#include <linux/if_alg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_ALG
#define SOL_ALG 279
#endif
#define MAX_LEN 65536
#define IV_LEN 16

static void fail(const char *step)
{
    printf("error:%s:%d\n", step, errno);
    exit(2);
}

static size_t parse_hex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = strlen(s) / 2;
    if (strlen(s) % 2 || n > cap)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char byte[3] = { s[2 * i], s[2 * i + 1], 0 };
        char *end;
        out[i] = (unsigned char)strtoul(byte, &end, 16);
        if (*end)
            return 0;
    }
    return n;
}

static void pattern(unsigned char *p, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 0x9e3779b9u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 24);
    }
}

/* An operation socket of a cbc(aes) transform bound by driver name and keyed. */
static int open_op(const char *driver, const unsigned char *key, size_t keylen)
{
    struct sockaddr_alg sa = { .salg_family = AF_ALG };
    strcpy((char *)sa.salg_type, "skcipher");
    if (strlen(driver) >= sizeof(sa.salg_name)) {
        errno = ENAMETOOLONG;
        fail("name");
    }
    strcpy((char *)sa.salg_name, driver);
    int tfm = socket(AF_ALG, SOCK_SEQPACKET, 0);
    if (tfm < 0)
        fail("socket");
    if (bind(tfm, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail("bind");
    if (setsockopt(tfm, SOL_ALG, ALG_SET_KEY, key, (socklen_t)keylen) < 0)
        fail("setkey");
    int op = accept(tfm, NULL, 0);
    if (op < 0)
        fail("accept");
    return op;
}

/* One request on an operation socket: direction and IV travel as control messages with the data. */
static void crypt_once(int op, __u32 dir, const unsigned char *iv, const unsigned char *in,
                       unsigned char *out, size_t len)
{
    union {
        char buf[CMSG_SPACE(sizeof(__u32)) + CMSG_SPACE(sizeof(struct af_alg_iv) + IV_LEN)];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = { .iov_base = (void *)in, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                          .msg_controllen = sizeof(ctl.buf) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_ALG;
    c->cmsg_type = ALG_SET_OP;
    c->cmsg_len = CMSG_LEN(sizeof(__u32));
    memcpy(CMSG_DATA(c), &dir, sizeof(dir));
    c = CMSG_NXTHDR(&msg, c);
    c->cmsg_level = SOL_ALG;
    c->cmsg_type = ALG_SET_IV;
    c->cmsg_len = CMSG_LEN(sizeof(struct af_alg_iv) + IV_LEN);
    struct af_alg_iv *aiv = (struct af_alg_iv *)CMSG_DATA(c);
    aiv->ivlen = IV_LEN;
    memcpy(aiv->iv, iv, IV_LEN);
    ssize_t sent = sendmsg(op, &msg, 0);
    if (sent != (ssize_t)len) {
        if (sent >= 0)
            errno = EMSGSIZE;
        fail("sendmsg");
    }
    for (size_t got = 0; got < len;) {
        ssize_t r = read(op, out + got, len - got);
        if (r <= 0) {
            if (r == 0)
                errno = ENODATA;
            fail("read");
        }
        got += (size_t)r;
    }
}

static void write_file(const char *dir, const char *name, const unsigned char *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f))
        fail("write");
}

static size_t parse_size(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 0);
    if (*end || v == 0 || v > MAX_LEN || v % 16) {
        errno = EINVAL;
        fail("size");
    }
    return v;
}

static int check(const char *driver, const char *keyhex, const char *ivhex, const char *seed,
                 const char *size_s, const char *dir)
{
    unsigned char key[64], iv[IV_LEN];
    size_t keylen = parse_hex(keyhex, key, sizeof(key));
    if (!keylen || parse_hex(ivhex, iv, sizeof(iv)) != IV_LEN) {
        errno = EINVAL;
        fail("args");
    }
    size_t len = parse_size(size_s);
    static unsigned char plain[MAX_LEN], enc[MAX_LEN], dec[MAX_LEN], back[MAX_LEN];
    pattern(plain, len, (uint32_t)strtoul(seed, NULL, 0));
    int op = open_op(driver, key, keylen);
    crypt_once(op, ALG_OP_ENCRYPT, iv, plain, enc, len);
    crypt_once(op, ALG_OP_DECRYPT, iv, plain, dec, len);
    crypt_once(op, ALG_OP_DECRYPT, iv, enc, back, len);
    close(op);
    write_file(dir, "enc", enc, len);
    write_file(dir, "dec", dec, len);
    int same = !memcmp(back, plain, len);
    puts(same ? "ok" : "mismatch");
    return same ? 0 : 1;
}

static long elapsed_usec(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000L + (t.tv_nsec - t0->tv_nsec) / 1000;
}

static int bench(const char *driver, const char *size_s, const char *ms_s)
{
    static unsigned char in[MAX_LEN], out[MAX_LEN];
    static const unsigned char key[16] = "vfu-virtio bench", iv[IV_LEN] = { 0 };
    size_t len = parse_size(size_s);
    long budget = strtol(ms_s, NULL, 0) * 1000L, ops = 0, usec;
    pattern(in, len, 1);
    int op = open_op(driver, key, sizeof(key));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        crypt_once(op, ALG_OP_ENCRYPT, iv, in, out, len);
        ops++;
    } while ((usec = elapsed_usec(&t0)) < budget);
    close(op);
    printf("ops=%ld usec=%ld\n", ops, usec);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 8 && !strcmp(argv[1], "check"))
        return check(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7]);
    if (argc == 5 && !strcmp(argv[1], "bench"))
        return bench(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: afalg check DRIVER KEYHEX IVHEX SEED SIZE DIR | afalg bench DRIVER SIZE MS\n");
    return 64;
}
