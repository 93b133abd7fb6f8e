/* tamer._cpack: the data part of a backup archive (the tar stream below `data/`) written in C.
 *
 * Why: with GNU tar as the writer, a backup's CPU went to tar itself (1.1-1.4 s on the bench's 100,000
 * files), to reading its stream through a pipe and parsing it again in the tap (_ctap.c), and to
 * hashing. Here one loop in our own process reads every file straight into the buffer that goes to the
 * compressor, hashes it from there (BLAKE3, small files side by side in SIMD lanes: _b3batch.c) and
 * builds its header: no second process, no pipe, no parsing. The pure-Python writer in
 * tamer.volumes.archive_write (_scan, _read_batch, _stream_file, emit_batch) is the reference: for the
 * same tree and the same header function the stream is the same, byte for byte, and so are the
 * manifest's records (a test compares them on hostile trees).
 *
 * Packer(root, data_prefix, header, files, xattrs, warnings)
 *   root: the volume's folder (str or bytes), opened following a link (the essay's placement symlink);
 *   everything below it is reached through open folder descriptors only: openat(O_DIRECTORY|O_NOFOLLOW)
 *   from the open parent, entries fstatat(AT_SYMLINK_NOFOLLOW), so a folder swapped for a link by a
 *   running user mid-backup cannot pull anything from outside into the archive.
 *   data_prefix: b"data"; header: archive._header, called for every header that plain ustar cannot
 *   hold (names or link targets past 100 bytes, sizes of 8 GiB and more, owners or times out of the
 *   octal fields), so the PAX form stays in one place. files: dict rel -> [size, BLAKE3 hex];
 *   xattrs: dict rel -> {name: raw bytes} (the caller base64s them); warnings: list of str.
 *   All three grow in stream order: xattrs and warnings with each piece, files a piece behind (see
 *   below); all are complete once fill() has returned 0.
 * fill() -> int: builds the next piece of the stream (about PIECE bytes; 0 at the end) with the GIL
 *   let go while it reads and builds headers; the Packer itself is then a read-only buffer holding
 *   that piece (`zw.write(packer)`), until the next fill() (which refuses to run while the piece is
 *   still exported). Meanwhile a thread of the Packer's own hashes the files of the piece before
 *   (BLAKE3: small files side by side in SIMD lanes, _b3batch.c), and their records go into `files`
 *   before fill() returns: the hashing (about an eighth of the loop's CPU) leaves the thread that
 *   feeds the compressor, the critical path on two cores.
 * entries, files, bytes: the counts so far (as the Python writer's WriteStats).
 * close(): closes every descriptor and ends the hashing thread (also done when the object goes).
 * Raises OSError where the Python writer would (an unreadable file, EACCES as a non-root user; a read
 * error; a folder that cannot be opened for a reason other than being gone or replaced); after an
 * error the Packer is spent (every descriptor closed; fill() raises).
 *
 * Order, as _scan: a folder's entries sorted by their names' bytes, each written when its turn comes;
 * then its subfolders, depth first, in the same order. A folder stays open only while subfolders of
 * it wait to be opened (a chain of 3,000 folders holds two descriptors, not 3,000).
 *
 * Where it does better than the reference, only under a running user's changes (a still tree gives the
 * same bytes): a regular file swapped for a device node or a FIFO between its stat and its open is never
 * read (fstat on the opened file; the reference would store a device's contents); a symlink removed or
 * replaced between its stat and its readlink is left out (the reference fails the backup); the root's
 * xattrs are read from the opened folder (the reference reads them from the root's path without
 * following a link).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifdef TAMER_NO_BLAKE3 /* the vendored BLAKE3 did not compile here (setup.py): no compiled writer offered */
#include "_b3none.h"
#else
#include "_b3batch.h"
#include "_blake3/blake3.h"
#define TAMER_NATIVE_BLAKE3 1
#endif

#define BLOCK 512
/* A piece handed to the compressor: 1 MiB, as the tar path's chunks (archive_write.FLUSH_AT). */
#define PIECE (1 << 20)
/* Files up to this size go into a piece whole (so a piece may reach about 2 MiB); larger ones are
 * streamed in parts, so memory stays bounded whatever a file's size. */
#define WHOLE_MAX (1 << 20)
/* The least a streamed file adds to a piece at once. */
#define STREAM_MIN (64 << 10)
#define LISTING_BYTES (32 * 1024)
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define FILE_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
#define OCTAL7 07777777ULL
#define OCTAL11 077777777777ULL

typedef struct {
    char *p;
    size_t len, cap;
} bytebuf;

static int bb_reserve(bytebuf *b, size_t extra) {
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int bb_put(bytebuf *b, const void *data, size_t n) {
    if (bb_reserve(b, n) < 0) {
        return -1;
    }
    if (n) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
    return 0;
}

/* Grows the array *arr of *cap items of `size` bytes to hold one more. */
static int grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) {
        return 0;
    }
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, c * size);
    if (p == NULL) {
        return -1;
    }
    *arr = p;
    *cap = c;
    return 0;
}

/* An open folder, shared by the folders that wait to be opened from it. */
typedef struct {
    int fd;
    int refs;
} dirref;

static void dir_drop(dirref *d) {
    if (d != NULL && --d->refs == 0) {
        close(d->fd);
        free(d);
    }
}

/* A folder waiting for its turn: its path below the root and the open folder it is named in. */
typedef struct {
    char *rel;
    size_t len, name_at;
    dirref *parent;
} todo;

/* A regular file's manifest record; rel in the piece's arena. job >= 0: hashed with the piece's batch. */
typedef struct {
    size_t rel_off, rel_len;
    unsigned long long size;
    long job;
    uint8_t out[32];
} record;

typedef struct {
    size_t off, len;
} span;

/* Hashing that is not a small file's batch job, in stream order: a file hashed whole (over 64 KiB, in the
 * piece), and the parts of a streamed one (begun, a part, done: its digest into record `rec`). */
enum { OP_WHOLE, OP_BEGIN, OP_PART, OP_DONE };

typedef struct {
    int kind;
    size_t off, len, rec;
} hash_op;

/* One piece of the stream and what it adds to the manifest. Two take turns: while the compressor has one
 * (and the hashing thread hashes its files), the other is filled. */
typedef struct {
    bytebuf out;
    bytebuf arena; /* the names of its records and warnings */
    record *recs;
    size_t n_recs, recs_cap;
    span *jobs; /* its small files, hashed side by side */
    size_t n_jobs, jobs_cap;
    b3_job *b3;
    size_t b3_cap;
    hash_op *ops;
    size_t n_ops, ops_cap;
} piece;

enum { H_IDLE, H_WORK, H_DONE };

enum { W_SHRANK, W_SKIPPED, W_LEFT_OUT };

typedef struct {
    int kind, err;
    size_t rel_off, rel_len;
    unsigned long long real, size;
} warning;

typedef struct {
    unsigned long long dev, ino;
    char *name;
    size_t len;
} linkseen;

enum { S_ROOT, S_FOLDER, S_NEXT, S_DONE };

typedef struct {
    PyObject_HEAD
    PyObject *header, *files, *xattrs, *warnings, *prefix_obj;
    char *root;
    char *prefix; /* "data" */
    size_t prefix_len;
    int root_fd;
    int state;
    int busy, spent, exports;
    PyThreadState *ts; /* while the GIL is let go inside fill() */
    /* a failure inside fill(): errno and the path (below the root) it happened on, or a Python exception */
    int err_no;
    const char *err_what;
    bytebuf err_path;
    PyObject *exc_type, *exc_value, *exc_tb;
    /* the pieces: pc[pcur] is being filled, or was returned last */
    piece pc[2];
    int pcur;
    /* the hashing thread: hashes the piece returned last while the next one is filled */
    pthread_t hasher;
    int hasher_started, h_state, h_rc, h_exit;
    piece *h_piece;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the folder being written */
    dirref *cur;
    char *cur_rel;
    size_t cur_len;
    bytebuf names;
    size_t *name_offs;
    size_t n_names, names_cap, at_name;
    char *listing;
    todo *subs;
    size_t n_subs, subs_cap;
    todo *stack;
    size_t n_stack, stack_cap;
    /* scratch */
    bytebuf rel;    /* the current entry's path below the root */
    bytebuf name;   /* data/ + rel */
    bytebuf hdr;    /* the current header */
    bytebuf link;   /* a symlink's target */
    bytebuf xlist;  /* listxattr's names */
    bytebuf xval;   /* one xattr value */
    /* the piece's xattrs and warnings, turned into Python objects at the end of fill() */
    bytebuf xblob; /* per entry: rel length, rel, count, then (name length, name, value length, value) */
    warning *warns;
    size_t n_warns, warns_cap;
    /* hard links: (dev, ino) -> first name, open addressing */
    linkseen *links;
    size_t links_cap, n_links;
    /* a large file being streamed */
    int s_active, s_fd;
    unsigned long long s_size, s_left, s_real;
    char *s_rel;
    size_t s_rel_len;
    blake3_hasher s_hasher; /* the hashing thread's alone */
    /* counts */
    long long n_entries, n_files;
    unsigned __int128 n_bytes;
} Packer;

static piece *PC(Packer *self) {
    return &self->pc[self->pcur];
}

static int add_op(Packer *self, int kind, size_t off, size_t len, size_t rec);

/* ---- failures (no GIL: recorded, raised at the end of fill) ---------------------------------- */
static int fail(Packer *self, int err, const char *what, const char *path, size_t len) {
    self->err_no = err ? err : EIO;
    self->err_what = what;
    self->err_path.len = 0;
    if (bb_put(&self->err_path, path, len) < 0 || bb_put(&self->err_path, "", 1) < 0) {
        self->err_no = ENOMEM;
    }
    return -1;
}

static int no_memory(Packer *self) {
    return fail(self, ENOMEM, "memory", "", 0);
}

/* ---- closing --------------------------------------------------------------------------------- */
static void drop_todos(todo *t, size_t n) {
    for (size_t k = 0; k < n; k++) {
        free(t[k].rel);
        dir_drop(t[k].parent);
    }
}

static void close_all(Packer *self) {
    drop_todos(self->subs, self->n_subs);
    self->n_subs = 0;
    drop_todos(self->stack, self->n_stack);
    self->n_stack = 0;
    dir_drop(self->cur);
    self->cur = NULL;
    if (self->s_fd >= 0) {
        close(self->s_fd);
        self->s_fd = -1;
    }
    self->s_active = 0;
    if (self->root_fd >= 0) {
        close(self->root_fd);
        self->root_fd = -1;
    }
    self->state = S_DONE;
}

/* ---- headers --------------------------------------------------------------------------------- */
/* `digits` octal digits of v (which fits them) and a NUL, as "%0*o\0" would write them (snprintf cost
 * more than the rest of a header together). */
static void octal(char *at, int digits, unsigned long long v) {
    at[digits] = '\0';
    for (int k = digits - 1; k >= 0; k--) {
        at[k] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

/* archive._header's plain ustar branch: the same bytes. */
static void ustar(char *h, const char *name, size_t nlen, unsigned mode, unsigned long long uid,
                  unsigned long long gid, unsigned long long size, unsigned long long mtime, char type,
                  const char *link, size_t llen) {
    memset(h, 0, BLOCK);
    memcpy(h, name, nlen);
    octal(h + 100, 7, mode);
    octal(h + 108, 7, uid);
    octal(h + 116, 7, gid);
    octal(h + 124, 11, size);
    octal(h + 136, 11, mtime);
    h[156] = type;
    memcpy(h + 157, link, llen);
    memcpy(h + 257, "ustar\0" "00", 8);
    /* every byte of the header, the checksum field counted as eight spaces: only these parts are not zero */
    unsigned chk = 8 * ' ' + (unsigned char)type;
    for (int k = 0; k < 265; k++) {
        if (k < 148 || (k >= 157)) {
            chk += (unsigned char)h[k];
        }
    }
    octal(h + 148, 6, chk);
    h[155] = ' ';
}

typedef struct {
    unsigned mode;
    unsigned long long uid, gid, size;
    double mtime; /* Python's st_mtime: sec + nsec * 1e-9, a double */
} meta;

static void meta_of(meta *m, const struct stat *st, unsigned long long size) {
    m->mode = st->st_mode & 07777;
    m->uid = st->st_uid;
    m->gid = st->st_gid;
    m->size = size;
    m->mtime = st->st_mtim.tv_sec + (unsigned long)st->st_mtim.tv_nsec * 1e-9;
}

/* The header of `name` (data/...) into self->hdr: ustar here when it fits, else archive._header with
 * the GIL taken back for the call (mtime as int(st_mtime): a double truncated toward zero). */
static int build_header(Packer *self, const char *name, size_t nlen, const meta *m, char type, const char *link,
                        size_t llen) {
    self->hdr.len = 0;
    /* int(mtime) in [0, 8**11 - 1) <=> mtime in (-1, 8**11 - 1) */
    int fits = nlen <= 100 && llen <= 100 && m->uid < OCTAL7 && m->gid < OCTAL7 && m->size < OCTAL11 &&
               m->mtime > -1.0 && m->mtime < (double)OCTAL11;
    if (fits) {
        if (bb_reserve(&self->hdr, BLOCK) < 0) {
            return no_memory(self);
        }
        ustar(self->hdr.p, name, nlen, m->mode, m->uid, m->gid, m->size, (unsigned long long)(long long)m->mtime, type, link,
              llen);
        self->hdr.len = BLOCK;
        return 0;
    }
    PyEval_RestoreThread(self->ts);
    PyObject *r = NULL;
    PyObject *mtime = PyLong_FromDouble(m->mtime);
    if (mtime != NULL) {
        r = PyObject_CallFunction(self->header, "y#IKKKOy#y#", name, (Py_ssize_t)nlen, m->mode, m->uid, m->gid,
                                  m->size, mtime, &type, (Py_ssize_t)1, link, (Py_ssize_t)llen);
        Py_DECREF(mtime);
    }
    int rc = 0;
    if (r != NULL && !PyBytes_Check(r)) {
        PyErr_Format(PyExc_TypeError, "the header function returned %R, expected bytes", r);
        Py_CLEAR(r);
    }
    if (r == NULL) {
        PyErr_Fetch(&self->exc_type, &self->exc_value, &self->exc_tb);
        rc = -1;
    } else {
        if (bb_put(&self->hdr, PyBytes_AS_STRING(r), (size_t)PyBytes_GET_SIZE(r)) < 0) {
            rc = -1;
            PyErr_NoMemory();
            PyErr_Fetch(&self->exc_type, &self->exc_value, &self->exc_tb);
        }
        Py_DECREF(r);
    }
    self->ts = PyEval_SaveThread();
    return rc;
}

/* ---- xattrs ---------------------------------------------------------------------------------- */
/* The xattrs of an entry, as archive_write._xattrs collects them (list, then each name; a name whose
 * value cannot be read is left out; a list that cannot be read means none), through the open file
 * `fd` when there is one, else through /proc/self/fd/N/NAME without following a link. Appended to
 * xblob under the entry's rel when there are any. */
static int collect_xattrs(Packer *self, int fd, const char *name) {
    char path[64 + 256];
    if (fd < 0) {
        snprintf(path, sizeof path, "/proc/self/fd/%d/%s", self->cur->fd, name);
    }
    ssize_t n;
    for (;;) {
        n = fd >= 0 ? flistxattr(fd, self->xlist.p, self->xlist.cap) : llistxattr(path, self->xlist.p, self->xlist.cap);
        if (n >= 0 || errno != ERANGE) {
            break;
        }
        ssize_t want = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(path, NULL, 0);
        if (want < 0) {
            return 0;
        }
        self->xlist.len = 0;
        if (bb_reserve(&self->xlist, (size_t)want + 256) < 0) {
            return no_memory(self);
        }
    }
    if (n <= 0) {
        return 0;
    }
    size_t start = self->xblob.len;
    uint32_t count = 0;
    size_t rl = self->rel.len;
    if (bb_put(&self->xblob, &rl, sizeof rl) < 0 || bb_put(&self->xblob, self->rel.p, rl) < 0 ||
        bb_put(&self->xblob, &count, sizeof count) < 0) {
        return no_memory(self);
    }
    size_t count_at = self->xblob.len - sizeof count;
    /* the list may change under us: copy it first (xval is reused for values) */
    const char *names = self->xlist.p;
    for (ssize_t at = 0; at < n;) {
        const char *x = names + at;
        size_t xl = strnlen(x, (size_t)(n - at));
        at += (ssize_t)xl + 1;
        ssize_t v;
        for (;;) {
            v = fd >= 0 ? fgetxattr(fd, x, self->xval.p, self->xval.cap) : lgetxattr(path, x, self->xval.p, self->xval.cap);
            if (v >= 0 || errno != ERANGE) {
                break;
            }
            ssize_t want = fd >= 0 ? fgetxattr(fd, x, NULL, 0) : lgetxattr(path, x, NULL, 0);
            if (want < 0) {
                break;
            }
            self->xval.len = 0;
            if (bb_reserve(&self->xval, (size_t)want + 256) < 0) {
                return no_memory(self);
            }
        }
        if (v < 0) {
            continue;
        }
        uint32_t nl = (uint32_t)xl, vl = (uint32_t)v;
        if (bb_put(&self->xblob, &nl, sizeof nl) < 0 || bb_put(&self->xblob, x, xl) < 0 ||
            bb_put(&self->xblob, &vl, sizeof vl) < 0 || bb_put(&self->xblob, self->xval.p, (size_t)v) < 0) {
            return no_memory(self);
        }
        count++;
    }
    if (count == 0) {
        self->xblob.len = start;
    } else {
        memcpy(self->xblob.p + count_at, &count, sizeof count);
    }
    return 0;
}

/* ---- the manifest's records ------------------------------------------------------------------- */
static int add_warning(Packer *self, int kind, int err, const char *rel, size_t len, unsigned long long real,
                       unsigned long long size) {
    if (grow((void **)&self->warns, &self->warns_cap, self->n_warns, sizeof *self->warns) < 0) {
        return no_memory(self);
    }
    warning *w = &self->warns[self->n_warns];
    w->kind = kind;
    w->err = err;
    w->rel_off = PC(self)->arena.len;
    w->rel_len = len;
    w->real = real;
    w->size = size;
    if (bb_put(&PC(self)->arena, rel, len) < 0) {
        return no_memory(self);
    }
    self->n_warns++;
    return 0;
}

static record *add_record(Packer *self, const char *rel, size_t len, unsigned long long size) {
    piece *p = PC(self);
    if (grow((void **)&p->recs, &p->recs_cap, p->n_recs, sizeof *p->recs) < 0) {
        no_memory(self);
        return NULL;
    }
    record *r = &p->recs[p->n_recs];
    r->rel_off = p->arena.len;
    r->rel_len = len;
    r->size = size;
    r->job = -1;
    if (bb_put(&p->arena, rel, len) < 0) {
        no_memory(self);
        return NULL;
    }
    p->n_recs++;
    self->n_files++;
    self->n_bytes += size;
    return r;
}

/* ---- folders --------------------------------------------------------------------------------- */
static int by_bytes(const void *a, const void *b, void *base) {
    const char *names = *(const char **)base;
    return strcmp(names + *(const size_t *)a, names + *(const size_t *)b);
}

/* Lists the open folder self->cur (every name but . and ..) and sorts the names by their bytes. */
static int list_folder(Packer *self) {
    self->names.len = 0;
    self->n_names = self->at_name = 0;
    if (self->listing == NULL && (self->listing = malloc(LISTING_BYTES)) == NULL) {
        return no_memory(self);
    }
    for (;;) {
        long got = syscall(SYS_getdents64, self->cur->fd, self->listing, LISTING_BYTES);
        if (got == 0 || (got < 0 && errno == ENOENT)) { /* ENOENT: removed since opened; readdir ends there */
            break;
        }
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(self, errno, "listing", self->cur_rel, self->cur_len);
        }
        for (long at = 0; at < got;) {
            struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(self->listing + at);
            at += d->reclen;
            if (d->name[0] == '.' && (d->name[1] == '\0' || (d->name[1] == '.' && d->name[2] == '\0'))) {
                continue;
            }
            if (grow((void **)&self->name_offs, &self->names_cap, self->n_names, sizeof(size_t)) < 0) {
                return no_memory(self);
            }
            self->name_offs[self->n_names++] = self->names.len;
            if (bb_put(&self->names, d->name, strlen(d->name) + 1) < 0) {
                return no_memory(self);
            }
        }
    }
    const char *base = self->names.p;
    qsort_r(self->name_offs, self->n_names, sizeof(size_t), by_bytes, &base);
    return 0;
}

/* The folder self->cur is done: its subfolders wait on the stack, the first on top. */
static int folder_done(Packer *self) {
    for (size_t k = self->n_subs; k > 0; k--) {
        if (grow((void **)&self->stack, &self->stack_cap, self->n_stack, sizeof *self->stack) < 0) {
            return no_memory(self);
        }
        self->stack[self->n_stack++] = self->subs[k - 1];
    }
    self->n_subs = 0;
    dir_drop(self->cur);
    self->cur = NULL;
    free(self->cur_rel);
    self->cur_rel = NULL;
    self->state = S_NEXT;
    return 0;
}

/* The next folder off the stack, opened from its parent; one that is gone or no longer a folder is left
 * out with _scan's warning. */
static int next_folder(Packer *self) {
    if (self->n_stack == 0) {
        self->state = S_DONE;
        return 0;
    }
    todo t = self->stack[--self->n_stack];
    int fd = openat(t.parent->fd, t.rel + t.name_at, DIR_FLAGS);
    int err = errno;
    dir_drop(t.parent);
    if (fd < 0) {
        int rc;
        if (err == ENOENT || err == ENOTDIR || err == ELOOP) {
            rc = add_warning(self, W_LEFT_OUT, err, t.rel, t.len, 0, 0);
        } else {
            rc = fail(self, err, "opening the folder", t.rel, t.len);
        }
        free(t.rel);
        return rc;
    }
    dirref *d = malloc(sizeof *d);
    if (d == NULL) {
        close(fd);
        free(t.rel);
        return no_memory(self);
    }
    d->fd = fd;
    d->refs = 1;
    self->cur = d;
    self->cur_rel = t.rel;
    self->cur_len = t.len;
    self->state = S_FOLDER;
    return list_folder(self);
}

/* ---- entries --------------------------------------------------------------------------------- */
static int put_header(Packer *self) {
    return bb_put(&PC(self)->out, self->hdr.p, self->hdr.len) < 0 ? no_memory(self) : 0;
}

static int zero_pad(Packer *self, unsigned long long size) {
    size_t pad = (size_t)((BLOCK - size % BLOCK) % BLOCK);
    bytebuf *out = &PC(self)->out;
    if (bb_reserve(out, pad) < 0) {
        return no_memory(self);
    }
    memset(out->p + out->len, 0, pad);
    out->len += pad;
    return 0;
}

/* Reads up to `want` bytes of fd into p; the count (less only at the end of the file), or -1. */
static ssize_t read_full(int fd, char *p, size_t want) {
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, p + got, want - got);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The regular file listed as `name`, opened without following a link; -1 (read as shrunk to nothing)
 * when a running user removed it or put a link, a folder or anything but a regular file in its place
 * since; -2 on any other error (recorded). */
static int open_listed(Packer *self, const char *name) {
    int fd = openat(self->cur->fd, name, FILE_FLAGS);
    if (fd < 0) {
        if (errno == ENOENT || errno == EISDIR || errno == ELOOP || errno == ENXIO) {
            return -1;
        }
        fail(self, errno, "opening", self->rel.p, self->rel.len);
        return -2;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { /* a device or FIFO swapped in: never read */
        close(fd);
        return -1;
    }
    return fd;
}

static int shrank(Packer *self, const char *rel, size_t len, unsigned long long real, unsigned long long size) {
    return real < size ? add_warning(self, W_SHRANK, 0, rel, len, real, size) : 0;
}

static int regular_file(Packer *self, const char *name, const struct stat *st) {
    unsigned long long size = (unsigned long long)st->st_size;
    int fd = open_listed(self, name);
    if (fd == -2) {
        return -1;
    }
    meta m;
    meta_of(&m, st, size);
    if (collect_xattrs(self, fd, name) < 0 || build_header(self, self->name.p, self->name.len, &m, '0', "", 0) < 0 ||
        put_header(self) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    if (size > WHOLE_MAX) { /* streamed, a part per piece */
        free(self->s_rel);
        self->s_rel = malloc(self->rel.len + 1);
        if (self->s_rel == NULL) {
            if (fd >= 0) {
                close(fd);
            }
            return no_memory(self);
        }
        memcpy(self->s_rel, self->rel.p, self->rel.len);
        self->s_rel_len = self->rel.len;
        self->s_active = 1;
        self->s_fd = fd;
        self->s_size = self->s_left = size;
        self->s_real = 0;
        return add_op(self, OP_BEGIN, 0, 0, 0);
    }
    bytebuf *out = &PC(self)->out;
    if (bb_reserve(out, (size_t)size + BLOCK) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return no_memory(self);
    }
    char *p = out->p + out->len;
    ssize_t real = 0;
    if (fd >= 0) {
        real = read_full(fd, p, (size_t)size);
        int err = errno;
        close(fd);
        if (real < 0) {
            return fail(self, err, "reading", self->rel.p, self->rel.len);
        }
    }
    memset(p + real, 0, (size_t)size - (size_t)real);
    size_t data_at = out->len;
    out->len += (size_t)size;
    if (zero_pad(self, size) < 0) {
        return -1;
    }
    record *r = add_record(self, self->rel.p, self->rel.len, size);
    if (r == NULL) {
        return -1;
    }
    piece *pc = PC(self);
    if (size <= B3_BATCH_MAX) { /* hashed with the piece's other small files, side by side */
        if (grow((void **)&pc->jobs, &pc->jobs_cap, pc->n_jobs, sizeof *pc->jobs) < 0) {
            return no_memory(self);
        }
        pc->jobs[pc->n_jobs].off = data_at;
        pc->jobs[pc->n_jobs].len = (size_t)size;
        r->job = (long)pc->n_jobs++;
    } else if (add_op(self, OP_WHOLE, data_at, (size_t)size, pc->n_recs - 1) < 0) {
        return -1;
    }
    return shrank(self, self->rel.p, self->rel.len, (unsigned long long)real, size);
}

/* The next part of the large file being streamed (its header is out already). */
static int stream_more(Packer *self) {
    bytebuf *out = &PC(self)->out;
    size_t space = out->len < PIECE ? PIECE - out->len : 0;
    if (space < STREAM_MIN) {
        space = STREAM_MIN;
    }
    size_t take = self->s_left < space ? (size_t)self->s_left : space;
    if (bb_reserve(out, take + BLOCK) < 0) {
        return no_memory(self);
    }
    char *p = out->p + out->len;
    size_t got = 0;
    if (self->s_fd >= 0) {
        ssize_t r = read_full(self->s_fd, p, take);
        if (r < 0) {
            return fail(self, errno, "reading", self->s_rel, self->s_rel_len);
        }
        got = (size_t)r;
        if (got < take) { /* it shrank: the rest is zeros */
            close(self->s_fd);
            self->s_fd = -1;
        }
    }
    memset(p + got, 0, take - got);
    if (add_op(self, OP_PART, out->len, take, 0) < 0) {
        return -1;
    }
    out->len += take;
    self->s_real += got;
    self->s_left -= take;
    if (self->s_left) {
        return 0;
    }
    if (self->s_fd >= 0) {
        close(self->s_fd);
        self->s_fd = -1;
    }
    self->s_active = 0;
    if (zero_pad(self, self->s_size) < 0) {
        return -1;
    }
    if (add_record(self, self->s_rel, self->s_rel_len, self->s_size) == NULL ||
        add_op(self, OP_DONE, 0, 0, PC(self)->n_recs - 1) < 0) {
        return -1;
    }
    return shrank(self, self->s_rel, self->s_rel_len, self->s_real, self->s_size);
}

static uint64_t link_hash(unsigned long long dev, unsigned long long ino) {
    uint64_t h = (dev * 0x9E3779B97F4A7C15ULL) ^ (ino * 0xC2B2AE3D27D4EB4FULL);
    return h ^ (h >> 29);
}

/* The first name seen for (dev, ino), or NULL after remembering `self->name` as it. */
static linkseen *link_seen(Packer *self, unsigned long long dev, unsigned long long ino, int *failed) {
    *failed = 0;
    if (2 * (self->n_links + 1) > self->links_cap) {
        size_t cap = self->links_cap ? 2 * self->links_cap : 256;
        linkseen *t = calloc(cap, sizeof *t);
        if (t == NULL) {
            *failed = no_memory(self);
            return NULL;
        }
        for (size_t k = 0; k < self->links_cap; k++) {
            linkseen *e = &self->links[k];
            if (e->name != NULL) {
                size_t j = link_hash(e->dev, e->ino) & (cap - 1);
                while (t[j].name != NULL) {
                    j = (j + 1) & (cap - 1);
                }
                t[j] = *e;
            }
        }
        free(self->links);
        self->links = t;
        self->links_cap = cap;
    }
    size_t j = link_hash(dev, ino) & (self->links_cap - 1);
    while (self->links[j].name != NULL) {
        if (self->links[j].dev == dev && self->links[j].ino == ino) {
            return &self->links[j];
        }
        j = (j + 1) & (self->links_cap - 1);
    }
    char *copy = malloc(self->name.len ? self->name.len : 1);
    if (copy == NULL) {
        *failed = no_memory(self);
        return NULL;
    }
    memcpy(copy, self->name.p, self->name.len);
    self->links[j] = (linkseen){dev, ino, copy, self->name.len};
    self->n_links++;
    return NULL;
}

/* One entry of the folder being written, as _scan yields it and emit_batch writes it. */
static int entry(Packer *self, const char *name) {
    size_t nl = strlen(name);
    self->rel.len = 0;
    if (self->cur_len && (bb_put(&self->rel, self->cur_rel, self->cur_len) < 0 || bb_put(&self->rel, "/", 1) < 0)) {
        return no_memory(self);
    }
    if (bb_put(&self->rel, name, nl) < 0 || bb_put(&self->rel, "", 1) < 0) {
        return no_memory(self);
    }
    self->rel.len--; /* NUL-terminated, not counted */
    self->name.len = 0;
    if (bb_put(&self->name, self->prefix, self->prefix_len) < 0 || bb_put(&self->name, "/", 1) < 0 ||
        bb_put(&self->name, self->rel.p, self->rel.len) < 0) {
        return no_memory(self);
    }
    struct stat st;
    if (fstatat(self->cur->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
            return 0; /* removed since the folder was listed */
        }
        return fail(self, errno, "stat", self->rel.p, self->rel.len);
    }
    meta m;
    meta_of(&m, &st, 0);
    if (S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1) {
            int failed;
            linkseen *first = link_seen(self, st.st_dev, st.st_ino, &failed);
            if (failed) {
                return -1;
            }
            if (first != NULL) {
                self->n_entries++;
                if (collect_xattrs(self, -1, name) < 0 ||
                    build_header(self, self->name.p, self->name.len, &m, '1', first->name, first->len) < 0) {
                    return -1;
                }
                return put_header(self);
            }
        }
        self->n_entries++;
        return regular_file(self, name, &st);
    }
    if (S_ISDIR(st.st_mode)) {
        if (grow((void **)&self->subs, &self->subs_cap, self->n_subs, sizeof *self->subs) < 0) {
            return no_memory(self);
        }
        char *rel = malloc(self->rel.len + 1);
        if (rel == NULL) {
            return no_memory(self);
        }
        memcpy(rel, self->rel.p, self->rel.len + 1);
        self->cur->refs++;
        self->subs[self->n_subs++] = (todo){rel, self->rel.len, self->rel.len - nl, self->cur};
        self->n_entries++;
        if (collect_xattrs(self, -1, name) < 0 || build_header(self, self->name.p, self->name.len, &m, '5', "", 0) < 0) {
            return -1;
        }
        return put_header(self);
    }
    if (S_ISLNK(st.st_mode)) {
        ssize_t n;
        for (;;) {
            if (bb_reserve(&self->link, self->link.cap ? self->link.cap : 4096) < 0) {
                return no_memory(self);
            }
            n = readlinkat(self->cur->fd, name, self->link.p, self->link.cap);
            if (n < 0 || (size_t)n < self->link.cap) {
                break;
            }
            self->link.len = self->link.cap; /* truncated: twice the room */
            if (bb_reserve(&self->link, 1) < 0) {
                return no_memory(self);
            }
            self->link.len = 0;
        }
        if (n < 0) {
            if (errno == ENOENT) {
                return 0; /* removed since the folder was listed */
            }
            if (errno == EINVAL) { /* no longer a link: replaced since it was listed */
                return add_warning(self, W_LEFT_OUT, errno, self->rel.p, self->rel.len, 0, 0);
            }
            return fail(self, errno, "reading the link", self->rel.p, self->rel.len);
        }
        self->n_entries++;
        if (collect_xattrs(self, -1, name) < 0 ||
            build_header(self, self->name.p, self->name.len, &m, '2', self->link.p, (size_t)n) < 0) {
            return -1;
        }
        return put_header(self);
    }
    if (S_ISFIFO(st.st_mode)) {
        self->n_entries++;
        if (collect_xattrs(self, -1, name) < 0 || build_header(self, self->name.p, self->name.len, &m, '6', "", 0) < 0) {
            return -1;
        }
        return put_header(self);
    }
    return add_warning(self, W_SKIPPED, 0, self->rel.p, self->rel.len, 0, 0);
}

/* The volume's own folder: its header (named data, from the folder opened through any link), xattrs, and
 * its listing. */
static int root_entry(Packer *self) {
    struct stat st;
    if (fstat(self->root_fd, &st) != 0) {
        return fail(self, errno, "stat", "", 0);
    }
    meta m;
    meta_of(&m, &st, 0);
    dirref *d = malloc(sizeof *d);
    if (d == NULL) {
        return no_memory(self);
    }
    d->fd = self->root_fd;
    d->refs = 1;
    self->root_fd = -1;
    self->cur = d;
    self->cur_rel = NULL;
    self->cur_len = 0;
    self->rel.len = 0;
    if (bb_put(&self->rel, "", 1) < 0) {
        return no_memory(self);
    }
    self->rel.len = 0;
    if (collect_xattrs(self, d->fd, "") < 0 ||
        build_header(self, self->prefix, self->prefix_len, &m, '5', "", 0) < 0 || put_header(self) < 0) {
        return -1;
    }
    self->state = S_FOLDER;
    return list_folder(self);
}

static int step(Packer *self) {
    if (self->s_active) {
        return stream_more(self);
    }
    switch (self->state) {
    case S_ROOT:
        return root_entry(self);
    case S_FOLDER:
        if (self->at_name < self->n_names) {
            return entry(self, self->names.p + self->name_offs[self->at_name++]);
        }
        return folder_done(self);
    case S_NEXT:
        return next_folder(self);
    default:
        return 0;
    }
}

/* ---- the piece's records into Python --------------------------------------------------------- */
static PyObject *fsdecode(const char *p, size_t n) {
    return PyUnicode_DecodeFSDefaultAndSize(p, (Py_ssize_t)n);
}

/* The records of a hashed piece into `files`, in stream order. */
static int publish_records(Packer *self, piece *p) {
    int rc = 0;
    for (size_t k = 0; k < p->n_recs && rc == 0; k++) {
        record *r = &p->recs[k];
        const uint8_t *d = r->job >= 0 ? p->b3[r->job].out : r->out;
        char hex[64];
        b3_hex(d, hex);
        PyObject *rel = fsdecode(p->arena.p + r->rel_off, r->rel_len);
        PyObject *rec = rel ? Py_BuildValue("[Ks#]", r->size, hex, (Py_ssize_t)64) : NULL;
        rc = rec ? PyDict_SetItem(self->files, rel, rec) : -1;
        Py_XDECREF(rel);
        Py_XDECREF(rec);
    }
    p->n_recs = 0;
    return rc;
}

/* The xattrs and warnings of the piece just filled into `xattrs` and `warnings` (they need no hashing). */
static int publish(Packer *self) {
    int rc = 0;
    piece *p = PC(self);
    for (size_t at = 0; at < self->xblob.len && rc == 0;) {
        size_t rl;
        uint32_t count;
        memcpy(&rl, self->xblob.p + at, sizeof rl);
        at += sizeof rl;
        PyObject *rel = fsdecode(self->xblob.p + at, rl);
        at += rl;
        memcpy(&count, self->xblob.p + at, sizeof count);
        at += sizeof count;
        PyObject *x = rel ? PyDict_New() : NULL;
        rc = x ? 0 : -1;
        for (uint32_t k = 0; k < count && rc == 0; k++) {
            uint32_t nl, vl;
            memcpy(&nl, self->xblob.p + at, sizeof nl);
            at += sizeof nl;
            PyObject *key = fsdecode(self->xblob.p + at, nl);
            at += nl;
            memcpy(&vl, self->xblob.p + at, sizeof vl);
            at += sizeof vl;
            PyObject *val = PyBytes_FromStringAndSize(self->xblob.p + at, vl);
            at += vl;
            rc = key && val ? PyDict_SetItem(x, key, val) : -1;
            Py_XDECREF(key);
            Py_XDECREF(val);
        }
        if (rc == 0) {
            rc = PyDict_SetItem(self->xattrs, rel, x);
        }
        Py_XDECREF(rel);
        Py_XDECREF(x);
    }
    for (size_t k = 0; k < self->n_warns && rc == 0; k++) {
        warning *w = &self->warns[k];
        PyObject *rel = fsdecode(p->arena.p + w->rel_off, w->rel_len);
        PyObject *msg = NULL;
        if (rel != NULL) {
            if (w->kind == W_SHRANK) {
                msg = PyUnicode_FromFormat("%U: shrank while being read; stored %llu of %llu bytes padded with zeros "
                                           "(pause its users for a consistent copy)",
                                           rel, w->real, w->size);
            } else if (w->kind == W_SKIPPED) {
                msg = PyUnicode_FromFormat("%U: skipped (a socket or device node is not volume data)", rel);
            } else {
                msg = PyUnicode_FromFormat("%U: left out: removed or replaced while being read (%s); pause its "
                                           "users for a consistent copy",
                                           rel, strerror(w->err));
            }
        }
        rc = msg ? PyList_Append(self->warnings, msg) : -1;
        Py_XDECREF(rel);
        Py_XDECREF(msg);
    }
    self->n_warns = 0;
    self->xblob.len = 0;
    return rc;
}

/* ---- hashing, on a thread of its own ------------------------------------------------------------ */
static int add_op(Packer *self, int kind, size_t off, size_t len, size_t rec) {
    piece *p = PC(self);
    if (grow((void **)&p->ops, &p->ops_cap, p->n_ops, sizeof *p->ops) < 0) {
        return no_memory(self);
    }
    p->ops[p->n_ops++] = (hash_op){kind, off, len, rec};
    return 0;
}

/* Every digest of piece p: its small files side by side, then the rest in stream order (a streamed file's
 * parts go through s_hasher, piece after piece). No Python; 0, or -1 when memory ran out. */
static int hash_piece(Packer *self, piece *p) {
    if (p->n_jobs) {
        if (p->b3_cap < p->n_jobs) {
            b3_job *b = realloc(p->b3, p->n_jobs * sizeof *b);
            if (b == NULL) {
                return -1;
            }
            p->b3 = b;
            p->b3_cap = p->n_jobs;
        }
        for (size_t k = 0; k < p->n_jobs; k++) {
            p->b3[k].data = (const uint8_t *)p->out.p + p->jobs[k].off;
            p->b3[k].len = p->jobs[k].len;
        }
        if (b3_hash_jobs(p->b3, p->n_jobs) < 0) {
            return -1;
        }
    }
    for (size_t k = 0; k < p->n_ops; k++) {
        hash_op *op = &p->ops[k];
        if (op->kind == OP_WHOLE) {
            blake3_hasher h;
            blake3_hasher_init(&h);
            blake3_hasher_update(&h, p->out.p + op->off, op->len);
            blake3_hasher_finalize(&h, p->recs[op->rec].out, 32);
        } else if (op->kind == OP_BEGIN) {
            blake3_hasher_init(&self->s_hasher);
        } else if (op->kind == OP_PART) {
            blake3_hasher_update(&self->s_hasher, p->out.p + op->off, op->len);
        } else {
            blake3_hasher_finalize(&self->s_hasher, p->recs[op->rec].out, 32);
        }
    }
    return 0;
}

static void *hasher_main(void *arg) {
    Packer *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (self->h_state != H_WORK && !self->h_exit) {
            pthread_cond_wait(&self->cv, &self->mu);
        }
        if (self->h_exit) {
            break;
        }
        piece *p = self->h_piece;
        pthread_mutex_unlock(&self->mu);
        int rc = hash_piece(self, p);
        pthread_mutex_lock(&self->mu);
        self->h_rc = rc;
        self->h_state = H_DONE;
        pthread_cond_broadcast(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

/* Hands piece p to the hashing thread (started on first use, with every signal blocked: they are the
 * interpreter's main thread's); where no thread can be started, hashes it here. */
static void hash_start(Packer *self, piece *p) {
    if (!self->hasher_started) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&self->hasher, NULL, hasher_main, self);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            self->h_rc = hash_piece(self, p);
            self->h_state = H_DONE;
            return;
        }
        self->hasher_started = 1;
    }
    pthread_mutex_lock(&self->mu);
    self->h_piece = p;
    self->h_state = H_WORK;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

/* Waits for the piece handed on by hash_start: 0, or -1 when memory ran out. */
static int hash_wait(Packer *self) {
    if (self->hasher_started) {
        pthread_mutex_lock(&self->mu);
        while (self->h_state == H_WORK) {
            pthread_cond_wait(&self->cv, &self->mu);
        }
        pthread_mutex_unlock(&self->mu);
    }
    self->h_state = H_IDLE;
    return self->h_rc;
}

static void hasher_stop(Packer *self) {
    if (!self->hasher_started) {
        return;
    }
    pthread_mutex_lock(&self->mu);
    self->h_exit = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->hasher, NULL);
    self->hasher_started = 0;
}

/* ---- the Python type ------------------------------------------------------------------------- */
static int Packer_traverse(Packer *self, visitproc visit, void *arg) {
    Py_VISIT(self->header);
    Py_VISIT(self->files);
    Py_VISIT(self->xattrs);
    Py_VISIT(self->warnings);
    Py_VISIT(self->prefix_obj);
    return 0;
}

static int Packer_clear(Packer *self) {
    Py_CLEAR(self->header);
    Py_CLEAR(self->files);
    Py_CLEAR(self->xattrs);
    Py_CLEAR(self->warnings);
    Py_CLEAR(self->prefix_obj);
    return 0;
}

static void free_buffers(Packer *self) {
    bytebuf *bufs[] = {&self->err_path, &self->pc[0].out, &self->pc[1].out, &self->names, &self->rel, &self->name,
                       &self->hdr, &self->link, &self->xlist, &self->xval, &self->pc[0].arena, &self->pc[1].arena,
                       &self->xblob};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) {
        free(bufs[k]->p);
        *bufs[k] = (bytebuf){NULL, 0, 0};
    }
    for (size_t k = 0; k < self->links_cap; k++) {
        free(self->links[k].name);
    }
    free(self->links);
    self->links = NULL;
    self->links_cap = self->n_links = 0;
    free(self->name_offs);
    free(self->listing);
    free(self->subs);
    free(self->stack);
    for (int k = 0; k < 2; k++) {
        piece *p = &self->pc[k];
        free(p->recs);
        free(p->jobs);
        free(p->b3);
        free(p->ops);
        *p = (piece){0};
    }
    free(self->warns);
    free(self->s_rel);
    free(self->cur_rel);
    free(self->root);
    self->name_offs = NULL;
    self->listing = NULL;
    self->subs = self->stack = NULL;
    self->warns = NULL;
    self->s_rel = self->cur_rel = self->root = NULL;
    self->names_cap = self->subs_cap = self->stack_cap = 0;
    self->warns_cap = 0;
}

static void Packer_dealloc(Packer *self) {
    PyObject_GC_UnTrack(self);
    close_all(self);
    hasher_stop(self);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    free_buffers(self);
    Py_CLEAR(self->exc_type);
    Py_CLEAR(self->exc_value);
    Py_CLEAR(self->exc_tb);
    Packer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Packer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Packer *self = (Packer *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->root_fd = self->s_fd = -1;
        self->state = S_DONE;
        pthread_mutex_init(&self->mu, NULL);
        pthread_cond_init(&self->cv, NULL);
    }
    return (PyObject *)self;
}

static int Packer_init(Packer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"root", "data_prefix", "header", "files", "xattrs", "warnings", NULL};
    PyObject *root, *prefix, *header, *files, *xattrs, *warnings;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&SOO!O!O!", kwlist, PyUnicode_FSConverter, &root, &prefix, &header,
                                     &PyDict_Type, &files, &PyDict_Type, &xattrs, &PyList_Type, &warnings)) {
        return -1;
    }
#if !TAMER_NATIVE_BLAKE3
    Py_DECREF(root);
    PyErr_SetString(PyExc_RuntimeError, "tamer._cpack was built without BLAKE3: the compiled writer is not offered");
    return -1;
#endif
    if (self->busy || self->state != S_DONE || self->root != NULL) {
        Py_DECREF(root);
        PyErr_SetString(PyExc_RuntimeError, "a Packer is set up once");
        return -1;
    }
    const char *path = PyBytes_AS_STRING(root);
    int fd;
    Py_BEGIN_ALLOW_THREADS
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    Py_END_ALLOW_THREADS
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, root);
        Py_DECREF(root);
        return -1;
    }
    self->root = strdup(path);
    Py_DECREF(root);
    self->prefix = PyBytes_AS_STRING(prefix);
    self->prefix_len = (size_t)PyBytes_GET_SIZE(prefix);
    if (self->root == NULL || bb_reserve(&self->xlist, 4096) < 0 || bb_reserve(&self->xval, 65536 + 256) < 0) {
        close(fd);
        PyErr_NoMemory();
        return -1;
    }
    self->root_fd = fd;
    self->prefix_obj = Py_NewRef(prefix);
    self->header = Py_NewRef(header);
    self->files = Py_NewRef(files);
    self->xattrs = Py_NewRef(xattrs);
    self->warnings = Py_NewRef(warnings);
    self->state = S_ROOT;
    return 0;
}

static PyObject *raise_failure(Packer *self) {
    if (self->exc_type != NULL) {
        PyErr_Restore(self->exc_type, self->exc_value, self->exc_tb);
        self->exc_type = self->exc_value = self->exc_tb = NULL;
        return NULL;
    }
    if (self->err_no == ENOMEM) {
        return PyErr_NoMemory();
    }
    const char *rel = self->err_path.p ? self->err_path.p : "";
    bytebuf where = {NULL, 0, 0};
    if (bb_put(&where, self->root, strlen(self->root)) < 0 || (*rel && bb_put(&where, "/", 1) < 0) ||
        bb_put(&where, rel, strlen(rel)) < 0) {
        free(where.p);
        return PyErr_NoMemory();
    }
    PyObject *full = fsdecode(where.p, where.len);
    free(where.p);
    if (full == NULL) {
        return NULL;
    }
    errno = self->err_no;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, full);
    Py_DECREF(full);
    return NULL;
}

static PyObject *Packer_fill(Packer *self, PyObject *unused) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Packer.fill while another fill of the same packer is running");
        return NULL;
    }
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "Packer.fill while the last piece is still in use (a view of it is held)");
        return NULL;
    }
    if (self->spent) {
        PyErr_SetString(PyExc_RuntimeError, "Packer.fill after it failed or was closed");
        return NULL;
    }
    self->busy = 1;
    piece *prev = PC(self); /* returned last time: the compressor is done with it; its files are hashed now */
    self->pcur ^= 1;
    piece *p = PC(self);
    p->out.len = p->arena.len = 0;
    p->n_recs = p->n_jobs = p->n_ops = 0;
    int rc = 0;
    int hashing = prev->n_jobs || prev->n_ops;
    self->ts = PyEval_SaveThread();
    if (hashing) {
        hash_start(self, prev);
    }
    while (rc == 0 && p->out.len < PIECE && (self->state != S_DONE || self->s_active)) {
        rc = step(self);
    }
    if (hashing && hash_wait(self) < 0 && rc == 0) {
        rc = no_memory(self);
    }
    if (rc < 0) {
        close_all(self);
    }
    PyEval_RestoreThread(self->ts);
    self->ts = NULL;
    self->busy = 0;
    prev->n_jobs = prev->n_ops = 0;
    if (rc < 0) {
        self->spent = 1;
        p->out.len = 0;
        return raise_failure(self);
    }
    if (publish_records(self, prev) < 0 || publish(self) < 0) {
        self->spent = 1;
        close_all(self);
        p->out.len = 0;
        return NULL;
    }
    return PyLong_FromSize_t(p->out.len);
}

static PyObject *Packer_close(Packer *self, PyObject *unused) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Packer.close while a fill is running");
        return NULL;
    }
    close_all(self);
    hasher_stop(self);
    self->spent = 1;
    Py_RETURN_NONE;
}

static int Packer_getbuffer(Packer *self, Py_buffer *view, int flags) {
    if (self->busy) {
        PyErr_SetString(PyExc_BufferError, "the piece is being filled");
        return -1;
    }
    bytebuf *out = &PC(self)->out;
    if (PyBuffer_FillInfo(view, (PyObject *)self, out->p ? out->p : "", (Py_ssize_t)out->len, 1,
                          flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void Packer_releasebuffer(Packer *self, Py_buffer *view) {
    self->exports--;
}

static PyBufferProcs Packer_as_buffer = {
    (getbufferproc)Packer_getbuffer,
    (releasebufferproc)Packer_releasebuffer,
};

static PyObject *Packer_get_entries(Packer *self, void *c) {
    return PyLong_FromLongLong(self->n_entries);
}

static PyObject *Packer_get_files(Packer *self, void *c) {
    return PyLong_FromLongLong(self->n_files);
}

static PyObject *Packer_get_bytes(Packer *self, void *c) {
    PyObject *hi = PyLong_FromUnsignedLongLong((unsigned long long)(self->n_bytes >> 64));
    PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)self->n_bytes);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *up = hi && shift ? PyNumber_Lshift(hi, shift) : NULL;
    PyObject *sum = up && lo ? PyNumber_Add(up, lo) : NULL;
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(shift);
    Py_XDECREF(up);
    return sum;
}

static PyMethodDef Packer_methods[] = {
    {"fill", (PyCFunction)Packer_fill, METH_NOARGS,
     "fill() -> int: build the next piece of the stream (0 at the end); the Packer is then a buffer holding it."},
    {"close", (PyCFunction)Packer_close, METH_NOARGS, "close(): close every descriptor; the Packer is spent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Packer_getset[] = {
    {"entries", (getter)Packer_get_entries, NULL, "entries below the root written so far", NULL},
    {"files", (getter)Packer_get_files, NULL, "regular files (not hard links) written so far", NULL},
    {"bytes", (getter)Packer_get_bytes, NULL, "their sizes, summed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PackerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tamer._cpack.Packer",
    .tp_basicsize = sizeof(Packer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The data part of a backup archive, read and hashed in C (see tamer.volumes.archive_pack).",
    .tp_new = Packer_new,
    .tp_init = (initproc)Packer_init,
    .tp_dealloc = (destructor)Packer_dealloc,
    .tp_traverse = (traverseproc)Packer_traverse,
    .tp_clear = (inquiry)Packer_clear,
    .tp_methods = Packer_methods,
    .tp_getset = Packer_getset,
    .tp_as_buffer = &Packer_as_buffer,
};

static struct PyModuleDef cpack_module = {
    PyModuleDef_HEAD_INIT, "tamer._cpack", "The backup archive's data part, written in C.", -1, NULL, NULL, NULL, NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__cpack(void) {
    if (PyType_Ready(&PackerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&cpack_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "native_blake3", TAMER_NATIVE_BLAKE3) < 0 ||
        PyModule_AddIntConstant(m, "PIECE", PIECE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&PackerType);
    if (PyModule_AddObject(m, "Packer", (PyObject *)&PackerType) < 0) {
        Py_DECREF(&PackerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
