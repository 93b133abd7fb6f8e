/* tamer._ctap: the backup's tar tap (tamer.volumes.archive_tar._TarTap) in C.
 *
 * Why: while GNU tar writes the backup stream, the tap parses every header and hashes every file
 * for the manifest. In Python that cost about 13 us per entry on a thread that competes with tar
 * and zstd for two cores; here the per-entry work is a few C branches and three calls into the
 * digest object. _TarTap stays the reference (TAMER_PURE_TAP=1 selects it) and a test requires
 * byte-identical manifests from both on hostile trees.
 *
 * Tap(stats, files, xattrs, new_digest, pax_records, pax_xattrs, num, data_prefix, native_blake3=False)
 *   stats: an object with int attributes files, entries, bytes and a list attribute warnings,
 *   brought up to date at the end of every feed(); files: dict rel -> [size, hexdigest];
 *   xattrs: dict rel -> {name: base64}; new_digest: a callable returning a hash object (update,
 *   hexdigest); pax_records(bytes) -> dict[str, str], pax_xattrs(dict) -> dict and num(bytes) -> int:
 *   the Python parsers, used for PAX payloads and for any number field that is not plain octal,
 *   so that rare forms are read exactly as the reference reads them; data_prefix: bytes
 *   (b"data") removed from the front of every name; native_blake3: hash files with BLAKE3 here (the
 *   vendored C BLAKE3, _b3batch.c) instead of new_digest's objects: the files that lie whole in a fed
 *   chunk, up to B3_BATCH_MAX, are hashed side by side at the end of the feed without the GIL (one
 *   file at a time left most SIMD lanes idle: 1.04 s against 0.41 s of tap CPU on 100,000 10 KiB
 *   files), the others stream through a blake3_hasher; their records reach `files` in stream order
 *   before feed() returns, also when it fails midway.
 * feed(chunk): any bytes-like object; the chunk is never changed or kept.
 * ended: whether tar's end-of-archive block has been seen (later input is ignored).
 *
 * The state machine is _TarTap's: header, ext (a PAX "x"/"g" or GNU "L"/"K" payload), data, skip
 * (the padding after a file, or the body of an entry that is not hashed).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#ifdef TAMER_NO_BLAKE3 /* the vendored BLAKE3 did not compile here (setup.py): native BLAKE3 off */
#include "_b3none.h"
#else
#include "_b3batch.h"
#include "_blake3/blake3.h"
#define TAMER_NATIVE_BLAKE3 1
#endif

#define BLOCK 512

enum { M_HEADER, M_EXT, M_DATA, M_SKIP };

/* A file whose record is not in `files` yet (native BLAKE3: digests come after the feed's batch). */
typedef struct {
    PyObject *rel;
    unsigned long long size;
    Py_ssize_t job;  /* its b3_job, or -1: streamed, the digest already in out */
    uint8_t out[32];
} Pending;

typedef struct {
    PyObject_HEAD
    PyObject *stats, *files, *xattrs, *new_digest, *pax_records, *pax_xattrs, *num, *prefix;
    PyObject *pax;  /* dict: the records that apply to the next entry */
    PyObject *sha;  /* the current file's hash object */
    PyObject *rel;  /* the current file's name in the manifest */
    int mode;
    int ended;
    char ext_type;
    Py_ssize_t need;                 /* bytes wanted in header and ext mode */
    unsigned long long left, pad;    /* data/skip bytes still to come; padding after the file */
    unsigned long long size;         /* the current file's size */
    unsigned long long ext_size;
    char *acc;                       /* a header or ext payload split across chunks */
    Py_ssize_t acc_len, acc_cap;
    long long n_files, n_entries;    /* not yet added to stats */
    PyObject *n_bytes;               /* int, not yet added to stats.bytes (sizes past 2**63 stay exact) */
    unsigned long long bytes_small;  /* the same, while it fits */
    unsigned long long since_yield;  /* bytes hashed since the GIL was last offered to other threads */
    /* native BLAKE3 (the digest "blake3" hashed here, not by a Python object): the files that lie whole
     * in the chunk being fed and are small are hashed together at the end of the feed (_b3batch.c);
     * others stream through `hasher`. Their records go into `files` in stream order, after the batch. */
    int native;
    int busy;                        /* a feed is running (the GIL may be released inside it) */
    blake3_hasher *hasher;
    Pending *pend;
    Py_ssize_t n_pend, pend_cap;
    b3_job *jobs;
    Py_ssize_t n_jobs, jobs_cap;
} Tap;

static PyObject *s_update, *s_hexdigest, *s_path, *s_size, *s_rstrip, *s_removeprefix, *s_slash,
    *s_files, *s_entries, *s_bytes, *s_warnings, *s_release;

static int Tap_traverse(Tap *self, visitproc visit, void *arg) {
    Py_VISIT(self->stats);
    Py_VISIT(self->files);
    Py_VISIT(self->xattrs);
    Py_VISIT(self->new_digest);
    Py_VISIT(self->pax_records);
    Py_VISIT(self->pax_xattrs);
    Py_VISIT(self->num);
    Py_VISIT(self->prefix);
    Py_VISIT(self->pax);
    Py_VISIT(self->sha);
    Py_VISIT(self->rel);
    Py_VISIT(self->n_bytes);
    return 0;
}

static int Tap_clear(Tap *self) {
    Py_CLEAR(self->stats);
    Py_CLEAR(self->files);
    Py_CLEAR(self->xattrs);
    Py_CLEAR(self->new_digest);
    Py_CLEAR(self->pax_records);
    Py_CLEAR(self->pax_xattrs);
    Py_CLEAR(self->num);
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->pax);
    Py_CLEAR(self->sha);
    Py_CLEAR(self->rel);
    Py_CLEAR(self->n_bytes);
    return 0;
}

static void drop_pending(Tap *self) {
    for (Py_ssize_t k = 0; k < self->n_pend; k++) {
        Py_CLEAR(self->pend[k].rel);
    }
    self->n_pend = 0;
    self->n_jobs = 0;
}

static void Tap_dealloc(Tap *self) {
    PyObject_GC_UnTrack(self);
    drop_pending(self);
    Tap_clear(self);
    PyMem_Free(self->acc);
    PyMem_Free(self->pend);
    PyMem_Free(self->jobs);
    PyMem_Free(self->hasher);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Tap_init(Tap *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"stats", "files", "xattrs", "new_digest", "pax_records", "pax_xattrs", "num",
                             "data_prefix", "native_blake3", NULL};
    PyObject *stats, *files, *xattrs, *new_digest, *pax_records, *pax_xattrs, *num, *prefix;
    int native = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!OOOOS|p", kwlist, &stats, &PyDict_Type, &files,
                                     &PyDict_Type, &xattrs, &new_digest, &pax_records, &pax_xattrs, &num,
                                     &prefix, &native)) {
        return -1;
    }
#if !TAMER_NATIVE_BLAKE3
    native = 0; /* no BLAKE3 of its own in this build: new_digest's objects hash every file */
#endif
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Tap.__init__ while a feed is running");
        return -1;
    }
    drop_pending(self);
    if (native && self->hasher == NULL) {
        self->hasher = PyMem_Malloc(sizeof *self->hasher);
        if (self->hasher == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->native = native;
    Tap_clear(self);
    self->stats = Py_NewRef(stats);
    self->files = Py_NewRef(files);
    self->xattrs = Py_NewRef(xattrs);
    self->new_digest = Py_NewRef(new_digest);
    self->pax_records = Py_NewRef(pax_records);
    self->pax_xattrs = Py_NewRef(pax_xattrs);
    self->num = Py_NewRef(num);
    self->prefix = Py_NewRef(prefix);
    self->pax = PyDict_New();
    self->n_bytes = PyLong_FromLong(0);
    if (self->pax == NULL || self->n_bytes == NULL) {
        return -1;
    }
    self->mode = M_HEADER;
    self->need = BLOCK;
    self->ended = 0;
    self->acc_len = 0;
    self->left = self->pad = self->size = self->ext_size = 0;
    self->n_files = self->n_entries = 0;
    self->bytes_small = 0;
    self->since_yield = 0;
    return 0;
}

/* A size or number as an unsigned 64-bit value; ValueError for a negative one or one past 2**64. */
static int size_from_object(PyObject *v, unsigned long long *out) {
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "a tar number must be an int, got %R", v);
        return -1;
    }
    unsigned long long r = PyLong_AsUnsignedLongLong(v);
    if (r == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "a tar size or number out of range: %R", v);
        return -1;
    }
    *out = r;
    return 0;
}

/* A tar number field: plain octal (spaces around, a NUL or space after) here, anything else
 * (base-256, NUL padding, empty) by the Python reader. -1 with an exception set on failure. */
static int read_num(Tap *self, const char *field, Py_ssize_t len, unsigned long long *out) {
    char last = field[len - 1];
    if (last == '\0' || last == ' ') {
        Py_ssize_t i = 0, end = len - 1;
        while (i < end && field[i] == ' ') {
            i++;
        }
        while (end > i && field[end - 1] == ' ') {
            end--;
        }
        if (i < end) {
            unsigned long long v = 0;
            Py_ssize_t j = i;
            for (; j < end; j++) {
                char c = field[j];
                if (c < '0' || c > '7' || v > (~0ULL >> 3)) {
                    break;
                }
                v = (v << 3) | (unsigned long long)(c - '0');
            }
            if (j == end) {
                *out = v;
                return 0;
            }
        }
    }
    PyObject *raw = PyBytes_FromStringAndSize(field, len);
    if (raw == NULL) {
        return -1;
    }
    PyObject *v = PyObject_CallOneArg(self->num, raw);
    Py_DECREF(raw);
    if (v == NULL) {
        return -1;
    }
    int rc = size_from_object(v, out);
    Py_DECREF(v);
    return rc;
}

/* Room for `cap` bytes, grown as payload arrives (never the size a header claims, all at once). */
static int acc_reserve(Tap *self, Py_ssize_t cap) {
    if (cap <= self->acc_cap) {
        return 0;
    }
    if (cap < 2 * self->acc_cap) {
        cap = 2 * self->acc_cap;
    }
    char *p = PyMem_Realloc(self->acc, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->acc = p;
    self->acc_cap = cap;
    return 0;
}

/* files[rel] = [size, hex] */
static int put_record(Tap *self, PyObject *rel, unsigned long long size_value, PyObject *hex) {
    PyObject *size = PyLong_FromUnsignedLongLong(size_value);
    if (size == NULL) {
        Py_DECREF(hex);
        return -1;
    }
    PyObject *rec = PyList_New(2);
    if (rec == NULL) {
        Py_DECREF(hex);
        Py_DECREF(size);
        return -1;
    }
    PyList_SET_ITEM(rec, 0, size);
    PyList_SET_ITEM(rec, 1, hex);
    int rc = PyDict_SetItem(self->files, rel, rec);
    Py_DECREF(rec);
    return rc;
}

static PyObject *hex32(const uint8_t *d) {
    char s[64];
    b3_hex(d, s);
    return PyUnicode_FromStringAndSize(s, 64);
}

/* Native BLAKE3: the current file's record waits for the end of the feed; job -1 when `out` holds its
 * digest already (streamed), else its data (all of it, in the chunk being fed) joins the batch. */
static int add_pending(Tap *self, const char *data, Py_ssize_t job_len, int streamed) {
    if (self->n_pend == self->pend_cap) {
        Py_ssize_t cap = self->pend_cap ? 2 * self->pend_cap : 256;
        Pending *p = PyMem_Realloc(self->pend, (size_t)cap * sizeof *p);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pend = p;
        self->pend_cap = cap;
    }
    Pending *e = &self->pend[self->n_pend];
    if (streamed) {
        e->job = -1;
        blake3_hasher_finalize(self->hasher, e->out, 32);
    } else {
        if (self->n_jobs == self->jobs_cap) {
            Py_ssize_t cap = self->jobs_cap ? 2 * self->jobs_cap : 256;
            b3_job *j = PyMem_Realloc(self->jobs, (size_t)cap * sizeof *j);
            if (j == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->jobs = j;
            self->jobs_cap = cap;
        }
        self->jobs[self->n_jobs].data = (const uint8_t *)data;
        self->jobs[self->n_jobs].len = (size_t)job_len;
        e->job = self->n_jobs++;
    }
    e->rel = Py_NewRef(self->rel);
    e->size = self->size;
    self->n_pend++;
    return 0;
}

/* Hashes the batch (without the GIL) and puts every waiting record into `files`, in stream order. Runs
 * at the end of every feed, while the chunk the jobs point into is still held. */
static int flush_pending(Tap *self) {
    if (self->n_jobs) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = b3_hash_jobs(self->jobs, (size_t)self->n_jobs);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            drop_pending(self);
            PyErr_NoMemory();
            return -1;
        }
    }
    int rc = 0;
    for (Py_ssize_t k = 0; k < self->n_pend && rc == 0; k++) {
        Pending *e = &self->pend[k];
        PyObject *hex = hex32(e->job < 0 ? e->out : self->jobs[e->job].out);
        rc = hex == NULL ? -1 : put_record(self, e->rel, e->size, hex);
    }
    drop_pending(self);
    return rc;
}

/* The bookkeeping after a file's last byte, whichever way it was hashed. */
static int file_counted(Tap *self) {
    self->n_files++;
    if (self->bytes_small + self->size < self->bytes_small) { /* past 2**64: carry into the int */
        PyObject *a = PyLong_FromUnsignedLongLong(self->bytes_small);
        PyObject *sum = a ? PyNumber_Add(self->n_bytes, a) : NULL;
        Py_XDECREF(a);
        if (sum == NULL) {
            return -1;
        }
        Py_SETREF(self->n_bytes, sum);
        self->bytes_small = 0;
    }
    self->bytes_small += self->size;
    if (self->pad) {
        self->mode = M_SKIP;
        self->left = self->pad;
    } else {
        self->mode = M_HEADER;
        self->need = BLOCK;
    }
    return 0;
}

static int file_done(Tap *self) {
    PyObject *hex = PyObject_CallMethodNoArgs(self->sha, s_hexdigest);
    if (hex == NULL || put_record(self, self->rel, self->size, hex) < 0) {
        return -1;
    }
    return file_counted(self);
}

/* Hashing small files runs in the digest's code with the GIL held (blake3 and hashlib release it
 * only for large inputs), and nothing in a feed() lets another thread in the way the interpreter's
 * switch interval would. The compressing thread needs the GIL briefly between its chunks; so it
 * gets a chance at least every YIELD_EVERY bytes hashed (an uncontended release costs nanoseconds). */
#define YIELD_EVERY (256 << 10)

static int hash(Tap *self, const char *p, Py_ssize_t n) {
    self->since_yield += (unsigned long long)n;
    if (self->since_yield >= YIELD_EVERY) {
        self->since_yield = 0;
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
    }
    PyObject *mv = PyMemoryView_FromMemory((char *)p, n, PyBUF_READ);
    if (mv == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(self->sha, s_update, mv);
    if (Py_REFCNT(mv) > 1) {
        /* a digest that kept the view must not read the chunk after it is gone */
        PyObject *x = PyObject_CallMethodNoArgs(mv, s_release);
        if (x == NULL) {
            Py_XDECREF(r);
            Py_DECREF(mv);
            return -1;
        }
        Py_DECREF(x);
    }
    Py_DECREF(mv);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int do_ext(Tap *self, const char *payload) {
    Py_ssize_t n = (Py_ssize_t)self->ext_size;
    if (self->ext_type == 'x') {
        PyObject *body = PyBytes_FromStringAndSize(payload, n);
        if (body == NULL) {
            return -1;
        }
        PyObject *d = PyObject_CallOneArg(self->pax_records, body);
        Py_DECREF(body);
        if (d == NULL) {
            return -1;
        }
        if (!PyDict_Check(d)) {
            Py_DECREF(d);
            PyErr_SetString(PyExc_TypeError, "pax_records must return a dict");
            return -1;
        }
        Py_SETREF(self->pax, d);
    } else if (self->ext_type == 'L') {
        const char *nul = memchr(payload, '\0', (size_t)n);
        PyObject *name = PyUnicode_DecodeFSDefaultAndSize(payload, nul ? nul - payload : n);
        if (name == NULL) {
            return -1;
        }
        int rc = PyDict_SetItem(self->pax, s_path, name);
        Py_DECREF(name);
        if (rc < 0) {
            return -1;
        }
    }
    self->mode = M_HEADER;
    self->need = BLOCK;
    return 0;
}

static Py_ssize_t cstrlen(const char *p, Py_ssize_t max) {
    const char *nul = memchr(p, '\0', (size_t)max);
    return nul ? nul - p : max;
}

/* The manifest name of a header's own name: rstrip("/"), removeprefix(data_prefix),
 * removeprefix("/"), then os.fsdecode, done on the bytes (the same, since '/' and the prefix are
 * ASCII and the file system encoding maps ASCII bytes to themselves and no other byte to them). */
static PyObject *rel_from_header(Tap *self, const char *h) {
    char buf[BLOCK];
    Py_ssize_t len = 0;
    Py_ssize_t name_len = cstrlen(h, 100);
    if (memcmp(h + 257, "ustar", 5) == 0) {
        Py_ssize_t prefix_len = cstrlen(h + 345, 155);
        if (prefix_len) {
            memcpy(buf, h + 345, (size_t)prefix_len);
            buf[prefix_len] = '/';
            len = prefix_len + 1;
        }
    }
    memcpy(buf + len, h, (size_t)name_len);
    len += name_len;
    while (len && buf[len - 1] == '/') {
        len--;
    }
    const char *p = buf;
    Py_ssize_t plen = PyBytes_GET_SIZE(self->prefix);
    if (len >= plen && memcmp(p, PyBytes_AS_STRING(self->prefix), (size_t)plen) == 0) {
        p += plen;
        len -= plen;
    }
    if (len && p[0] == '/') {
        p++;
        len--;
    }
    return PyUnicode_DecodeFSDefaultAndSize(p, len);
}

/* The same for a name that came as a str (a PAX path or a GNU long name). */
static PyObject *rel_from_str(Tap *self, PyObject *name) {
    PyObject *prefix = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(self->prefix),
                                                        PyBytes_GET_SIZE(self->prefix));
    if (prefix == NULL) {
        return NULL;
    }
    PyObject *a = PyObject_CallMethodOneArg(name, s_rstrip, s_slash);
    PyObject *b = a ? PyObject_CallMethodOneArg(a, s_removeprefix, prefix) : NULL;
    PyObject *c = b ? PyObject_CallMethodOneArg(b, s_removeprefix, s_slash) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_DECREF(prefix);
    return c;
}

static int is_zero(const char *p) {
    for (int i = 0; i < BLOCK; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

static int do_header(Tap *self, const char *h) {
    char typeflag = h[156];
    unsigned long long size;
    if (read_num(self, h + 124, 12, &size) < 0) {
        return -1;
    }
    int is_ext = typeflag == 'x' || typeflag == 'g' || typeflag == 'L' || typeflag == 'K';
    int has_pax = PyDict_GET_SIZE(self->pax) > 0;
    if (has_pax && !is_ext) {
        PyObject *v = PyDict_GetItemWithError(self->pax, s_size);
        if (v == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (v != NULL) { /* 8 GiB and more: the ustar field cannot hold it */
            PyObject *n = PyNumber_Long(v);
            if (n == NULL) {
                return -1;
            }
            int rc = size_from_object(n, &size);
            Py_DECREF(n);
            if (rc < 0) {
                return -1;
            }
        }
    }
    if (is_ext) {
        self->ext_type = typeflag;
        self->ext_size = size;
        unsigned long long need = size + ((BLOCK - size % BLOCK) % BLOCK);
        if (need < size || need > (unsigned long long)(PY_SSIZE_T_MAX / 2)) {
            PyErr_Format(PyExc_ValueError, "an extended header of %llu bytes", size);
            return -1;
        }
        self->mode = M_EXT;
        self->need = (Py_ssize_t)need;
        if (!need) {
            return do_ext(self, "");
        }
        return 0;
    }
    PyObject *rel;
    PyObject *name = NULL;
    if (has_pax) {
        name = PyDict_GetItemWithError(self->pax, s_path);
        if (name == NULL && PyErr_Occurred()) {
            return -1;
        }
    }
    rel = name != NULL ? rel_from_str(self, name) : rel_from_header(self, h);
    if (rel == NULL) {
        return -1;
    }
    if (has_pax) {
        PyObject *x = PyObject_CallOneArg(self->pax_xattrs, self->pax);
        if (x == NULL) {
            Py_DECREF(rel);
            return -1;
        }
        int truth = PyObject_IsTrue(x);
        int rc = truth > 0 ? PyDict_SetItem(self->xattrs, rel, x) : truth;
        Py_DECREF(x);
        PyObject *fresh = rc < 0 ? NULL : PyDict_New();
        if (fresh == NULL) {
            Py_DECREF(rel);
            return -1;
        }
        Py_SETREF(self->pax, fresh);
    }
    if (PyUnicode_GET_LENGTH(rel)) {
        self->n_entries++;
    }
    if (typeflag == '3' || typeflag == '4') {
        PyObject *w = PyObject_GetAttr(self->stats, s_warnings);
        PyObject *msg = w ? PyUnicode_FromFormat("%U: a device node; stored, but a restore skips it", rel) : NULL;
        int rc = msg ? PyList_Append(w, msg) : -1;
        Py_XDECREF(w);
        Py_XDECREF(msg);
        if (rc < 0) {
            Py_DECREF(rel);
            return -1;
        }
    }
    if (typeflag == '0' || typeflag == '\0' || typeflag == '7') {
        if (!self->native) {
            PyObject *sha = PyObject_CallNoArgs(self->new_digest);
            if (sha == NULL) {
                Py_DECREF(rel);
                return -1;
            }
            Py_XSETREF(self->sha, sha);
        }
        Py_XSETREF(self->rel, rel);
        self->size = size;
        self->pad = (BLOCK - size % BLOCK) % BLOCK;
        if (size) {
            self->mode = M_DATA;
            self->left = size;
            return 0;
        }
        if (self->native) {
            return add_pending(self, "", 0, 0) < 0 ? -1 : file_counted(self);
        }
        return file_done(self);
    }
    Py_DECREF(rel);
    if (size && typeflag != '1' && typeflag != '2' && typeflag != '5') {
        unsigned long long total = size + (BLOCK - size % BLOCK) % BLOCK;
        if (total < size) {
            PyErr_Format(PyExc_ValueError, "an entry of %llu bytes", size);
            return -1;
        }
        self->mode = M_SKIP;
        self->left = total;
    }
    return 0;
}

static int add_attr(PyObject *obj, PyObject *name, PyObject *delta) {
    PyObject *old = PyObject_GetAttr(obj, name);
    if (old == NULL) {
        return -1;
    }
    PyObject *sum = PyNumber_Add(old, delta);
    Py_DECREF(old);
    if (sum == NULL) {
        return -1;
    }
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

/* Adds what was counted since the last time to stats (once per feed, not per entry). */
static int sync_stats(Tap *self) {
    if (self->n_files) {
        PyObject *d = PyLong_FromLongLong(self->n_files);
        int rc = d ? add_attr(self->stats, s_files, d) : -1;
        Py_XDECREF(d);
        if (rc < 0) {
            return -1;
        }
        self->n_files = 0;
    }
    if (self->n_entries) {
        PyObject *d = PyLong_FromLongLong(self->n_entries);
        int rc = d ? add_attr(self->stats, s_entries, d) : -1;
        Py_XDECREF(d);
        if (rc < 0) {
            return -1;
        }
        self->n_entries = 0;
    }
    if (self->bytes_small || PyObject_IsTrue(self->n_bytes)) {
        PyObject *a = PyLong_FromUnsignedLongLong(self->bytes_small);
        PyObject *d = a ? PyNumber_Add(self->n_bytes, a) : NULL;
        Py_XDECREF(a);
        int rc = d ? add_attr(self->stats, s_bytes, d) : -1;
        Py_XDECREF(d);
        if (rc < 0) {
            return -1;
        }
        self->bytes_small = 0;
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return -1;
        }
        Py_SETREF(self->n_bytes, zero);
    }
    return 0;
}

static int feed_bytes(Tap *self, const char *buf, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n && !self->ended) {
        Py_ssize_t avail = n - i;
        if (self->mode == M_DATA || self->mode == M_SKIP) {
            Py_ssize_t take = (unsigned long long)avail < self->left ? avail : (Py_ssize_t)self->left;
            int whole = 0; /* native: the file lies whole in this chunk and joins the batch */
            if (self->mode == M_DATA && self->native) {
                int first = self->left == self->size;
                whole = first && (unsigned long long)take == self->left && self->size <= B3_BATCH_MAX;
                if (!whole) {
                    if (first) {
                        blake3_hasher_init(self->hasher);
                    }
                    if (take >= (Py_ssize_t)B3_BATCH_MAX) {
                        Py_BEGIN_ALLOW_THREADS
                        blake3_hasher_update(self->hasher, buf + i, (size_t)take);
                        Py_END_ALLOW_THREADS
                    } else {
                        blake3_hasher_update(self->hasher, buf + i, (size_t)take);
                    }
                }
            } else if (self->mode == M_DATA) {
                if (hash(self, buf + i, take) < 0) {
                    return -1;
                }
            }
            i += take;
            self->left -= (unsigned long long)take;
            if (!self->left) {
                if (self->mode == M_DATA && self->native) {
                    if (add_pending(self, buf + i - take, take, !whole) < 0 || file_counted(self) < 0) {
                        return -1;
                    }
                } else if (self->mode == M_DATA) {
                    if (file_done(self) < 0) {
                        return -1;
                    }
                } else {
                    self->mode = M_HEADER;
                    self->need = BLOCK;
                }
            }
            continue;
        }
        const char *block;
        if (!self->acc_len && avail >= self->need) {
            block = buf + i;
            i += self->need;
        } else {
            Py_ssize_t take = self->need - self->acc_len;
            if (take > avail) {
                take = avail;
            }
            if (acc_reserve(self, self->acc_len + take) < 0) {
                return -1;
            }
            memcpy(self->acc + self->acc_len, buf + i, (size_t)take);
            self->acc_len += take;
            i += take;
            if (self->acc_len < self->need) {
                continue;
            }
            block = self->acc;
            self->acc_len = 0; /* the payload is read before anything is appended again */
        }
        int rc;
        if (self->mode == M_EXT) {
            rc = do_ext(self, block);
        } else if (is_zero(block)) {
            self->ended = 1;
            rc = 0;
        } else {
            rc = do_header(self, block);
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *Tap_feed(Tap *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (self->busy) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "Tap.feed while another feed of the same tap is running");
        return NULL;
    }
    self->busy = 1;
    int rc = feed_bytes(self, (const char *)view.buf, view.len);
    /* the records of the files done in this chunk, before the chunk is let go; and on a failure
     * midway too, so that `files` holds what the reference's would */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    int flushed = flush_pending(self);
    if (et != NULL) {
        if (flushed < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(et, ev, tb);
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    /* stats follow the stream even when it fails midway, as the reference's do */
    if (sync_stats(self) < 0 || rc < 0 || flushed < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *ctap_readinto_full(PyObject *module, PyObject *args) {
    int fd;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "iw*:readinto_full", &fd, &view)) {
        return NULL;
    }
    char *buf = (char *)view.buf;
    Py_ssize_t n = view.len, got = 0;
    while (got < n) {
        ssize_t r;
        Py_BEGIN_ALLOW_THREADS
        r = read(fd, buf + got, (size_t)(n - got));
        Py_END_ALLOW_THREADS
        if (r < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    PyBuffer_Release(&view);
                    return NULL;
                }
                continue;
            }
            PyBuffer_Release(&view);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (r == 0) {
            break;
        }
        got += r;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(got);
}

static PyMethodDef Tap_methods[] = {
    {"feed", (PyCFunction)Tap_feed, METH_O, "feed(chunk): parse and hash the next piece of the stream."},
    {NULL, NULL, 0, NULL},
};

static PyObject *Tap_get_ended(Tap *self, void *closure) {
    return PyBool_FromLong(self->ended);
}

static PyGetSetDef Tap_getset[] = {
    {"ended", (getter)Tap_get_ended, NULL, "whether tar's end-of-archive block was seen", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tamer._ctap.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The backup's tar tap in C (see tamer.volumes.archive_tar._TarTap, the reference).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tap_init,
    .tp_dealloc = (destructor)Tap_dealloc,
    .tp_traverse = (traverseproc)Tap_traverse,
    .tp_clear = (inquiry)Tap_clear,
    .tp_methods = Tap_methods,
    .tp_getset = Tap_getset,
};

#if TAMER_NATIVE_BLAKE3
/* blake3_hexdigests(inputs): the tap's own BLAKE3 (batched up to B3_BATCH_MAX, streamed above), for tests */
static PyObject *ctap_blake3_hexdigests(PyObject *module, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "blake3_hexdigests takes a sequence of bytes-like objects");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *views = PyMem_Calloc((size_t)n + 1, sizeof *views);
    b3_job *jobs = PyMem_Calloc((size_t)n + 1, sizeof *jobs);
    PyObject *out = NULL;
    Py_ssize_t got = 0;
    if (views == NULL || jobs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) < 0) {
            goto done;
        }
        jobs[got].data = views[got].buf;
        jobs[got].len = (size_t)views[got].len;
    }
    Py_ssize_t m = 0; /* the small ones, in order, at the front */
    for (Py_ssize_t k = 0; k < n; k++) {
        if (jobs[k].len <= B3_BATCH_MAX) {
            jobs[m++] = jobs[k];
        }
    }
    if (b3_hash_jobs(jobs, (size_t)m) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyList_New(n);
    blake3_hasher hasher;
    for (Py_ssize_t k = 0, small = 0; out != NULL && k < n; k++) {
        uint8_t digest[32];
        const uint8_t *d;
        if ((size_t)views[k].len <= B3_BATCH_MAX) {
            d = jobs[small++].out;
        } else {
            blake3_hasher_init(&hasher);
            blake3_hasher_update(&hasher, views[k].buf, (size_t)views[k].len);
            blake3_hasher_finalize(&hasher, digest, 32);
            d = digest;
        }
        PyObject *hex = hex32(d);
        if (hex == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, hex);
    }
done:
    for (Py_ssize_t k = 0; k < got; k++) {
        PyBuffer_Release(&views[k]);
    }
    PyMem_Free(views);
    PyMem_Free(jobs);
    Py_DECREF(seq);
    return out;
}

#endif

static PyMethodDef ctap_functions[] = {
#if TAMER_NATIVE_BLAKE3
    {"blake3_hexdigests", ctap_blake3_hexdigests, METH_O,
     "blake3_hexdigests(inputs) -> list[str]: the BLAKE3 hex digest of each input, computed as the tap computes "
     "a file's (small inputs side by side in SIMD lanes); for tests against the blake3 package."},
#endif
    {"readinto_full", ctap_readinto_full, METH_VARARGS,
     "readinto_full(fd, buffer) -> int: fill the writable buffer from fd, less only at the end of the input "
     "(0 there); the GIL is released while waiting. One buffer for every chunk: a fresh megabyte per chunk "
     "cost a page fault per 4 KiB."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ctap_module = {
    PyModuleDef_HEAD_INIT, "tamer._ctap", "The backup's tar tap in C.", -1, ctap_functions, NULL, NULL, NULL, NULL,
};

#define INTERN(var, text)                                   \
    do {                                                    \
        if ((var = PyUnicode_InternFromString(text)) == NULL) \
            return NULL;                                    \
    } while (0)

PyMODINIT_FUNC PyInit__ctap(void) {
    INTERN(s_update, "update");
    INTERN(s_hexdigest, "hexdigest");
    INTERN(s_path, "path");
    INTERN(s_size, "size");
    INTERN(s_rstrip, "rstrip");
    INTERN(s_removeprefix, "removeprefix");
    INTERN(s_slash, "/");
    INTERN(s_files, "files");
    INTERN(s_entries, "entries");
    INTERN(s_bytes, "bytes");
    INTERN(s_warnings, "warnings");
    INTERN(s_release, "release");
    if (PyType_Ready(&TapType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&ctap_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "native_blake3", TAMER_NATIVE_BLAKE3) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&TapType);
    if (PyModule_AddObject(m, "Tap", (PyObject *)&TapType) < 0) {
        Py_DECREF(&TapType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
