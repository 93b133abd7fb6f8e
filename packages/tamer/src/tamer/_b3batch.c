/* BLAKE3 of many small inputs at once, for the backup tap (tamer._ctap).
 *
 * Why: a backup hashes every file, and volumes are mostly small files. BLAKE3 is fast because it
 * compresses up to 16 chunks (1 KiB each) side by side in SIMD lanes, but within one file of ~10 KiB
 * it finds only 8 + 1 + 1 chunks to line up and hashes the rest one lane at a time (measured: 0.55 s
 * per GB of 10 KiB files against 0.16 s for one large input). Here chunk k of every file in a batch
 * shares one blake3_hash_many call (the chunks of one call share their counter, k, which is what a
 * chunk's position in its own file means), so the lanes stay full whatever the file sizes.
 *
 * The tree is BLAKE3's (the spec, section 2.1): each input is split into 1024-byte chunks, the last
 * possibly shorter (an empty input is one empty chunk); a chunk's chaining value comes from
 * compressing its 64-byte blocks in order (CHUNK_START on the first, CHUNK_END on the last, the
 * chunk's index as the counter); parents join two chaining values (PARENT, counter 0), the left
 * subtree holding the largest power of two of chunks that leaves at least one for the right; the root
 * node (the single chunk, or the top parent) is compressed with ROOT as well, and its first 32 output
 * bytes are the digest. That tree is the one built level by level, joining neighbours and carrying an
 * odd last node up unchanged, so the parents of every input are also hashed together, a level at a
 * time (a parent is one 64-byte block: its two children, side by side in memory here). The result is checked against the blake3 package on every length from 0 to
 * past B3_BATCH_MAX and on random batches (tests/unit/test_b3batch.py).
 */
#include "_b3batch.h"

#include <stdlib.h>
#include <string.h>

#include "_blake3/blake3_impl.h"

/* One chunk (at most 1024 bytes) compressed block by block: for the one chunk of a small input (the
 * root) and the short last chunk of a longer one. */
static void chunk_cv(const uint8_t *p, size_t len, uint64_t counter, uint8_t root, uint8_t out[32]) {
    uint32_t cv[8];
    memcpy(cv, IV, sizeof cv);
    size_t blocks = len ? (len + BLAKE3_BLOCK_LEN - 1) / BLAKE3_BLOCK_LEN : 1;
    for (size_t b = 0; b < blocks; b++) {
        uint8_t block[BLAKE3_BLOCK_LEN];
        const uint8_t *src = p + b * BLAKE3_BLOCK_LEN;
        size_t block_len = b + 1 < blocks ? BLAKE3_BLOCK_LEN : len - b * BLAKE3_BLOCK_LEN;
        if (block_len < BLAKE3_BLOCK_LEN) {
            memset(block, 0, sizeof block);
            if (block_len) {
                memcpy(block, src, block_len);
            }
            src = block;
        }
        uint8_t flags = (uint8_t)((b == 0 ? CHUNK_START : 0) | (b + 1 == blocks ? CHUNK_END | root : 0));
        blake3_compress_in_place(cv, src, (uint8_t)block_len, counter, flags);
    }
    store_cv_words(out, cv);
}

static size_t n_chunks(size_t len) {
    return len ? (len + BLAKE3_CHUNK_LEN - 1) / BLAKE3_CHUNK_LEN : 1;
}

/* The chunks of an input that are full and not the root: all of a multi-chunk input's but a short
 * last one. */
static size_t full_chunks(size_t len) {
    size_t n = n_chunks(len);
    return n == 1 ? 0 : len / BLAKE3_CHUNK_LEN;
}

int b3_hash_jobs(b3_job *jobs, size_t n) {
    if (n == 0) {
        return 0;
    }
    size_t total = 0, most = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = n_chunks(jobs[i].len);
        total += c;
        size_t f = full_chunks(jobs[i].len);
        if (f > most) {
            most = f;
        }
    }
    size_t lanes = total > n ? total : n; /* the most inputs of one blake3_hash_many call */
    uint8_t(*cvs)[32] = malloc(total * 32);
    size_t *first = malloc(n * sizeof *first); /* index of job i's first chaining value in cvs */
    size_t *count = malloc(n * sizeof *count); /* job i's chaining values at the current level */
    const uint8_t **inputs = malloc(lanes * sizeof *inputs);
    size_t *who = malloc(lanes * sizeof *who);
    uint8_t **dest = malloc(lanes * sizeof *dest);
    uint8_t *outs = malloc(lanes * 32);
    int rc = -1;
    if (cvs == NULL || first == NULL || count == NULL || inputs == NULL || who == NULL || dest == NULL ||
        outs == NULL) {
        goto done;
    }
    for (size_t i = 0, at = 0; i < n; i++) {
        first[i] = at;
        at += n_chunks(jobs[i].len);
    }
    /* chunk k of every input that has a full chunk k, in one call (the lanes are the inputs) */
    for (size_t k = 0; k < most; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (k < full_chunks(jobs[i].len)) {
                inputs[m] = jobs[i].data + k * BLAKE3_CHUNK_LEN;
                who[m++] = i;
            }
        }
        blake3_hash_many(inputs, m, BLAKE3_CHUNK_LEN / BLAKE3_BLOCK_LEN, IV, k, false, 0, CHUNK_START, CHUNK_END,
                         outs);
        for (size_t j = 0; j < m; j++) {
            memcpy(cvs[first[who[j]] + k], outs + 32 * j, 32);
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t c = n_chunks(jobs[i].len), f = full_chunks(jobs[i].len);
        count[i] = c;
        if (c == 1) {
            chunk_cv(jobs[i].data, jobs[i].len, 0, ROOT, jobs[i].out);
            continue;
        }
        if (f < c) { /* the short last chunk */
            chunk_cv(jobs[i].data + f * BLAKE3_CHUNK_LEN, jobs[i].len - f * BLAKE3_CHUNK_LEN, f, 0, cvs[first[i] + f]);
        }
    }
    /* the tree, a level at a time: every input's parents below its root in one call, the roots in another */
    for (;;) {
        size_t m = 0, roots = 0;
        for (size_t i = 0; i < n; i++) {
            if (count[i] > 2) {
                for (size_t j = 0; j < count[i] / 2; j++) {
                    inputs[m] = cvs[first[i] + 2 * j];
                    dest[m++] = cvs[first[i] + j];
                }
            } else if (count[i] == 2) {
                who[roots++] = i;
            }
        }
        if (m == 0 && roots == 0) {
            break;
        }
        blake3_hash_many(inputs, m, 1, IV, 0, false, PARENT, 0, 0, outs);
        for (size_t j = 0; j < m; j++) {
            memcpy(dest[j], outs + 32 * j, 32);
        }
        for (size_t i = 0; i < n; i++) {
            if (count[i] > 2) {
                if (count[i] % 2) { /* the odd last node goes up a level unchanged */
                    memcpy(cvs[first[i] + count[i] / 2], cvs[first[i] + count[i] - 1], 32);
                }
                count[i] = (count[i] + 1) / 2;
            }
        }
        for (size_t j = 0; j < roots; j++) {
            inputs[j] = cvs[first[who[j]]];
        }
        blake3_hash_many(inputs, roots, 1, IV, 0, false, PARENT | ROOT, 0, 0, outs);
        for (size_t j = 0; j < roots; j++) {
            memcpy(jobs[who[j]].out, outs + 32 * j, 32);
            count[who[j]] = 1;
        }
    }
    rc = 0;
done:
    free(cvs);
    free(first);
    free(count);
    free(dest);
    free(inputs);
    free(who);
    free(outs);
    return rc;
}

void b3_hex(const uint8_t digest[32], char out[64]) {
    static const char digits[] = "0123456789abcdef";
    for (int k = 0; k < 32; k++) {
        out[2 * k] = digits[digest[k] >> 4];
        out[2 * k + 1] = digits[digest[k] & 15];
    }
}
