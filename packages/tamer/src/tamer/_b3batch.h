/* tamer/_b3batch.c: BLAKE3 of many small inputs at once (the backup tap's per-file digests). */
#ifndef TAMER_B3BATCH_H
#define TAMER_B3BATCH_H

#include <stddef.h>
#include <stdint.h>

/* Inputs up to this size are hashed side by side; larger ones go through blake3_hasher, whose own
 * SIMD path is efficient there (it hashes 16 consecutive chunks of one input at once). */
#define B3_BATCH_MAX (64 * 1024)

typedef struct {
    const uint8_t *data; /* len bytes, readable until b3_hash_jobs returns */
    size_t len;          /* at most B3_BATCH_MAX */
    uint8_t out[32];     /* the input's BLAKE3 digest (32 bytes, the default length) */
} b3_job;

/* Fills jobs[i].out for every i. Needs no Python (it may run without the GIL). 0, or -1 when memory
 * ran out (no out is then valid). */
int b3_hash_jobs(b3_job *jobs, size_t n);

/* The 64 lowercase hex digits of a 32-byte digest (no terminating NUL), as hashlib's hexdigest spells it. */
void b3_hex(const uint8_t digest[32], char out[64]);

#endif
