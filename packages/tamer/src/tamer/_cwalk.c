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
 * Raises OSError where the Python walk would (an entry that cannot be stat'ed for a reason other
 * than being gone).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOP_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)
#define DIR_FLAGS (TOP_FLAGS | O_NOFOLLOW)

typedef struct {
    int fd;
    char *path; /* ends with '/' */
} frame;

typedef struct {
    frame *items;
    size_t len, cap;
} stack;

static int push(stack *s, int fd, char *path) {
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        frame *items = PyMem_Realloc(s->items, cap * sizeof(frame));
        if (items == NULL) {
            return -1;
        }
        s->items = items;
        s->cap = cap;
    }
    s->items[s->len].fd = fd;
    s->items[s->len].path = path;
    s->len++;
    return 0;
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
    long long apparent = 0, allocated = 0, files = 0, vanished = 0, unreadable = 0;
    PyObject *links = PyList_New(0);
    PyObject *subdirs = (want_subdirs && !recurse) ? PyList_New(0) : (Py_INCREF(Py_None), Py_None);
    stack st = {NULL, 0, 0};
    PyObject *result = NULL;
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
            vanished++;
        } else if (err == EACCES || err == EPERM) {
            unreadable++;
        } else {
            errno = err;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, root);
            goto done;
        }
        goto build;
    }
    size_t rl = strlen(root);
    char *rootpath = PyMem_Malloc(rl + 2);
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
    if (push(&st, top, rootpath) < 0) {
        close(top);
        PyMem_Free(rootpath);
        PyErr_NoMemory();
        goto done;
    }
    while (st.len > 0) {
        frame f = st.items[--st.len];
        DIR *d = fdopendir(f.fd);
        if (d == NULL) {
            err = errno; /* before close(), which may change it */
            close(f.fd);
            if (err == EACCES || err == EPERM) {
                unreadable++;
                PyMem_Free(f.path);
                continue;
            }
            errno = err;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, f.path);
            PyMem_Free(f.path);
            goto done;
        }
        int dfd = dirfd(d);
        struct dirent *e;
        int failed = 0;
        for (;;) {
            Py_BEGIN_ALLOW_THREADS
            errno = 0;
            e = readdir(d);
            err = errno;
            Py_END_ALLOW_THREADS
            if (e == NULL) {
                if (err != 0) {
                    errno = err;
                    PyErr_SetFromErrnoWithFilename(PyExc_OSError, f.path);
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
                    vanished++;
                    continue;
                }
                errno = err;
                char *full = join(f.path, name, 0);
                PyErr_SetFromErrnoWithFilename(PyExc_OSError, full ? full : f.path);
                PyMem_Free(full);
                failed = 1;
                break;
            }
            if (S_ISDIR(sb.st_mode)) {
                char *child = join(f.path, name, 0);
                if (child == NULL) {
                    PyErr_NoMemory();
                    failed = 1;
                    break;
                }
                int skipped = root_dev != -1 && (long long)sb.st_dev != root_dev;
                if (!skipped && PyAnySet_Check(skip) && PySet_GET_SIZE(skip) > 0) {
                    PyObject *key = PyUnicode_DecodeFSDefault(child);
                    if (key == NULL) {
                        PyMem_Free(child);
                        failed = 1;
                        break;
                    }
                    int hit = PySet_Contains(skip, key);
                    Py_DECREF(key);
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
                allocated += (long long)sb.st_blocks * 512;
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
                int cfd;
                Py_BEGIN_ALLOW_THREADS
                cfd = openat(dfd, name, DIR_FLAGS);
                err = errno;
                Py_END_ALLOW_THREADS
                if (cfd < 0) {
                    if (err == ENOENT || err == ENOTDIR || err == ELOOP) {
                        vanished++;
                    } else if (err == EACCES || err == EPERM) {
                        unreadable++;
                    } else {
                        errno = err;
                        char *full = join(f.path, name, 0);
                        PyErr_SetFromErrnoWithFilename(PyExc_OSError, full ? full : f.path);
                        PyMem_Free(full);
                        failed = 1;
                        break;
                    }
                    continue;
                }
                char *cpath = join(f.path, name, 1);
                if (cpath == NULL || push(&st, cfd, cpath) < 0) {
                    close(cfd);
                    PyMem_Free(cpath);
                    PyErr_NoMemory();
                    failed = 1;
                    break;
                }
                continue;
            }
            if (sb.st_nlink > 1) {
                PyObject *t = Py_BuildValue("(KKLL)", (unsigned long long)sb.st_dev, (unsigned long long)sb.st_ino,
                                            (long long)sb.st_size, (long long)sb.st_blocks * 512);
                if (t == NULL || PyList_Append(links, t) < 0) {
                    Py_XDECREF(t);
                    failed = 1;
                    break;
                }
                Py_DECREF(t);
                continue;
            }
            apparent += (long long)sb.st_size;
            allocated += (long long)sb.st_blocks * 512;
            files++;
        }
        closedir(d);
        PyMem_Free(f.path);
        if (failed) {
            goto done;
        }
    }
build:
    result = Py_BuildValue("(LLLLLOO)", apparent, allocated, files, vanished, unreadable, links, subdirs);
done:
    while (st.len > 0) { /* an error left folders open */
        frame f = st.items[--st.len];
        close(f.fd);
        PyMem_Free(f.path);
    }
    PyMem_Free(st.items);
    Py_XDECREF(links);
    Py_XDECREF(subdirs);
    Py_DECREF(path_obj);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "walk(path, recurse, root_dev, skip, follow, want_subdirs): see the module source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tamer._cwalk", "tamer.sizes._walk's inner loop in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cwalk(void) { return PyModule_Create(&module); }
