/* Tests the legr-checkpoint HDF5 file: exact round trip, resume equality, bad files, kill safety. */
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "legr/h5io.h"
#include "legr/rng.h"

/* A synthetic fitness: distance of log alpha and kappa to a fixed point, NaN for some ids. */
static double fitness_of(const Candidate *c, int L)
{
    if (c->id % 17 == 5) return NAN;
    double f = 0;
    for (int l = 0; l < L; l++) {
        double a = log(c->alpha[l]) - 0.3 * l, k = c->kappa[l] - 0.5;
        f += a * a + k * k;
    }
    return f;
}

/* Hand out up to `width` candidates and report them FIFO until `stop_after` results or the end. */
typedef struct {
    int n;
    Candidate c[8];
} Window;

static void window_init(Window *w, int L)
{
    w->n = 0;
    for (int i = 0; i < 8; i++) evolution_candidate_alloc(&w->c[i], L);
}

static void window_free(Window *w)
{
    for (int i = 0; i < 8; i++) evolution_candidate_free(&w->c[i]);
}

static void drive(Evolution *e, Window *w, int stop_after)
{
    Err err;
    while (e->n_history < stop_after) {
        while (w->n < 4 && evolution_next(e, &w->c[w->n]) == EVO_NEXT_CANDIDATE) w->n++;
        if (w->n == 0) return;
        EvoResult r = {.id = w->c[0].id,
                       .fitness = fitness_of(&w->c[0], e->n_layers),
                       .accuracy = 0.01 * w->c[0].id,
                       .flops = 1e6 + w->c[0].id,
                       .seconds = 1.5,
                       .rank = 1 + w->c[0].id % 3};
        if (evolution_report(e, &r, &err) != 0) return;
        Candidate t = w->c[0];
        for (int i = 0; i < w->n - 1; i++) w->c[i] = w->c[i + 1];
        w->c[--w->n] = t;
    }
}

static int same_record(const EvoRecord *a, const EvoRecord *b)
{
    return a->id == b->id && a->parent == b->parent && a->rank == b->rank &&
           memcmp(&a->fitness, &b->fitness, sizeof(double)) == 0 &&
           a->accuracy == b->accuracy && a->flops == b->flops && a->seconds == b->seconds;
}

/* Every serialised field equal (bit-exact doubles). */
static int same_state(const Evolution *a, const Evolution *b)
{
    size_t L = (size_t)a->n_layers;
    if (a->p.population != b->p.population || a->p.sample != b->p.sample ||
        a->p.evaluations != b->p.evaluations || a->p.mutate_fraction != b->p.mutate_fraction ||
        a->p.sigma != b->p.sigma || a->n_layers != b->n_layers || a->seed != b->seed ||
        a->next_id != b->next_id || a->n_history != b->n_history ||
        a->n_population != b->n_population || a->n_inflight != b->n_inflight ||
        a->best_row != b->best_row ||
        memcmp(a->kappa_std, b->kappa_std, L * sizeof(double)))
        return 0;
    for (int i = 0; i < a->n_history; i++)
        if (!same_record(&a->history[i], &b->history[i])) return 0;
    size_t nh = (size_t)a->n_history, ni = (size_t)a->n_inflight;
    return !memcmp(a->history_alpha, b->history_alpha, nh * L * sizeof(double)) &&
           !memcmp(a->history_kappa, b->history_kappa, nh * L * sizeof(double)) &&
           !memcmp(a->population, b->population, (size_t)a->n_population * sizeof(int)) &&
           !memcmp(a->inflight_id, b->inflight_id, ni * sizeof(int)) &&
           !memcmp(a->inflight_parent, b->inflight_parent, ni * sizeof(int)) &&
           !memcmp(a->inflight_alpha, b->inflight_alpha, ni * L * sizeof(double)) &&
           !memcmp(a->inflight_kappa, b->inflight_kappa, ni * L * sizeof(double));
}

static void make_search(Evolution *e, int P, int E, int L, uint64_t seed)
{
    EvoParams p;
    evolution_params_default(&p);
    p.population = P;
    p.sample = 3;
    p.evaluations = E;
    p.mutate_fraction = 0.3;
    double *kstd = malloc((size_t)L * sizeof(double));
    for (int l = 0; l < L; l++) kstd[l] = 0.2 + 0.1 * l;
    evolution_init(e, &p, L, kstd, seed);
    free(kstd);
}

static void test_round_trip_and_resume(void)
{
    const int L = 6;
    Evolution a, b;
    Window wa, wb;
    Err err;
    char *cfg = NULL, *stage = NULL;
    unsigned long long hash = 0;
    window_init(&wa, L);
    window_init(&wb, L);
    make_search(&a, 10, 60, L, 77);

    /* Before anything happened: an empty state round trips too. */
    EXPECT(h5_checkpoint_save("ckpt_rt.h5", &a, NULL, 1, NULL, &err) == 0, "save empty: %s",
           err.msg);
    EXPECT(h5_checkpoint_load("ckpt_rt.h5", &b, NULL, NULL, NULL, &err) == 0, "load empty: %s",
           err.msg);
    EXPECT(same_state(&a, &b), "empty state differs after the round trip");
    evolution_free(&b);

    drive(&a, &wa, 27);
    EXPECT(a.n_inflight == 3 && a.n_history == 27, "mid-run state: %d in flight", a.n_inflight);
    const char *config = "search = { population = 10; evaluations = 60; };\nrun = { seed = 77; };";
    EXPECT(h5_checkpoint_save("ckpt_rt.h5", &a, config, 0xfedcba9876543210ULL, "search", &err) ==
               0,
           "save: %s", err.msg);
    EXPECT(access("ckpt_rt.h5.tmp", F_OK) != 0, "temporary file left behind");
    EXPECT(h5_checkpoint_load("ckpt_rt.h5", &b, &cfg, &hash, &stage, &err) == 0, "load: %s",
           err.msg);
    EXPECT(same_state(&a, &b), "state differs after the round trip");
    EXPECT(cfg && strcmp(cfg, config) == 0, "config text differs: %s", cfg ? cfg : "(null)");
    EXPECT(stage && strcmp(stage, "search") == 0, "stage differs");
    EXPECT(hash == 0xfedcba9876543210ULL, "base hash %llx", hash);
    int n_inf = 0;
    for (int i = 0; i < b.n_history; i++) n_inf += isinf(b.history[i].fitness);
    EXPECT(n_inf >= 1, "the NaN results should round trip as +inf");

    /* Resume: the loaded search re-issues the in-flight candidates and ends identically. */
    drive(&a, &wa, 60);
    drive(&b, &wb, 60);
    EXPECT(evolution_finished(&a) && evolution_finished(&b), "both searches finish");
    EXPECT(same_state(&a, &b), "resumed search differs from the uninterrupted one");

    free(cfg);
    free(stage);
    evolution_free(&a);
    evolution_free(&b);
    window_free(&wa);
    window_free(&wb);
}

static void copy_prefix(const char *src, const char *dst, long n)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    for (long i = 0; i < n && in && out; i++) {
        int ch = fgetc(in);
        if (ch == EOF) break;
        fputc(ch, out);
    }
    if (in) fclose(in);
    if (out) fclose(out);
}

static void test_bad_files(void)
{
    const int L = 4;
    Evolution a, b;
    Window w;
    Err err;
    window_init(&w, L);
    make_search(&a, 6, 30, L, 5);
    drive(&a, &w, 12);
    EXPECT(h5_checkpoint_save("ckpt_bad.h5", &a, "cfg", 1, "search", &err) == 0, "save: %s",
           err.msg);
    FILE *f = fopen("ckpt_bad.h5", "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);

    copy_prefix("ckpt_bad.h5", "ckpt_trunc.h5", size * 2 / 3);
    EXPECT(h5_checkpoint_load("ckpt_trunc.h5", &b, NULL, NULL, NULL, &err) == -1 &&
               err.code == LEGR_EXIT_DATA && strstr(err.msg, "ckpt_trunc.h5"),
           "truncated checkpoint accepted: %s", err.msg);
    f = fopen("ckpt_text.h5", "w");
    fputs("not a checkpoint", f);
    fclose(f);
    EXPECT(h5_checkpoint_load("ckpt_text.h5", &b, NULL, NULL, NULL, &err) == -1 &&
               strstr(err.msg, "not an HDF5 file"),
           "text file accepted: %s", err.msg);

    /* A model file is not a checkpoint. */
    Arch arch;
    Net net;
    if (arch_resnet_cifar(&arch, 8, 1, 8, 8, 3, 0.25, &err) == 0 &&
        net_build(&net, &arch, 1, &err) == 0) {
        EXPECT(h5_model_save("ckpt_model.h5", &net, "", &err) == 0, "model save: %s", err.msg);
        EXPECT(h5_checkpoint_load("ckpt_model.h5", &b, NULL, NULL, NULL, &err) == -1 &&
                   strstr(err.msg, "'legr-model'") && strstr(err.msg, "'legr-checkpoint'"),
               "model file accepted as checkpoint: %s", err.msg);
        net_free(&net);
        arch_free(&arch);
    }

    /* An internally inconsistent state: a population member repeated. */
    copy_prefix("ckpt_bad.h5", "ckpt_dup.h5", size);
    hid_t fid = H5Fopen("ckpt_dup.h5", H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(fid, "search/population", H5P_DEFAULT);
    int pop[6];
    H5Dread(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, pop);
    pop[1] = pop[0];
    H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, pop);
    H5Dclose(d);
    H5Fclose(fid);
    EXPECT(h5_checkpoint_load("ckpt_dup.h5", &b, NULL, NULL, NULL, &err) == -1 &&
               err.code == LEGR_EXIT_DATA && strstr(err.msg, "inconsistent"),
           "inconsistent state accepted: %s", err.msg);

    /* A stale .tmp from a killed writer: the previous checkpoint still loads, the next save
     * replaces the stale file. */
    f = fopen("ckpt_bad.h5.tmp", "w");
    fputs("half-written garbage", f);
    fclose(f);
    EXPECT(h5_checkpoint_load("ckpt_bad.h5", &b, NULL, NULL, NULL, &err) == 0 &&
               same_state(&a, &b),
           "previous checkpoint unreadable next to a stale tmp: %s", err.msg);
    evolution_free(&b);
    drive(&a, &w, 20);
    EXPECT(h5_checkpoint_save("ckpt_bad.h5", &a, "cfg", 1, "search", &err) == 0,
           "save over stale tmp: %s", err.msg);
    EXPECT(access("ckpt_bad.h5.tmp", F_OK) != 0, "stale tmp still there");
    EXPECT(h5_checkpoint_load("ckpt_bad.h5", &b, NULL, NULL, NULL, &err) == 0 &&
               same_state(&a, &b),
           "new checkpoint: %s", err.msg);
    evolution_free(&b);
    evolution_free(&a);
    window_free(&w);
}

/* SIGKILL a process that keeps rewriting the checkpoint: whenever it dies, the file on disk is
 * one of the complete states it was writing. */
static void test_kill_during_write(void)
{
    const int L = 60;
    Evolution s1, s2, b;
    Window w;
    Err err;
    window_init(&w, L);
    make_search(&s1, 64, 1500, L, 9);
    drive(&s1, &w, 700);
    make_search(&s2, 64, 1500, L, 10);
    window_free(&w);
    window_init(&w, L);
    drive(&s2, &w, 900);
    EXPECT(h5_checkpoint_save("ckpt_kill.h5", &s1, "cfg", 1, "search", &err) == 0, "save: %s",
           err.msg);
    int bad = 0, runs = 6, partial = 0;
    for (int run = 0; run < runs; run++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int k = 0;; k++)
                if (h5_checkpoint_save("ckpt_kill.h5", k % 2 ? &s1 : &s2, "cfg", 1, "search",
                                       NULL) != 0)
                    _exit(3);
        }
        struct timespec ts = {0, (long)(3 + 7 * run) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        EXPECT(WIFSIGNALED(status), "writer exited on its own (status %d)", status);
        partial += access("ckpt_kill.h5.tmp", F_OK) == 0;
        if (h5_checkpoint_load("ckpt_kill.h5", &b, NULL, NULL, NULL, &err) != 0) {
            fprintf(stderr, "after kill %d: %s\n", run, err.msg);
            bad++;
            continue;
        }
        if (!same_state(&b, &s1) && !same_state(&b, &s2)) bad++;
        evolution_free(&b);
    }
    EXPECT(bad == 0, "%d of %d kills left a damaged or unknown checkpoint", bad, runs);
    printf("kill test: %d of %d kills interrupted a write (left a partial .tmp)\n", partial, runs);
    evolution_free(&s1);
    evolution_free(&s2);
    window_free(&w);
}

int main(void)
{
    test_round_trip_and_resume();
    test_bad_files();
    test_kill_during_write();
    const char *files[] = {"ckpt_rt.h5",   "ckpt_bad.h5",   "ckpt_trunc.h5", "ckpt_text.h5",
                           "ckpt_model.h5", "ckpt_dup.h5",  "ckpt_kill.h5",  "ckpt_kill.h5.tmp"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(files[i]);
    return harness_finish("test_h5checkpoint");
}
