/* tamer/_cpack_tree.c: the walk of the compiled backup writer (see _cpack.c): folders, entries, files read into
 * the piece, headers, xattrs and what each adds to the manifest. Runs without the GIL, but for the header
 * function of PAX headers (archive._header), which it takes the GIL back to call. */
#include "_cpack.h"

int bb_reserve(bytebuf *b, size_t extra) {
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

int bb_put(bytebuf *b, const void *data, size_t n) {
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
int grow(void **arr, size_t *cap, size_t n, size_t size) {
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

static void dir_drop(dirref *d) {
    if (d != NULL && --d->refs == 0) {
        close(d->fd);
        free(d);
    }
}


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

int pack_no_memory(Packer *self) {
    return fail(self, ENOMEM, "memory", "", 0);
}

/* ---- closing --------------------------------------------------------------------------------- */
static void drop_todos(todo *t, size_t n) {
    for (size_t k = 0; k < n; k++) {
        free(t[k].rel);
        dir_drop(t[k].parent);
    }
}

void pack_close(Packer *self) {
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
    if (self->proc_fd >= 0) {
        close(self->proc_fd);
        self->proc_fd = -1;
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
            return pack_no_memory(self);
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
            return pack_no_memory(self);
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
        return pack_no_memory(self);
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
                return pack_no_memory(self);
            }
        }
        if (v < 0) {
            continue;
        }
        uint32_t nl = (uint32_t)xl, vl = (uint32_t)v;
        if (bb_put(&self->xblob, &nl, sizeof nl) < 0 || bb_put(&self->xblob, x, xl) < 0 ||
            bb_put(&self->xblob, &vl, sizeof vl) < 0 || bb_put(&self->xblob, self->xval.p, (size_t)v) < 0) {
            return pack_no_memory(self);
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
        return pack_no_memory(self);
    }
    warning *w = &self->warns[self->n_warns];
    w->kind = kind;
    w->err = err;
    w->rel_off = PC(self)->arena.len;
    w->rel_len = len;
    w->real = real;
    w->size = size;
    if (bb_put(&PC(self)->arena, rel, len) < 0) {
        return pack_no_memory(self);
    }
    self->n_warns++;
    return 0;
}

static record *add_record(Packer *self, const char *rel, size_t len, unsigned long long size) {
    piece *p = PC(self);
    if (grow((void **)&p->recs, &p->recs_cap, p->n_recs, sizeof *p->recs) < 0) {
        pack_no_memory(self);
        return NULL;
    }
    record *r = &p->recs[p->n_recs];
    r->rel_off = p->arena.len;
    r->rel_len = len;
    r->size = size;
    r->job = -1;
    if (bb_put(&p->arena, rel, len) < 0) {
        pack_no_memory(self);
        return NULL;
    }
    p->n_recs++;
    self->n_files++;
    self->n_bytes += size;
    return r;
}

static int add_op(Packer *self, int kind, size_t off, size_t len, size_t rec) {
    piece *p = PC(self);
    if (grow((void **)&p->ops, &p->ops_cap, p->n_ops, sizeof *p->ops) < 0) {
        return pack_no_memory(self);
    }
    p->ops[p->n_ops++] = (hash_op){kind, off, len, rec};
    return 0;
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
        return pack_no_memory(self);
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
                return pack_no_memory(self);
            }
            self->name_offs[self->n_names++] = self->names.len;
            if (bb_put(&self->names, d->name, strlen(d->name) + 1) < 0) {
                return pack_no_memory(self);
            }
        }
    }
    const char *base = self->names.p;
    if (self->n_names > 1) { /* an empty folder has no arrays yet: qsort_r must not be handed NULL (UBSan) */
        qsort_r(self->name_offs, self->n_names, sizeof(size_t), by_bytes, &base);
    }
    return 0;
}

/* The folder self->cur is done: its subfolders wait on the stack, the first on top. */
static int folder_done(Packer *self) {
    for (size_t k = self->n_subs; k > 0; k--) {
        if (grow((void **)&self->stack, &self->stack_cap, self->n_stack, sizeof *self->stack) < 0) {
            return pack_no_memory(self);
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
        return pack_no_memory(self);
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
    return bb_put(&PC(self)->out, self->hdr.p, self->hdr.len) < 0 ? pack_no_memory(self) : 0;
}

static int zero_pad(Packer *self, unsigned long long size) {
    size_t pad = (size_t)((BLOCK - size % BLOCK) % BLOCK);
    bytebuf *out = &PC(self)->out;
    if (bb_reserve(out, pad) < 0) {
        return pack_no_memory(self);
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

/* The regular file the entry's O_PATH descriptor `pfd` holds (entry() took it in place of a stat, and
 * fstat said regular), opened for reading; -2 on an error (recorded).
 * Why O_PATH: opening is itself an action on what a running user put there. A FIFO or a device node (a
 * container with CAP_MKNOD makes one in its volume: /dev/watchdog's numbers arm the host's watchdog when
 * opened, a tape device rewinds) swapped in between a stat and a plain open by name would be opened as
 * root, checked only afterwards. An O_PATH descriptor opens nothing (no driver's open, no FIFO's); the
 * stat is of that descriptor, and only a regular file's same inode is opened for reading, through
 * /proc/self/fd (never by its name again, so nothing can be swapped in between). Taking the O_PATH
 * descriptor instead of the listing's fstatat keeps this to one path lookup per file, as before. */
static int open_listed(Packer *self, int pfd) {
    /* the path walk to /proc/self/fd once per Packer, not once per file */
    if (self->proc_fd < 0 && (self->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fail(self, errno, "opening /proc/self/fd to open", self->rel.p, self->rel.len);
        return -2;
    }
    char num[24];
    snprintf(num, sizeof num, "%d", pfd);
    int fd = openat(self->proc_fd, num, FILE_FLAGS & ~O_NOFOLLOW);
    if (fd < 0) { /* the inode is held: no race makes this fail; EACCES as a non-root user, or no /proc */
        fail(self, errno, "opening", self->rel.p, self->rel.len);
        return -2;
    }
    return fd;
}

static int shrank(Packer *self, const char *rel, size_t len, unsigned long long real, unsigned long long size) {
    return real < size ? add_warning(self, W_SHRANK, 0, rel, len, real, size) : 0;
}

static int regular_file(Packer *self, const char *name, const struct stat *st, int pfd) {
    unsigned long long size = (unsigned long long)st->st_size;
    int fd = open_listed(self, pfd);
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
            return pack_no_memory(self);
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
        return pack_no_memory(self);
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
            return pack_no_memory(self);
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
        return pack_no_memory(self);
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
            *failed = pack_no_memory(self);
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
        *failed = pack_no_memory(self);
        return NULL;
    }
    memcpy(copy, self->name.p, self->name.len);
    self->links[j] = (linkseen){dev, ino, copy, self->name.len};
    self->n_links++;
    return NULL;
}

static int listed_entry(Packer *self, const char *name, size_t nl, const struct stat *stp, int pfd);

/* One entry of the folder being written, as _scan yields it and emit_batch writes it. */
static int entry(Packer *self, const char *name) {
    size_t nl = strlen(name);
    self->rel.len = 0;
    if (self->cur_len && (bb_put(&self->rel, self->cur_rel, self->cur_len) < 0 || bb_put(&self->rel, "/", 1) < 0)) {
        return pack_no_memory(self);
    }
    if (bb_put(&self->rel, name, nl) < 0 || bb_put(&self->rel, "", 1) < 0) {
        return pack_no_memory(self);
    }
    self->rel.len--; /* NUL-terminated, not counted */
    self->name.len = 0;
    if (bb_put(&self->name, self->prefix, self->prefix_len) < 0 || bb_put(&self->name, "/", 1) < 0 ||
        bb_put(&self->name, self->rel.p, self->rel.len) < 0) {
        return pack_no_memory(self);
    }
    /* an O_PATH descriptor in place of fstatat (the same one path lookup; O_NOFOLLOW: a link's own), so a
     * regular file is then opened as the very inode stat described: see open_listed */
    int pfd = openat(self->cur->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) {
        if (errno == ENOENT) {
            return 0; /* removed since the folder was listed */
        }
        return fail(self, errno, "stat", self->rel.p, self->rel.len);
    }
    struct stat st;
    if (fstat(pfd, &st) != 0) {
        int err = errno;
        close(pfd);
        return fail(self, err, "stat", self->rel.p, self->rel.len);
    }
    int rc = listed_entry(self, name, nl, &st, pfd);
    close(pfd);
    return rc;
}

/* entry()'s rest: the entry `name` (length nl) as `st` describes it; `pfd` holds it (O_PATH). */
static int listed_entry(Packer *self, const char *name, size_t nl, const struct stat *stp, int pfd) {
    struct stat st = *stp;
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
        return regular_file(self, name, &st, pfd);
    }
    if (S_ISDIR(st.st_mode)) {
        if (grow((void **)&self->subs, &self->subs_cap, self->n_subs, sizeof *self->subs) < 0) {
            return pack_no_memory(self);
        }
        char *rel = malloc(self->rel.len + 1);
        if (rel == NULL) {
            return pack_no_memory(self);
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
                return pack_no_memory(self);
            }
            n = readlinkat(self->cur->fd, name, self->link.p, self->link.cap);
            if (n < 0 || (size_t)n < self->link.cap) {
                break;
            }
            self->link.len = self->link.cap; /* truncated: twice the room */
            if (bb_reserve(&self->link, 1) < 0) {
                return pack_no_memory(self);
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
        return pack_no_memory(self);
    }
    d->fd = self->root_fd;
    d->refs = 1;
    self->root_fd = -1;
    self->cur = d;
    self->cur_rel = NULL;
    self->cur_len = 0;
    self->rel.len = 0;
    if (bb_put(&self->rel, "", 1) < 0) {
        return pack_no_memory(self);
    }
    self->rel.len = 0;
    if (collect_xattrs(self, d->fd, "") < 0 ||
        build_header(self, self->prefix, self->prefix_len, &m, '5', "", 0) < 0 || put_header(self) < 0) {
        return -1;
    }
    self->state = S_FOLDER;
    return list_folder(self);
}

int pack_step(Packer *self) {
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

