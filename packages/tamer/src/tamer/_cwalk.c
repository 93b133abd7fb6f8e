/* tamer._cwalk: the inner loop of tamer.treewalk.walk, in C.
 *
 * Why: the walk is most of a warm `tamer df` or `tamer plan`, and Python's per-entry cost (a
 * DirEntry, a stat_result, attribute lookups) made it about twice du's CPU per file. This does
 * exactly what the Python walk does, entry for entry (tamer.treewalk.walk_python is the reference and a
 * test requires equal figures on the same trees, against du as well), with openat/getdents64/
 * fstatat: folders as file descriptors, entries stat'ed relative to them, never following a
 * symlink below the root.
 *
 * walk(path, recurse, root_dev, skip, follow, want_subdirs)
 *   path: str; recurse: bool; root_dev: int (-1: any device); skip: a frozenset of str paths
 *   never entered; follow: open `path` even through a symlink; want_subdirs: when not recursing,
 *   return the folders met.
 * returns (apparent, allocated, files, vanished, unreadable, links, subdirs)
 *   links: a list of (dev, ino, size, allocated) for files with more than one link (counted once
 *   by the caller); subdirs: a list of str, or None.
 * Raises OSError where the Python walk would (a folder that cannot be read for a reason other than
 * being gone or a permission); an entry that cannot be stat'ed counts as unreadable (once a folder).
 *
 * Folders are listed with the getdents64 system call into one buffer kept for the whole walk, not
 * through opendir/readdir: glibc's fdopendir costs an fstat and two fcntl calls per folder and a
 * 32 KiB buffer of its own, which showed in the kernel time of a walk of many small folders. The
 * type the listing gives (d_type) is not used at all: every entry is fstatat'ed (its size, blocks,
 * links and device come from there), so filesystems that give DT_UNKNOWN walk the same.
 *
 * Batches: a buffer's worth of entries is listed and stat'ed with the GIL let go (system calls only,
 * no Python object touched), then counted with the GIL held. `tamer serve` refreshes on a thread while
 * it answers scrapes on another: the GIL is free for the whole of each batch's system calls, and taken
 * back once a batch instead of twice an entry (which cost user time of its own on every entry).
 *
 * Open folders: a folder is listed to its end before any subfolder of it is opened, and stays open
 * (its descriptor alone) only while subfolders of it wait to be opened relative to it, so at most one
 * per level of the tree is open at once, never one per waiting folder (a folder of 100,000
 * subfolders would otherwise exhaust the default limit of 1,024 open files).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define TOP_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)
#define DIR_FLAGS (TOP_FLAGS | O_NOFOLLOW)

/* 32 KiB, as glibc's readdir: 16, 32 and 64 KiB measured the same on the bench host's volumes (folders of up
 * to 1,000 entries), and 256 KiB cost some 20% more CPU on a folder of 100,000 files (a batch is stat'ed
 * after it is listed: the bigger the batch, the colder its entries by then). The records of one batch are
 * bounded by the smallest entry getdents64 writes (24 bytes). */
#define LISTING_BYTES (32 * 1024)
#define SMALLEST_ENTRY 24
#define BATCH_ENTRIES (LISTING_BYTES / SMALLEST_ENTRY + 1)

/* what getdents64 writes (the kernel's struct linux_dirent64; glibc has no wrapper before 2.30) */
typedef struct {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
} listed;

/* one listed entry and what fstatat said of it */
typedef struct {
    const char *name; /* in the listing buffer: valid until the next batch is listed */
    int err;          /* 0, or fstatat's errno */
    int is_dir;
    unsigned long long dev, ino;
    long long size, blocks, nlink;
} entry;

typedef struct {
    char *listing;  /* LISTING_BYTES */
    entry *entries; /* BATCH_ENTRIES */
} scratch;

/* One scratch for the walks of this process, the common case, taken and given back under the GIL;
 * a second walk at the same time (two threads) gets its own. Kept between walks: a worker walks a
 * task at a time, and a fresh 200 KiB each time costs page faults of its own. */
static scratch kept = {NULL, NULL};
static int kept_busy = 0;

static int take_scratch(scratch *s) {
    if (!kept_busy && kept.listing != NULL) {
        kept_busy = 1;
        *s = kept;
        return 0;
    }
    s->listing = PyMem_RawMalloc(LISTING_BYTES);
    s->entries = PyMem_RawMalloc(BATCH_ENTRIES * sizeof(entry));
    if (s->listing == NULL || s->entries == NULL) {
        PyMem_RawFree(s->listing);
        PyMem_RawFree(s->entries);
        PyErr_NoMemory();
        return -1;
    }
    if (!kept_busy && kept.listing == NULL) {
        kept = *s;
        kept_busy = 1;
    }
    return 0;
}

static void give_back(scratch *s) {
    if (kept_busy && s->listing == kept.listing) {
        kept_busy = 0;
        return;
    }
    PyMem_RawFree(s->listing);
    PyMem_RawFree(s->entries);
}

/* a folder kept open while subfolders of it wait to be opened relative to it */
typedef struct {
    int fd;
    size_t waiting;
} held;

typedef struct {
    held *parent;
    char *path;     /* the folder's path, ending with '/' */
    size_t len;     /* strlen(path) */
    size_t name_at; /* where its name (in `parent`) starts in `path` */
} pending;

typedef struct {
    pending *items;
    size_t len, cap;
} stack;

static int push(stack *s, held *parent, char *path, size_t len, size_t name_at) {
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        pending *items = PyMem_Realloc(s->items, cap * sizeof(pending));
        if (items == NULL) {
            return -1;
        }
        s->items = items;
        s->cap = cap;
    }
    pending *p = &s->items[s->len++];
    p->parent = parent;
    p->path = path;
    p->len = len;
    p->name_at = name_at;
    parent->waiting++;
    return 0;
}

/* one subfolder less waits on `h`: close it when none does */
static void release(held *h) {
    if (--h->waiting == 0) {
        close(h->fd);
        PyMem_Free(h);
    }
}

typedef struct {
    long long apparent, allocated, files, vanished, unreadable;
} totals;

/* List the next batch of the open folder `fd` into `s` and fstatat each entry ('.' and '..' left out).
 * No Python object is touched: runs with the GIL let go. Returns the number of entries (0 with
 * *end set: the folder is listed to its end), or -1 with errno set. */
static long list_batch(int fd, scratch *s, int *end) {
    long got = syscall(SYS_getdents64, fd, s->listing, LISTING_BYTES);
    if (got <= 0) {
        /* ENOENT: the folder was removed since it was opened; glibc's readdir (and so the Python
         * walk's scandir) ends the listing there, as POSIX asks */
        if (got == 0 || errno == ENOENT) {
            *end = 1;
            return 0;
        }
        return -1;
    }
    long n = 0;
    for (long at = 0; at < got;) {
        listed *d = (listed *)(s->listing + at);
        at += d->d_reclen;
        const char *name = d->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
            continue;
        }
        entry *e = &s->entries[n++];
        struct stat sb;
        e->name = name;
        if (fstatat(fd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            e->err = errno;
            continue;
        }
        e->err = 0;
        e->is_dir = S_ISDIR(sb.st_mode);
        e->dev = (unsigned long long)sb.st_dev;
        e->ino = (unsigned long long)sb.st_ino;
        e->size = (long long)sb.st_size;
        e->blocks = (long long)sb.st_blocks;
        e->nlink = (long long)sb.st_nlink;
    }
    return n;
}

/* path + name + '/', and its length */
static char *child_path(const char *path, size_t plen, const char *name, size_t *len) {
    size_t nlen = strlen(name);
    char *out = PyMem_Malloc(plen + nlen + 2);
    if (out == NULL) {
        return NULL;
    }
    memcpy(out, path, plen);
    memcpy(out + plen, name, nlen);
    out[plen + nlen] = '/';
    out[plen + nlen + 1] = '\0';
    *len = plen + nlen + 1;
    return out;
}

/* Read the open folder `fd` (at `path`, ending with '/'): count its entries, and push its subfolders
 * (when recursing) or list them (when asked). Takes `fd`. Returns 0, or -1 with a Python error set. */
static int read_folder(int fd, const char *path, int recurse, long long root_dev, PyObject *skip, PyObject *links,
                       PyObject *subdirs, stack *st, scratch *s, totals *t) {
    held *self = PyMem_Malloc(sizeof(held));
    if (self == NULL) {
        close(fd);
        PyErr_NoMemory();
        return -1;
    }
    self->fd = fd;
    self->waiting = 1; /* this reading holds it too; released at the end */
    size_t plen = strlen(path);
    int failed = 0;
    int denied = 0; /* an entry here could not be stat'ed (counted once) */
    int end = 0;
    while (!end && !failed) {
        long n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = list_batch(fd, s, &end);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            errno = err;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
            failed = 1;
            break;
        }
        for (long i = 0; i < n; i++) {
            const entry *e = &s->entries[i];
            if (e->err != 0) {
                if (e->err == ENOENT) {
                    t->vanished++;
                } else if (!denied) {
                    /* listed but not stat'able: a folder readable but not searchable (mode 644), a FUSE
                     * mount another user made, a dead network mount. Not measured, and not the end of the
                     * walk (du says so and goes on); counted once per folder, as the Python walk does */
                    t->unreadable++;
                    denied = 1;
                }
                continue;
            }
            if (e->is_dir) {
                if (root_dev != -1 && (long long)e->dev != root_dev) {
                    continue; /* a mount point (running container, bind volume) */
                }
                size_t clen;
                char *child = child_path(path, plen, e->name, &clen);
                if (child == NULL) {
                    PyErr_NoMemory();
                    failed = 1;
                    break;
                }
                if (PySet_GET_SIZE(skip) > 0) {
                    PyObject *key = PyUnicode_DecodeFSDefaultAndSize(child, (Py_ssize_t)clen - 1);
                    int hit = key == NULL ? -1 : PySet_Contains(skip, key);
                    Py_XDECREF(key);
                    if (hit != 0) { /* excluded, or an error */
                        PyMem_Free(child);
                        if (hit < 0) {
                            failed = 1;
                            break;
                        }
                        continue;
                    }
                }
                t->allocated += e->blocks * 512;
                if (recurse) {
                    if (push(st, self, child, clen, plen) < 0) {
                        PyMem_Free(child);
                        PyErr_NoMemory();
                        failed = 1;
                        break;
                    }
                    continue;
                }
                if (subdirs != Py_None) {
                    PyObject *p = PyUnicode_DecodeFSDefaultAndSize(child, (Py_ssize_t)clen - 1);
                    if (p == NULL || PyList_Append(subdirs, p) < 0) {
                        Py_XDECREF(p);
                        PyMem_Free(child);
                        failed = 1;
                        break;
                    }
                    Py_DECREF(p);
                }
                PyMem_Free(child);
                continue;
            }
            if (e->nlink > 1) {
                PyObject *tup = Py_BuildValue("(KKLL)", e->dev, e->ino, e->size, e->blocks * 512);
                if (tup == NULL || PyList_Append(links, tup) < 0) {
                    Py_XDECREF(tup);
                    failed = 1;
                    break;
                }
                Py_DECREF(tup);
                continue;
            }
            t->apparent += e->size;
            t->allocated += e->blocks * 512;
            t->files++;
        }
    }
    release(self); /* closed now unless subfolders of it wait */
    return failed ? -1 : 0;
}

static PyObject *walk(PyObject *self, PyObject *args) {
    PyObject *path_obj, *skip;
    int recurse, follow, want_subdirs;
    long long root_dev;
    if (!PyArg_ParseTuple(args, "O&pLOpp", PyUnicode_FSConverter, &path_obj, &recurse, &root_dev, &skip, &follow,
                          &want_subdirs)) {
        return NULL;
    }
    if (!PyAnySet_Check(skip)) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_TypeError, "skip must be a set or frozenset of str paths");
        return NULL;
    }
    totals t = {0, 0, 0, 0, 0};
    PyObject *links = PyList_New(0);
    PyObject *subdirs = (want_subdirs && !recurse) ? PyList_New(0) : (Py_INCREF(Py_None), Py_None);
    stack st = {NULL, 0, 0};
    scratch s = {NULL, NULL};
    PyObject *result = NULL;
    char *rootpath = NULL;
    if (links == NULL || subdirs == NULL || take_scratch(&s) < 0) {
        goto done;
    }
    const char *root = PyBytes_AS_STRING(path_obj);
    int top, err = 0;
    /* the GIL is let go around every system call (a batch of them at a time when listing): `tamer serve`
     * refreshes on a thread while it answers scrapes on another, and a walk must not stop them */
    Py_BEGIN_ALLOW_THREADS
    top = open(root, follow ? TOP_FLAGS : DIR_FLAGS);
    err = errno;
    Py_END_ALLOW_THREADS
    if (top < 0) {
        if (err == ENOENT || err == ENOTDIR || err == ELOOP) {
            t.vanished++;
        } else if (err == EACCES || err == EPERM) {
            t.unreadable++;
        } else {
            errno = err;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, root);
            goto done;
        }
        goto build;
    }
    size_t rl = strlen(root);
    rootpath = PyMem_Malloc(rl + 2);
    if (rootpath == NULL) {
        close(top);
        PyErr_NoMemory();
        goto done;
    }
    memcpy(rootpath, root, rl + 1);
    if (rl == 0 || root[rl - 1] != '/') {
        rootpath[rl] = '/';
        rootpath[rl + 1] = '\0';
    }
    if (read_folder(top, rootpath, recurse, root_dev, skip, links, subdirs, &st, &s, &t) < 0) {
        goto done;
    }
    while (st.len > 0) {
        pending p = st.items[--st.len];
        int cfd;
        int pfd = p.parent->fd;
        p.path[p.len - 1] = '\0'; /* its name alone, for openat */
        Py_BEGIN_ALLOW_THREADS
        cfd = openat(pfd, p.path + p.name_at, DIR_FLAGS);
        err = errno;
        Py_END_ALLOW_THREADS
        p.path[p.len - 1] = '/';
        release(p.parent);
        if (cfd < 0) {
            if (err == ENOENT || err == ENOTDIR || err == ELOOP) {
                t.vanished++;
            } else if (err == EACCES || err == EPERM) {
                t.unreadable++;
            } else {
                errno = err;
                PyErr_SetFromErrnoWithFilename(PyExc_OSError, p.path);
                PyMem_Free(p.path);
                goto done;
            }
            PyMem_Free(p.path);
            continue;
        }
        int rc = read_folder(cfd, p.path, recurse, root_dev, skip, links, subdirs, &st, &s, &t);
        PyMem_Free(p.path);
        if (rc < 0) {
            goto done;
        }
    }
build:
    result = Py_BuildValue("(LLLLLOO)", t.apparent, t.allocated, t.files, t.vanished, t.unreadable, links, subdirs);
done:
    while (st.len > 0) { /* an error left subfolders waiting: let their folders go */
        pending p = st.items[--st.len];
        release(p.parent);
        PyMem_Free(p.path);
    }
    if (s.listing != NULL) {
        give_back(&s);
    }
    PyMem_Free(st.items);
    PyMem_Free(rootpath);
    Py_XDECREF(links);
    Py_XDECREF(subdirs);
    Py_DECREF(path_obj);
    return result;
}

/* end_with_parent(parent_pid) -> bool, in a worker of tamer.forkpool just forked: ignore Ctrl-C (the
 * parent stops the walk and says so), be SIGKILLed when the thread that forked it ends (a `tamer df`
 * SIGKILLed by a timer left its workers behind, blocked on their pipes), and say whether `parent` is
 * still its parent (if not, it ended before the prctl and nobody will read this worker's answers).
 * In C, not ctypes: importing ctypes in each worker cost ~2.5 ms before its first task. */
static PyObject *end_with_parent(PyObject *self, PyObject *arg) {
    long parent = PyLong_AsLong(arg);
    if (parent == -1 && PyErr_Occurred()) {
        return NULL;
    }
    signal(SIGINT, SIG_IGN);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    return PyBool_FromLong(getppid() == (pid_t)parent);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "walk(path, recurse, root_dev, skip, follow, want_subdirs): see the module source."},
    {"end_with_parent", end_with_parent, METH_O, "end_with_parent(parent_pid): see the module source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tamer._cwalk", "tamer.treewalk.walk's inner loop in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cwalk(void) { return PyModule_Create(&module); }
