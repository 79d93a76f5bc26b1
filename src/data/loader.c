/* DataLoader: the next batch of a file-backed set is read, decoded and transformed by a helper
 * thread while the caller computes on the current one. */
#include "images.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Two slots: the batch the caller holds and the one being filled. Request k uses slot k % 2. */
#define SLOTS 2

typedef struct {
    float *x;
    int *y;
    int *idx, n;
    uint64_t seed, stream0;
    Err err;
    int failed;
} Slot;

struct DataLoader {
    const Dataset *d;
    Normalize norm;
    Augment aug;
    int has_aug, max_n, threaded;
    Slot slot[SLOTS];
    long long submitted, filled, taken; /* request counters */
    int quit;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void fill_slot(DataLoader *l, Slot *s)
{
    s->failed = images_fill(s->x, s->y, l->d, s->idx, s->n, &l->norm,
                            l->has_aug ? &l->aug : NULL, NULL, s->seed, s->stream0, &s->err) != 0;
}

/* The helper: fill requests in order until told to quit. */
static void *loader_main(void *arg)
{
    DataLoader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && l->filled == l->submitted) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        Slot *s = &l->slot[l->filled % SLOTS];
        pthread_mutex_unlock(&l->mu);
        fill_slot(l, s);
        pthread_mutex_lock(&l->mu);
        l->filled++;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

DataLoader *data_loader_new(const Dataset *d, int max_n, const Normalize *norm,
                            const Augment *aug)
{
    DataLoader *l = xcalloc(1, sizeof *l);
    l->d = d;
    l->norm = *norm;
    l->has_aug = aug != NULL;
    if (aug) l->aug = *aug;
    l->max_n = max_n;
    const size_t img = (size_t)d->c * d->h * d->w;
    for (int i = 0; i < SLOTS; i++) {
        l->slot[i].x = xalloc_floats((size_t)max_n * img);
        l->slot[i].y = xmalloc((size_t)(max_n ? max_n : 1) * sizeof(int));
        l->slot[i].idx = xmalloc((size_t)(max_n ? max_n : 1) * sizeof(int));
    }
    l->threaded = d->src != NULL;
    if (l->threaded) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        /* The helper blocks every signal: SIGTERM/SIGUSR1 go to the threads that poll them. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&l->thread, NULL, loader_main, l);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        CHECK(rc == 0, "cannot start the data loader thread (error %d)", rc);
    }
    return l;
}

void data_loader_submit(DataLoader *l, const int *idx, int n, uint64_t seed, uint64_t stream0)
{
    CHECK(n >= 0 && n <= l->max_n, "data loader: batch of %d images (at most %d)", n, l->max_n);
    if (l->threaded) pthread_mutex_lock(&l->mu);
    CHECK(l->submitted - l->taken < 1, "data loader: a second batch queued ahead");
    Slot *s = &l->slot[l->submitted % SLOTS];
    memcpy(s->idx, idx, (size_t)n * sizeof(int));
    s->n = n;
    s->seed = seed;
    s->stream0 = stream0;
    s->failed = 0;
    l->submitted++;
    if (l->threaded) {
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
}

void data_loader_take(DataLoader *l, const float **x, const int **y)
{
    CHECK(l->taken < l->submitted, "data loader: take without a queued batch");
    Slot *s = &l->slot[l->taken % SLOTS];
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        while (l->filled <= l->taken) pthread_cond_wait(&l->cv, &l->mu);
        pthread_mutex_unlock(&l->mu);
        if (s->failed) legr_fail(s->err.code, __FILE__, __LINE__, "%s", s->err.msg);
    } else {
        data_fill_keyed(s->x, s->y, l->d, s->idx, s->n, &l->norm, l->has_aug ? &l->aug : NULL,
                        s->seed, s->stream0);
    }
    l->taken++;
    *x = s->x;
    *y = s->y;
}

void data_loader_free(DataLoader *l)
{
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    for (int i = 0; i < SLOTS; i++) {
        free(l->slot[i].x);
        free(l->slot[i].y);
        free(l->slot[i].idx);
    }
    free(l);
}
