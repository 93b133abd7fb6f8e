/* tamer._crestore: the plain-file part of a restore (and of a verify), in C.
 *
 * Why: a restore of 100,000 small files spent ~45 us of Python per entry (header parsing, TarInfo, the
 * name checks, open/write/fchown/fchmod/utime/close, the digest); `zstd -d | tar -x` spends a few.
 * tamer.volumes.archive.read_archive and restore._Extractor stay the reference: this code only takes
 * members it is certain the Python path would take the same way, and hands everything else back.
 *
 * extract(buf, pos, dirfd, parent, kinds, room, uid, gid, factory) -> (consumed, used, done)
 *   buf: the decompressed tar stream (a bytes-like object); pos: a header boundary in it, where the
 *   Python reader has no pending PAX / GNU long-name state; dirfd: the open folder the Python extractor
 *   verified (its current parent), or -1 to only hash (verify); parent: that folder's path below data/
 *   as bytes (b"" for the root); kinds: the extractor's dict of restored paths; room: bytes of the space
 *   budget left; uid, gid: ours (fchown only when a member's differ); factory: the digest's constructor
 *   (hashlib.sha256, or blake3.blake3 for a test), called on a memoryview of each file's data; or None:
 *   BLAKE3 in C (the vendored implementation the backup tap hashes with, _b3batch.c), without the GIL
 *   while the files are written, the small files side by side in SIMD lanes.
 *   consumed: bytes of buf taken from pos; used: the sum of the sizes taken; done: [(rel, size, hexdigest)].
 *
 * A member is taken only when all of this holds (else the walk stops there, before it, and the Python
 * code reads it, raising whatever error it raises):
 *   a full header with a valid checksum, typeflag '0' or NUL, every numeric field plain octal (spaces,
 *   digits, then only NULs/spaces), no ustar prefix, the name exactly data/<parent>/<base> (data/<base>
 *   for the root) with base not empty, not `.` or `..`; its path not already in kinds; the size within
 *   room; no set-user/group-id bit; the whole data and its padding inside buf.
 * Writing (dirfd >= 0), on a thread of its own while this one hashes the same files (with the GIL): openat(O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600),
 * the data written as restore._FileOut writes it (under 64 KiB: one write; else 64 KiB blocks of zeros
 * become holes, then ftruncate), fchown when the ids differ (EPERM/EACCES ignored, as the Python code
 * does), fchmod, futimens, close. Any failure (the name exists: a duplicate; no space; ...) undoes that
 * member (the file is unlinked when this call created it) and stops before it: the Python path then
 * meets the same condition and raises its own error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef TAMER_NO_BLAKE3 /* the vendored BLAKE3 did not compile here (setup.py): native BLAKE3 off */
#include "_b3none.h"
#else
#include "_b3batch.h"
#include "_blake3/blake3.h"
#define TAMER_NATIVE_BLAKE3 1
#endif

#define BLOCK 512
#define ZERO_BLOCK (64 * 1024)
#define FILE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)

typedef struct {
    const unsigned char *data;
    Py_ssize_t size;
    unsigned int mode;
    unsigned long long uid, gid;
    long long mtime;
    const char *base; /* inside the header's name field */
    size_t baselen;
    Py_ssize_t end; /* offset in buf just after the data and its padding */
    PyObject *rel;
} member;

/* A numeric field in its plain form: spaces, octal digits, then only NULs or spaces. Returns 0 and the
 * value, or -1 for any other form (base-256, empty, stray bytes), which the Python reader judges. */
static int octal(const unsigned char *f, size_t n, unsigned long long *out) {
    size_t i = 0;
    unsigned long long v = 0;
    while (i < n && f[i] == ' ') {
        i++;
    }
    size_t start = i;
    while (i < n && f[i] >= '0' && f[i] <= '7') {
        v = v * 8 + (unsigned long long)(f[i] - '0');
        i++;
    }
    if (i == start) {
        return -1;
    }
    for (; i < n; i++) {
        if (f[i] != 0 && f[i] != ' ') {
            return -1;
        }
    }
    *out = v;
    return 0;
}

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write one member into dirfd as restore._FileOut does. 0 when done; -1 with nothing left behind. */
static int write_member(int dirfd, const member *m, unsigned long long uid, unsigned long long gid) {
    char base[101];
    memcpy(base, m->base, m->baselen);
    base[m->baselen] = '\0';
    int fd = openat(dirfd, base, FILE_FLAGS, 0600);
    if (fd < 0) {
        return -1; /* nothing of ours to undo: an existing name stays as it was */
    }
    int hole = 0;
    size_t size = (size_t)m->size;
    if (size > 0 && size < ZERO_BLOCK) {
        if (write_all(fd, m->data, size) < 0) {
            goto undo;
        }
    } else if (size > 0) {
        for (size_t off = 0; off < size; off += ZERO_BLOCK) {
            size_t len = size - off < ZERO_BLOCK ? size - off : ZERO_BLOCK;
            if (len == ZERO_BLOCK && all_zero(m->data + off, len)) {
                if (lseek(fd, ZERO_BLOCK, SEEK_CUR) < 0) {
                    goto undo;
                }
                hole = 1;
            } else {
                if (write_all(fd, m->data + off, len) < 0) {
                    goto undo;
                }
                hole = 0;
            }
        }
    }
    if (hole && ftruncate(fd, (off_t)size) < 0) {
        goto undo;
    }
    if ((m->uid != uid || m->gid != gid) && fchown(fd, (uid_t)m->uid, (gid_t)m->gid) < 0 && errno != EPERM &&
        errno != EACCES) {
        goto undo;
    }
    if (fchmod(fd, (mode_t)m->mode) < 0) { /* after chown, which clears set-id bits (none here) */
        goto undo;
    }
    struct timespec times[2] = {{(time_t)m->mtime, 0}, {(time_t)m->mtime, 0}};
    if (futimens(fd, times) < 0) {
        goto undo;
    }
    if (close(fd) < 0) {
        fd = -1;
        goto undo;
    }
    return 0;
undo:
    if (fd >= 0) {
        close(fd);
    }
    unlinkat(dirfd, base, 0);
    return -1;
}

/* Parse the member at buf[pos]: 1 when it is one this code takes (m filled, m->rel a new reference), 0 when
 * it is not (the Python path takes it), -1 with a Python error set. */
static int parse(const unsigned char *buf, Py_ssize_t len, Py_ssize_t pos, const char *parent, Py_ssize_t plen,
                 int hash_only, PyObject *kinds, member *m) {
    if (len - pos < BLOCK) {
        return 0;
    }
    const unsigned char *h = buf + pos;
    if (all_zero(h, BLOCK)) {
        return 0;
    }
    unsigned long long chk, mode, uid, gid, size, mtime;
    if (octal(h + 148, 8, &chk) < 0) {
        return 0;
    }
    unsigned long long sum = 256;
    for (int i = 0; i < 148; i++) {
        sum += h[i];
    }
    for (int i = 156; i < BLOCK; i++) {
        sum += h[i];
    }
    if (sum != chk || (h[156] != '0' && h[156] != 0)) {
        return 0;
    }
    if (octal(h + 100, 8, &mode) < 0 || octal(h + 108, 8, &uid) < 0 || octal(h + 116, 8, &gid) < 0 ||
        octal(h + 124, 12, &size) < 0 || octal(h + 136, 12, &mtime) < 0) {
        return 0;
    }
    if (memcmp(h + 257, "ustar", 5) == 0 && h[345] != 0) {
        return 0; /* a ustar prefix: tamer never writes one; the Python reader joins it */
    }
    mode &= 07777;
    if (mode & (S_ISUID | S_ISGID)) {
        return 0; /* counted, warned about or kept by the Python path */
    }
    size_t nlen = strnlen((const char *)h, 100);
    const char *name = (const char *)h;
    if (nlen < 5 || memcmp(name, "data/", 5) != 0) {
        return 0;
    }
    const char *base = name + 5;
    if (!hash_only) {
        if (plen > 0) {
            if (nlen < 5 + (size_t)plen + 1 || memcmp(name + 5, parent, (size_t)plen) != 0 ||
                name[5 + plen] != '/') {
                return 0;
            }
            base = name + 5 + plen + 1;
        }
        size_t blen = nlen - (size_t)(base - name);
        if (blen == 0 || memchr(base, '/', blen) != NULL || (blen == 1 && base[0] == '.') ||
            (blen == 2 && base[0] == '.' && base[1] == '.')) {
            return 0;
        }
    }
    if (size > (unsigned long long)PY_SSIZE_T_MAX / 2) {
        return 0;
    }
    Py_ssize_t data = pos + BLOCK;
    Py_ssize_t end = data + (Py_ssize_t)((size + BLOCK - 1) / BLOCK * BLOCK);
    if (end > len) {
        return 0; /* not all here: the Python reader reads across (or finds it truncated) */
    }
    PyObject *rel = PyUnicode_DecodeFSDefaultAndSize(name + 5, (Py_ssize_t)nlen - 5);
    if (rel == NULL) {
        return -1;
    }
    if (!hash_only) {
        int has = PyDict_Contains(kinds, rel);
        if (has != 0) {
            Py_DECREF(rel);
            return has < 0 ? -1 : 0; /* a duplicate: the Python path refuses it */
        }
    }
    m->data = buf + data;
    m->size = (Py_ssize_t)size;
    m->mode = (unsigned int)mode;
    m->uid = uid;
    m->gid = gid;
    m->mtime = (long long)mtime;
    m->base = base;
    m->baselen = nlen - (size_t)(base - name);
    m->end = end;
    m->rel = rel;
    return 1;
}

/* The writing of one batch, on a thread of its own while the caller hashes the same members (with the GIL):
 * the two overlap, as tar and a checksum would in two processes. */
typedef struct {
    int dirfd;
    const member *ms;
    Py_ssize_t n, taken;
    unsigned long long uid, gid;
} batch;

static void *write_batch(void *arg) {
    batch *b = arg;
    b->taken = b->n;
    for (Py_ssize_t i = 0; i < b->n; i++) {
        if (write_member(b->dirfd, &b->ms[i], b->uid, b->gid) < 0) {
            b->taken = i;
            break;
        }
    }
    return NULL;
}

static PyObject *hexdigest(PyObject *factory, const unsigned char *data, Py_ssize_t size) {
    PyObject *view = PyMemoryView_FromMemory((char *)data, size, PyBUF_READ);
    if (view == NULL) {
        return NULL;
    }
    PyObject *h = PyObject_CallOneArg(factory, view);
    Py_DECREF(view);
    if (h == NULL) {
        return NULL;
    }
    PyObject *hex = PyObject_CallMethod(h, "hexdigest", NULL);
    Py_DECREF(h);
    return hex;
}

static PyObject *hex32(const uint8_t *d) {
    char s[64];
    b3_hex(d, s);
    return PyUnicode_FromStringAndSize(s, 64);
}

/* BLAKE3 of every member into out[i] (32 bytes each); no Python: runs without the GIL. The small ones
 * go through b3_hash_jobs side by side (jobs: room for n), the large ones through a hasher of their own.
 * 0, or -1 when memory ran out. */
static int native_digests(const member *ms, Py_ssize_t n, b3_job *jobs, uint8_t (*out)[32]) {
    size_t small = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((size_t)ms[i].size <= B3_BATCH_MAX) {
            jobs[small].data = ms[i].data;
            jobs[small].len = (size_t)ms[i].size;
            small++;
        }
    }
    if (b3_hash_jobs(jobs, small) < 0) {
        return -1;
    }
    blake3_hasher hasher;
    for (Py_ssize_t i = 0, k = 0; i < n; i++) {
        if ((size_t)ms[i].size <= B3_BATCH_MAX) {
            memcpy(out[i], jobs[k++].out, 32);
        } else {
            blake3_hasher_init(&hasher);
            blake3_hasher_update(&hasher, ms[i].data, (size_t)ms[i].size);
            blake3_hasher_finalize(&hasher, out[i], 32);
        }
    }
    return 0;
}

static PyObject *extract(PyObject *self, PyObject *args) {
    Py_buffer buf, parent;
    Py_ssize_t pos, room;
    int dirfd;
    unsigned long long uid, gid;
    PyObject *kinds, *factory;
    if (!PyArg_ParseTuple(args, "y*niy*O!nKKO", &buf, &pos, &dirfd, &parent, &PyDict_Type, &kinds, &room, &uid,
                          &gid, &factory)) {
        return NULL;
    }
    PyObject *own_factory = NULL; /* the blake3 package's, where this build has no BLAKE3 of its own */
#if !TAMER_NATIVE_BLAKE3
    if (factory == Py_None) {
        PyObject *package = PyImport_ImportModule("blake3");
        own_factory = package == NULL ? NULL : PyObject_GetAttrString(package, "blake3");
        Py_XDECREF(package);
        if (own_factory == NULL) {
            PyBuffer_Release(&buf);
            PyBuffer_Release(&parent);
            return NULL;
        }
        factory = own_factory;
    }
#endif
    PyObject *result = NULL, *done = NULL, **hexes = NULL;
    member *ms = NULL;
    Py_ssize_t n = 0, cap = 0, taken = 0, used = 0;
    const unsigned char *b = buf.buf;
    Py_ssize_t at = pos;
    int hash_only = dirfd < 0;
    if (pos < 0 || pos > buf.len) {
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        goto out;
    }
    for (;;) {
        member m;
        int r = parse(b, buf.len, at, parent.buf, parent.len, hash_only, kinds, &m);
        if (r < 0) {
            goto out;
        }
        if (r == 0) {
            break;
        }
        if (!hash_only && m.size > room - used) {
            Py_DECREF(m.rel);
            break; /* past the budget: the Python path says NotEnoughSpace */
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            member *grown = PyMem_Realloc(ms, (size_t)cap * sizeof(member));
            if (grown == NULL) {
                Py_DECREF(m.rel);
                PyErr_NoMemory();
                goto out;
            }
            ms = grown;
        }
        ms[n++] = m;
        used += m.size;
        at = m.end;
    }
    /* write (a thread of its own, no GIL needed) while hashing here; a batch of one is written inline */
    batch job = {dirfd, ms, n, n, uid, gid};
    pthread_t thread;
    int threaded = 0;
    if (!hash_only && n > 1) {
        threaded = pthread_create(&thread, NULL, write_batch, &job) == 0;
    }
    if (!hash_only && !threaded && n > 0) {
        Py_BEGIN_ALLOW_THREADS
        write_batch(&job);
        Py_END_ALLOW_THREADS
    }
    hexes = n > 0 ? PyMem_Calloc((size_t)n, sizeof(PyObject *)) : NULL;
    int failed = n > 0 && hexes == NULL;
    if (factory == Py_None && !failed && n > 0) {
        /* BLAKE3 in C, beside the writing thread, the GIL free for the decompressing one */
        b3_job *jobs = PyMem_RawMalloc((size_t)n * sizeof(b3_job));
        uint8_t(*digests)[32] = PyMem_RawMalloc((size_t)n * 32);
        int rc = -1;
        if (jobs != NULL && digests != NULL) {
            Py_BEGIN_ALLOW_THREADS
            rc = native_digests(ms, n, jobs, digests);
            Py_END_ALLOW_THREADS
        }
        for (Py_ssize_t i = 0; i < n && rc == 0 && !failed; i++) {
            hexes[i] = hex32(digests[i]);
            failed = hexes[i] == NULL;
        }
        failed = failed || rc != 0;
        PyMem_RawFree(jobs);
        PyMem_RawFree(digests);
    } else {
        for (Py_ssize_t i = 0; i < n && !failed; i++) {
            hexes[i] = hexdigest(factory, ms[i].data, ms[i].size);
            failed = hexes[i] == NULL;
        }
    }
    if (threaded) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(thread, NULL);
        Py_END_ALLOW_THREADS
    }
    if (failed) { /* an error from the digest or no memory: the restore stops with it, staging removed */
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto out;
    }
    taken = hash_only ? n : job.taken;
    done = PyList_New(taken);
    if (done == NULL) {
        goto out;
    }
    Py_ssize_t consumed = 0, size_sum = 0;
    for (Py_ssize_t i = 0; i < taken; i++) {
        PyObject *item = Py_BuildValue("(OnO)", ms[i].rel, ms[i].size, hexes[i]);
        if (item == NULL) {
            goto out;
        }
        PyList_SET_ITEM(done, i, item);
        consumed = ms[i].end - pos;
        size_sum += ms[i].size;
    }
    result = Py_BuildValue("(nnO)", consumed, size_sum, done);
out:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(ms[i].rel);
        if (hexes != NULL) {
            Py_XDECREF(hexes[i]);
        }
    }
    PyMem_Free(hexes);
    PyMem_Free(ms);
    Py_XDECREF(done);
    Py_XDECREF(own_factory);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&parent);
    return result;
}

static PyMethodDef methods[] = {
    {"extract", extract, METH_VARARGS,
     "extract(buf, pos, dirfd, parent, kinds, room, uid, gid, factory) -> (consumed, used, done): see the source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tamer._crestore", "The plain-file part of tamer's restore and verify, in C.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__crestore(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "native_blake3", TAMER_NATIVE_BLAKE3) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
