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
 * opened, let alone read (O_PATH, fstat, then the same inode through /proc/self/fd: _cpack_tree.c open_listed;
 * the reference opens it and checks afterwards); a symlink removed or
 * replaced between its stat and its readlink is left out (the reference fails the backup); the root's
 * xattrs are read from the opened folder (the reference reads them from the root's path without
 * following a link).
 *
 * Files: this one holds the Python type, the hashing thread and the records' way into Python;
 * _cpack_tree.c the walk (folders, entries, reading, headers, xattrs); _cpack.h what both share.
 */
#include "_cpack.h"

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
    pack_close(self);
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
        self->root_fd = self->s_fd = self->proc_fd = -1;
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
        rc = pack_step(self);
    }
    if (hashing && hash_wait(self) < 0 && rc == 0) {
        rc = pack_no_memory(self);
    }
    if (rc < 0) {
        pack_close(self);
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
        pack_close(self);
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
    pack_close(self);
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
