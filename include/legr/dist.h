/* Distribution: the process group, broadcasts of data and models, and the data-parallel collective. */
#ifndef LEGR_DIST_H
#define LEGR_DIST_H

#include <stddef.h>
#include "legr/data.h"
#include "legr/net.h"
#include "legr/train.h"

typedef struct {
    int rank, size;
} Dist;

/* MPI_Init (also for a singleton run without mpirun), and a fail hook so that legr_fail on any
 * rank aborts the whole job with its exit code. */
void dist_init(int *argc, char ***argv, Dist *d);
void dist_finalize(void);

/* Sum-allreduce collective over all ranks, for train_step and synchronised BN. */
Collective dist_collective(void);

/* A subset of the ranks with a communicator of its own: every rank calls dist_group_split with
 * the color of its group (collectively); *rank and *size receive its place in the group (ranks
 * keep their world order). Its collective sums over the group only, for data-parallel training
 * inside it; dist_group_max_int agrees on a value within it. */
typedef struct DistGroup DistGroup;
DistGroup *dist_group_split(int color, int *rank, int *size);
Collective dist_group_collective(DistGroup *g);
int dist_group_max_int(DistGroup *g, int v);
void dist_group_free(DistGroup *g); /* collective over the group; NULL is fine */

/* Broadcast bytes from root (chunked, so any size works). */
void dist_bcast(void *buf, size_t bytes, int root);
/* Root's value of an int. */
int dist_bcast_int(int v, int root);
/* Broadcast a dataset: non-root ranks receive a freshly allocated copy. */
void dist_bcast_dataset(Dataset *d, int root);
/* Broadcast parameters and BN statistics of nets built from the same Arch. */
void dist_bcast_net(Net *net, int root);

/* SIGTERM and SIGUSR1 ask the job to checkpoint and stop (exit code 4): the handlers only set a
 * flag, which the stages poll at safe points (in pretraining and the search rank 0 decides and
 * tells the others; in the family every rank stops its own level, then all agree). */
void dist_install_signal_handlers(void);
int dist_stop_requested(void);
/* Point-to-point transfer of bytes (message kind `tag`), any size. */
void dist_send(const void *buf, size_t bytes, int dest, int tag);
void dist_recv(void *buf, size_t bytes, int src, int tag);
/* End every rank of the job now with exit code `code` (MPI_Abort), without an error message:
 * for a clean stop while other ranks may be busy. */
_Noreturn void dist_abort(int code);

/* Largest value of v over all ranks (agreement on errors). */
int dist_max_int(int v);

#endif
