/* MPI process group, broadcasts and allreduce: the data-parallel plumbing. */
#include "legr/dist.h"

#include <mpi.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* MPI counts are ints: move large buffers in chunks of 1 GiB. */
#define CHUNK_BYTES ((size_t)1 << 30)

static void abort_job(int code)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Abort(MPI_COMM_WORLD, code);
}

void dist_init(int *argc, char ***argv, Dist *d)
{
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    legr_set_fail_hook(abort_job);
}

void dist_finalize(void) { MPI_Finalize(); }

/* A collective's ctx: NULL for all ranks, else the DistGroup whose communicator it sums over. */
struct DistGroup {
    MPI_Comm comm;
};

static MPI_Comm comm_of(void *ctx)
{
    return ctx ? ((DistGroup *)ctx)->comm : MPI_COMM_WORLD;
}

static void sum_floats(float *buf, size_t n, void *ctx)
{
    for (size_t off = 0; off < n; off += CHUNK_BYTES / sizeof(float)) {
        size_t m = n - off < CHUNK_BYTES / sizeof(float) ? n - off : CHUNK_BYTES / sizeof(float);
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)m, MPI_FLOAT, MPI_SUM, comm_of(ctx));
    }
}

static void sum_doubles(double *buf, int n, void *ctx)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, comm_of(ctx));
}

Collective dist_collective(void)
{
    Collective c = {sum_floats, sum_doubles, NULL};
    return c;
}

DistGroup *dist_group_split(int color, int *rank, int *size)
{
    DistGroup *g = malloc(sizeof *g);
    int world;
    if (!g) legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, "out of memory");
    MPI_Comm_rank(MPI_COMM_WORLD, &world);
    MPI_Comm_split(MPI_COMM_WORLD, color, world, &g->comm);
    MPI_Comm_rank(g->comm, rank);
    MPI_Comm_size(g->comm, size);
    return g;
}

Collective dist_group_collective(DistGroup *g)
{
    Collective c = {sum_floats, sum_doubles, g};
    return c;
}

int dist_group_max_int(DistGroup *g, int v)
{
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, g->comm);
    return v;
}

void dist_group_free(DistGroup *g)
{
    if (!g) return;
    MPI_Comm_free(&g->comm);
    free(g);
}

void dist_bcast(void *buf, size_t bytes, int root)
{
    char *p = buf;
    for (size_t off = 0; off < bytes; off += CHUNK_BYTES) {
        size_t m = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        MPI_Bcast(p + off, (int)m, MPI_BYTE, root, MPI_COMM_WORLD);
    }
}

int dist_bcast_int(int v, int root)
{
    MPI_Bcast(&v, 1, MPI_INT, root, MPI_COMM_WORLD);
    return v;
}

void dist_bcast_dataset(Dataset *d, int root)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int hdr[5] = {d->n, d->c, d->h, d->w, d->num_classes};
    MPI_Bcast(hdr, 5, MPI_INT, root, MPI_COMM_WORLD);
    if (rank != root) {
        d->n = hdr[0];
        d->c = hdr[1];
        d->h = hdr[2];
        d->w = hdr[3];
        d->num_classes = hdr[4];
        d->pix = xmalloc((size_t)d->n * d->c * d->h * d->w);
        d->labels = xmalloc((size_t)d->n * sizeof(int));
    }
    dist_bcast(d->pix, (size_t)d->n * d->c * d->h * d->w, root);
    dist_bcast(d->labels, (size_t)d->n * sizeof(int), root);
}

void dist_bcast_net(Net *net, int root)
{
    dist_bcast(net->param, net->n_param_floats * sizeof(float), root);
    dist_bcast(net->buf, net->n_buf_floats * sizeof(float), root);
}


_Noreturn void dist_abort(int code)
{
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* MPI_Abort does not return; this keeps the compiler's promise */
}

static volatile sig_atomic_t stop_flag = 0;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

void dist_install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    /* Restart interrupted system calls: a stop request may come, and come again (job scripts
     * repeat it), while a checkpoint is being written. */
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int dist_stop_requested(void) { return stop_flag != 0; }

void dist_send(const void *buf, size_t bytes, int dest, int tag)
{
    const char *p = buf;
    for (size_t off = 0; off < bytes || off == 0; off += CHUNK_BYTES) {
        size_t m = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        MPI_Send(p + off, (int)m, MPI_BYTE, dest, tag, MPI_COMM_WORLD);
        if (m == 0) break;
    }
}

void dist_recv(void *buf, size_t bytes, int src, int tag)
{
    char *p = buf;
    for (size_t off = 0; off < bytes || off == 0; off += CHUNK_BYTES) {
        size_t m = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        MPI_Recv(p + off, (int)m, MPI_BYTE, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (m == 0) break;
    }
}

int dist_max_int(int v)
{
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return v;
}
