/* Stand-ins for the vendored BLAKE3 (_blake3/) and _b3batch.c, for a build where they did not compile:
 * setup.py then builds _ctap and _crestore with TAMER_NO_BLAKE3, and their native BLAKE3 is off (the tap
 * hashes with the digest objects it is given, a restore with the blake3 package's: the same digests, in
 * Python's hashing objects). So nothing here that hashes is ever called: each aborts, as a call would be
 * a bug. Each module says which build it is: its native_blake3 is 0 here, 1 with the vendored BLAKE3. */
#ifndef TAMER_B3NONE_H
#define TAMER_B3NONE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define TAMER_NATIVE_BLAKE3 0
#define B3_BATCH_MAX (64 * 1024)

typedef struct {
    const uint8_t *data;
    size_t len;
    uint8_t out[32];
} b3_job;

typedef struct {
    int unused;
} blake3_hasher;

static inline int b3_hash_jobs(b3_job *jobs, size_t n) {
    (void)jobs;
    (void)n;
    abort();
}

static inline void b3_hex(const uint8_t digest[32], char out[64]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
}

static inline void blake3_hasher_init(blake3_hasher *h) {
    (void)h;
    abort();
}

static inline void blake3_hasher_update(blake3_hasher *h, const void *data, size_t len) {
    (void)h;
    (void)data;
    (void)len;
    abort();
}

static inline void blake3_hasher_finalize(const blake3_hasher *h, uint8_t *out, size_t len) {
    (void)h;
    (void)out;
    (void)len;
    abort();
}

#endif
