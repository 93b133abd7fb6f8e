/* tamer/_cpack.h: what the two halves of the compiled backup writer share (see _cpack.c): the Packer and
 * its pieces, and the few functions one half calls in the other. */
#ifndef TAMER_CPACK_H
#define TAMER_CPACK_H

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


/* An open folder, shared by the folders that wait to be opened from it. */
typedef struct {
    int fd;
    int refs;
} dirref;

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
    int proc_fd; /* /proc/self/fd, opened on first use: regular files are opened for reading through it */
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

static inline piece *PC(Packer *self) {
    return &self->pc[self->pcur];
}

/* _cpack_tree.c: growable buffers and arrays (-1 when memory ran out) */
int bb_reserve(bytebuf *b, size_t extra);
int bb_put(bytebuf *b, const void *data, size_t n);
int grow(void **arr, size_t *cap, size_t n, size_t size);
/* _cpack_tree.c, without the GIL: records ENOMEM as the failure and returns -1 */
int pack_no_memory(Packer *self);
/* _cpack_tree.c, without the GIL: the next entry, file part or folder of the walk into the piece being filled;
 * 0, or -1 with the failure recorded (self->err_no and err_path, or a Python exception in exc_*) */
int pack_step(Packer *self);
/* _cpack_tree.c: closes every descriptor; the walk is over */
void pack_close(Packer *self);

#endif
