/* tamer._cwalk: the inner loop of tamer.sizes._walk, in C.
 *
 * Why: the walk is most of a warm `tamer df` or `tamer plan`, and Python's per-entry cost (a
 * DirEntry, a stat_result, attribute lookups) made it about twice du's CPU per file. This does
 * exactly what the Python walk does, entry for entry (tamer.sizes._walk is the reference and a
 * test requires equal figures on the same trees, against du as well), with openat/fdopendir/
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
 * Open folders: a folder stays open only while subfolders of it wait to be opened relative to it,
 * so at most one per level of the tree is open at once, never one per waiting folder (a folder of
 * 100,000 subfolders would otherwise exhaust the default limit of 1,024 open files).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define TOP_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)
#define DIR_FLAGS (TOP_FLAGS | O_NOFOLLOW)

/* a folder kept open while subfolders of it wait to be opened relative to it */
typedef struct {
    DIR *dir;
    size_t waiting;
} held;

typedef struct {
    held *parent;
    char *name;
    char *path; /* ends with '/' */
} pending;

typedef struct {
    pending *items;
    size_t len, cap;
} stack;

static int push(stack *s, held *parent, char *name, char *path) {
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        pending *items = PyMem_Realloc(s->items, cap * sizeof(pending));
        if (items == NULL) {
            return -1;
        }
        s->items = items;
        s->cap = cap;
    }
    s->items[s->len].parent = parent;
    s->items[s->len].name = name;
    s->items[s->len].path = path;
    s->len++;
    parent->waiting++;
    return 0;
}

/* one subfolder less waits on `h`: close it when none does */
static void release(held *h) {
    if (--h->waiting == 0) {
        closedir(h->dir);
        PyMem_Free(h);
    }
}

static char *join(const char *dir, const char *name, int slash) {
    size_t a = strlen(dir), b = strlen(name);
    char *out = PyMem_Malloc(a + b + 2);
    if (out == NULL) {
        return NULL;
    }
    memcpy(out, dir, a);
    memcpy(out + a, name, b);
    if (slash) {
        out[a + b] = '/';
        out[a + b + 1] = '\0';
    } else {
        out[a + b] = '\0';
    }
    return out;
}

typedef struct {
    long long apparent, allocated, files, vanished, unreadable;
} totals;

/* Read the open folder `fd` (at `path`, ending with '/'): count its entries, and push its subfolders
 * (when recursing) or list them (when asked). Takes `fd`. Returns 0, or -1 with a Python error set. */
static int read_folder(int fd, const char *path, int recurse, long long root_dev, PyObject *skip, PyObject *links,
                       PyObject *subdirs, stack *st, totals *t) {
    int err = 0;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        err = errno; /* before close(), which may change it */
        close(fd);
        if (err == EACCES || err == EPERM) {
            t->unreadable++;
            return 0;
        }
        errno = err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    held *self = PyMem_Malloc(sizeof(held));
    if (self == NULL) {
        closedir(d);
        PyErr_NoMemory();
        return -1;
    }
    self->dir = d;
    self->waiting = 1; /* this reading holds it too; released at the end */
    int dfd = dirfd(d);
    int failed = 0;
    int denied = 0; /* an entry here could not be stat'ed (counted once) */
    for (;;) {
        struct dirent *e;
        Py_BEGIN_ALLOW_THREADS
        errno = 0;
        e = readdir(d);
        err = errno;
        Py_END_ALLOW_THREADS
        if (e == NULL) {
            if (err != 0) {
                errno = err;
                PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
                failed = 1;
            }
            break;
        }
        const char *name = e->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
            continue;
        }
        struct stat sb;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW);
        err = errno;
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            if (err == ENOENT) {
                t->vanished++;
            } else if (!denied) {
                /* listed but not stat'able: a folder readable but not searchable (mode 644), a FUSE mount
                 * another user made, a dead network mount. Not measured, and not the end of the walk (du
                 * says so and goes on); counted once per folder, as the Python walk does */
                t->unreadable++;
                denied = 1;
            }
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            char *child = join(path, name, 0);
            if (child == NULL) {
                PyErr_NoMemory();
                failed = 1;
                break;
            }
            int skipped = root_dev != -1 && (long long)sb.st_dev != root_dev;
            if (!skipped && PySet_GET_SIZE(skip) > 0) {
                PyObject *key = PyUnicode_DecodeFSDefault(child);
                int hit = key == NULL ? -1 : PySet_Contains(skip, key);
                Py_XDECREF(key);
                if (hit < 0) {
                    PyMem_Free(child);
                    failed = 1;
                    break;
                }
                skipped = hit;
            }
            if (skipped) { /* a mount point (running container, bind volume) or excluded */
                PyMem_Free(child);
                continue;
            }
            t->allocated += (long long)sb.st_blocks * 512;
            if (!recurse) {
                if (subdirs != Py_None) {
                    PyObject *p = PyUnicode_DecodeFSDefault(child);
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
            PyMem_Free(child);
            char *cname = join("", name, 0);
            char *cpath = join(path, name, 1);
            if (cname == NULL || cpath == NULL || push(st, self, cname, cpath) < 0) {
                PyMem_Free(cname);
                PyMem_Free(cpath);
                PyErr_NoMemory();
                failed = 1;
                break;
            }
            continue;
        }
        if (sb.st_nlink > 1) {
            PyObject *tup = Py_BuildValue("(KKLL)", (unsigned long long)sb.st_dev, (unsigned long long)sb.st_ino,
                                          (long long)sb.st_size, (long long)sb.st_blocks * 512);
            if (tup == NULL || PyList_Append(links, tup) < 0) {
                Py_XDECREF(tup);
                failed = 1;
                break;
            }
            Py_DECREF(tup);
            continue;
        }
        t->apparent += (long long)sb.st_size;
        t->allocated += (long long)sb.st_blocks * 512;
        t->files++;
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
    PyObject *result = NULL;
    char *rootpath = NULL;
    if (links == NULL || subdirs == NULL) {
        goto done;
    }
    const char *root = PyBytes_AS_STRING(path_obj);
    int top, err = 0;
    /* the GIL is let go around every system call: `tamer serve` refreshes on a thread while it
     * answers scrapes on another, and a walk must not stop them for its whole length */
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
    if (read_folder(top, rootpath, recurse, root_dev, skip, links, subdirs, &st, &t) < 0) {
        goto done;
    }
    while (st.len > 0) {
        pending p = st.items[--st.len];
        int cfd;
        int pfd = dirfd(p.parent->dir);
        Py_BEGIN_ALLOW_THREADS
        cfd = openat(pfd, p.name, DIR_FLAGS);
        err = errno;
        Py_END_ALLOW_THREADS
        release(p.parent);
        PyMem_Free(p.name);
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
        int rc = read_folder(cfd, p.path, recurse, root_dev, skip, links, subdirs, &st, &t);
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
        PyMem_Free(p.name);
        PyMem_Free(p.path);
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
    PyModuleDef_HEAD_INIT, "tamer._cwalk", "tamer.sizes._walk's inner loop in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cwalk(void) { return PyModule_Create(&module); }
