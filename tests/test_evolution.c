/* Tests regularized evolution serially against a synthetic fitness with a hidden optimum. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/evolution.h"
#include "legr/rng.h"

#define L 20

static double kstd[L];
static double opt_log_alpha[L], opt_kappa[L];

static void setup_problem(void)
{
    Rng r;
    rng_init(&r, 99, rng_stream_id(RNG_PURPOSE_TEST, 1));
    for (int l = 0; l < L; l++) {
        kstd[l] = 0.5 + 1.5 * rng_uniform(&r);
        opt_log_alpha[l] = rng_normal(&r);
        opt_kappa[l] = kstd[l] * rng_normal(&r);
    }
}

/* Squared distance to the hidden optimum in (log alpha, kappa / delta). */
static double synth_fitness(const double *alpha, const double *kappa)
{
    double f = 0.0;
    for (int l = 0; l < L; l++) {
        double da = log(alpha[l]) - opt_log_alpha[l];
        double dk = (kappa[l] - opt_kappa[l]) / kstd[l];
        f += da * da + dk * dk;
    }
    return f;
}

/* Outstanding candidates of a driver in hand-out order, reported FIFO (order 0) or in a random
 * order (order 1). */
typedef struct {
    int n;
    Candidate c[16];
} Window;

static void window_init(Window *w)
{
    w->n = 0;
    for (int i = 0; i < 16; i++) evolution_candidate_alloc(&w->c[i], L);
}

static void window_free(Window *w)
{
    for (int i = 0; i < 16; i++) evolution_candidate_free(&w->c[i]);
}

/* Run until `stop_after` results have been reported in total (or the search ends), keeping up to
 * `width` candidates outstanding. Returns 0, or -1 on an unexpected protocol state. */
static int drive(Evolution *e, Window *w, int width, int order, Rng *pick, int stop_after)
{
    Err err;
    while (e->n_history < stop_after) {
        while (w->n < width) {
            int rc = evolution_next(e, &w->c[w->n]);
            if (rc != EVO_NEXT_CANDIDATE) break;
            w->n++;
        }
        if (w->n == 0) return evolution_finished(e) ? 0 : -1;
        int k = order ? (int)rng_below(pick, (uint32_t)w->n) : 0;
        EvoResult r = {.id = w->c[k].id,
                       .fitness = synth_fitness(w->c[k].alpha, w->c[k].kappa),
                       .accuracy = 0.5,
                       .flops = 1000.0 + w->c[k].id,
                       .seconds = 0.25,
                       .rank = 1 + w->c[k].id % 3};
        if (evolution_report(e, &r, &err) != 0) return -1;
        Candidate t = w->c[k];
        for (int i = k; i < w->n - 1; i++) w->c[i] = w->c[i + 1];
        w->c[w->n - 1] = t;
        w->n--;
    }
    return 0;
}

static int same_history(const Evolution *a, const Evolution *b)
{
    if (a->n_history != b->n_history) return 0;
    size_t n = (size_t)a->n_history;
    return memcmp(a->history, b->history, n * sizeof *a->history) == 0 &&
           memcmp(a->history_alpha, b->history_alpha, n * L * sizeof(double)) == 0 &&
           memcmp(a->history_kappa, b->history_kappa, n * L * sizeof(double)) == 0 &&
           a->n_population == b->n_population &&
           memcmp(a->population, b->population, (size_t)a->n_population * sizeof(int)) == 0;
}

static int differs(const double *a, const double *b)
{
    for (int l = 0; l < L; l++)
        if (a[l] != b[l]) return 1;
    return 0;
}

static void test_initial_population(void)
{
    EvoParams p;
    evolution_params_default(&p);
    Evolution e;
    evolution_init(&e, &p, L, kstd, 7);
    Candidate c[64], extra;
    for (int i = 0; i < 64; i++) {
        evolution_candidate_alloc(&c[i], L);
        EXPECT(evolution_next(&e, &c[i]) == EVO_NEXT_CANDIDATE, "initial member %d", i);
        EXPECT(c[i].id == i && c[i].parent == -1, "id %d parent %d", c[i].id, c[i].parent);
    }
    int same = 0;
    for (int i = 0; i < 63; i++)
        for (int j = i + 1; j < 63; j++)
            if (!differs(c[i].alpha, c[j].alpha) || !differs(c[i].kappa, c[j].kappa)) same++;
    EXPECT(same == 0, "%d pairs of random initial members coincide", same);
    /* Random members: alpha log-normal, kappa scaled by delta_l. */
    double sum_la = 0, sum_la2 = 0, sum_z2 = 0;
    for (int i = 0; i < 63; i++)
        for (int l = 0; l < L; l++) {
            EXPECT(c[i].alpha[l] > 0, "alpha must be positive");
            double la = log(c[i].alpha[l]);
            sum_la += la;
            sum_la2 += la * la;
            sum_z2 += (c[i].kappa[l] / kstd[l]) * (c[i].kappa[l] / kstd[l]);
        }
    double n = 63.0 * L;
    EXPECT(fabs(sum_la / n) < 0.15, "mean log alpha %g", sum_la / n);
    EXPECT(fabs(sqrt(sum_la2 / n) - 1) < 0.1, "std log alpha %g", sqrt(sum_la2 / n));
    EXPECT(fabs(sqrt(sum_z2 / n) - 1) < 0.1, "std kappa/delta %g", sqrt(sum_z2 / n));
    int ident = 1;
    for (int l = 0; l < L; l++) ident &= c[63].alpha[l] == 1.0 && c[63].kappa[l] == 0.0;
    EXPECT(ident, "member 63 is not the exact identity");

    /* No child before the whole initial population has reported. */
    evolution_candidate_alloc(&extra, L);
    EXPECT(evolution_next(&e, &extra) == EVO_NEXT_WAIT, "expected WAIT with nothing reported");
    Err err;
    for (int i = 63; i >= 1; i--) { /* reverse order: out-of-order reporting */
        EvoResult r = {.id = i, .fitness = synth_fitness(c[i].alpha, c[i].kappa)};
        EXPECT(evolution_report(&e, &r, &err) == 0, "report %d", i);
    }
    EXPECT(evolution_next(&e, &extra) == EVO_NEXT_WAIT, "expected WAIT with 63 of 64 reported");
    EvoResult r0 = {.id = 0, .fitness = NAN};
    EXPECT(evolution_report(&e, &r0, &err) == 0, "report 0");
    EXPECT(e.history[e.row_of_id[0]].fitness == INFINITY, "NaN fitness not stored as +inf");
    EXPECT(evolution_report(&e, &r0, &err) == -1, "a second report of id 0 must fail");
    EXPECT(e.n_population == 64 && e.population[0] == 63 && e.population[63] == 0,
           "population in report order");
    EXPECT(evolution_next(&e, &extra) == EVO_NEXT_CANDIDATE && extra.id == 64,
           "first child after the initial population");
    const EvoRecord *best = evolution_best(&e, NULL, NULL);
    EXPECT(best && isfinite(best->fitness) && best->id != 0, "NaN member must not be best");
    evolution_candidate_free(&extra);
    for (int i = 0; i < 64; i++) evolution_candidate_free(&c[i]);
    evolution_free(&e);
}

/* Children, tournament, aging and annealing, checked one child at a time. */
static void test_children(void)
{
    EvoParams p;
    evolution_params_default(&p);
    Evolution e;
    evolution_init(&e, &p, L, kstd, 11);
    EXPECT(e.n_mutate == 2, "m = int(0.1 * 20) = 2, got %d", e.n_mutate);
    EXPECT(fabs(evolution_alpha_std(&e, 63) - 0.874) < 1e-12, "step size at 63");
    EXPECT(fabs(evolution_alpha_std(&e, 399) - 0.202) < 1e-12, "step size at 399");
    Candidate c;
    evolution_candidate_alloc(&c, L);
    Err err;
    int bad_count = 0, bad_tour = 0, bad_age = 0, n_children = 0, rank_sum = 0;
    double z_alpha2 = 0, z_kappa2 = 0;
    int n_z = 0;
    int pop_before[64];
    while (evolution_next(&e, &c) == EVO_NEXT_CANDIDATE) {
        if (c.id >= 64) {
            n_children++;
            int prow = e.row_of_id[c.parent];
            const double *pa = e.history_alpha + (size_t)prow * L;
            const double *pk = e.history_kappa + (size_t)prow * L;
            int changed = 0;
            for (int l = 0; l < L; l++) {
                if (c.alpha[l] == pa[l] && c.kappa[l] == pk[l]) continue;
                changed++;
                double z = log(c.alpha[l] / pa[l]) / evolution_alpha_std(&e, c.id);
                z_alpha2 += z * z;
                double zk = (c.kappa[l] - pk[l]) / kstd[l];
                z_kappa2 += zk * zk;
                n_z++;
            }
            if (changed < 1 || changed > e.n_mutate) bad_count++;
            /* The tournament: replay the documented draws (first S of the id's stream). */
            Rng r;
            rng_init(&r, 11, rng_stream_id(RNG_PURPOSE_EVOLUTION, (uint64_t)c.id));
            int win = -1;
            for (int s = 0; s < p.sample; s++) {
                int id = e.population[rng_below(&r, 64)];
                if (win < 0 || e.history[e.row_of_id[id]].fitness <
                                   e.history[e.row_of_id[win]].fitness)
                    win = id;
            }
            if (win != c.parent) bad_tour++;
            /* Rank of the parent within the population (0 = best). */
            double pf = e.history[prow].fitness;
            for (int i = 0; i < 64; i++)
                if (e.history[e.row_of_id[e.population[i]]].fitness < pf) rank_sum++;
            memcpy(pop_before, e.population, sizeof pop_before);
        }
        EvoResult res = {.id = c.id, .fitness = synth_fitness(c.alpha, c.kappa)};
        EXPECT(evolution_report(&e, &res, &err) == 0, "report %d", c.id);
        if (c.id >= 64) {
            if (memcmp(e.population, pop_before + 1, 63 * sizeof(int)) != 0 ||
                e.population[63] != c.id)
                bad_age++;
        }
    }
    EXPECT(evolution_finished(&e), "all 400 reported");
    EXPECT(n_children == 336, "children %d", n_children);
    EXPECT(bad_count == 0, "%d children changed 0 or more than m layers", bad_count);
    EXPECT(bad_tour == 0, "%d parents were not the tournament winner", bad_tour);
    EXPECT(bad_age == 0, "%d reports did not replace the oldest member", bad_age);
    /* Best of 16 with replacement out of 64 has mean rank about 3.3. */
    double mean_rank = (double)rank_sum / n_children;
    EXPECT(mean_rank < 6.0, "mean parent rank %g", mean_rank);
    double sa = sqrt(z_alpha2 / n_z), sk = sqrt(z_kappa2 / n_z);
    EXPECT(fabs(sa - 1) < 0.12, "annealed alpha mutation std ratio %g", sa);
    EXPECT(fabs(sk - 1) < 0.12, "kappa mutation std / delta %g", sk);

    double init_best = INFINITY;
    for (int r = 0; r < 64; r++)
        if (e.history[r].fitness < init_best) init_best = e.history[r].fitness;
    /* The initial best is usually the identity member; over 20 seeds the final best was 0.25 to
     * 0.51 of it, so 0.6 asks for a clear improvement with some margin. */
    const EvoRecord *best = evolution_best(&e, NULL, NULL);
    EXPECT(best->fitness < 0.6 * init_best, "search did not improve: %g -> %g", init_best,
           best->fitness);
    printf("synthetic fitness: initial best %.3f, final best %.3f (id %d)\n", init_best,
           best->fitness, best->id);
    double mean = evolution_population_mean(&e);
    EXPECT(mean < init_best, "final population mean %g vs initial best %g", mean, init_best);
    evolution_candidate_free(&c);
    evolution_free(&e);
}

static void test_reproducible_out_of_order(void)
{
    EvoParams p;
    evolution_params_default(&p);
    Evolution a, b, c;
    Window wa, wb, wc;
    Rng ra, rb, rc;
    window_init(&wa);
    window_init(&wb);
    window_init(&wc);
    rng_init(&ra, 5, rng_stream_id(RNG_PURPOSE_TEST, 2));
    rng_init(&rb, 5, rng_stream_id(RNG_PURPOSE_TEST, 2));
    rng_init(&rc, 5, rng_stream_id(RNG_PURPOSE_TEST, 2));
    evolution_init(&a, &p, L, kstd, 3);
    evolution_init(&b, &p, L, kstd, 3);
    evolution_init(&c, &p, L, kstd, 4);
    EXPECT(drive(&a, &wa, 7, 1, &ra, 400) == 0, "out-of-order run a");
    EXPECT(drive(&b, &wb, 7, 1, &rb, 400) == 0, "out-of-order run b");
    EXPECT(drive(&c, &wc, 7, 1, &rc, 400) == 0, "out-of-order run c");
    EXPECT(evolution_finished(&a) && a.n_inflight == 0, "run a finished");
    EXPECT(same_history(&a, &b), "same seed, same history");
    EXPECT(!same_history(&a, &c), "different seeds gave the same history");
    int in_order = 1, seen_bad = 0;
    unsigned char seen[400] = {0};
    for (int i = 0; i < a.n_history; i++) {
        if (a.history[i].id != i) in_order = 0;
        if (seen[a.history[i].id]++) seen_bad++;
    }
    EXPECT(!in_order, "results were meant to arrive out of order");
    EXPECT(seen_bad == 0, "an id was recorded twice");
    const EvoRecord *best = evolution_best(&a, NULL, NULL);
    double init_best = INFINITY;
    for (int i = 0; i < a.n_history; i++)
        if (a.history[i].id < 64 && a.history[i].fitness < init_best)
            init_best = a.history[i].fitness;
    EXPECT(best->fitness < 0.6 * init_best, "async search did not improve: %g -> %g", init_best,
           best->fitness);
    evolution_free(&a);
    evolution_free(&b);
    evolution_free(&c);
    window_free(&wa);
    window_free(&wb);
    window_free(&wc);
}

static void test_save_restore(void)
{
    EvoParams p;
    evolution_params_default(&p);
    for (int order = 0; order < 2; order++) {
        Evolution full, part, resumed;
        Window wf, wp, wr;
        Rng rf, rp;
        window_init(&wf);
        window_init(&wp);
        window_init(&wr);
        rng_init(&rf, 8, rng_stream_id(RNG_PURPOSE_TEST, 3));
        rng_init(&rp, 8, rng_stream_id(RNG_PURPOSE_TEST, 3));
        evolution_init(&full, &p, L, kstd, 21);
        evolution_init(&part, &p, L, kstd, 21);
        EXPECT(drive(&full, &wf, 5, order, &rf, 400) == 0, "uninterrupted run");
        EXPECT(drive(&part, &wp, 5, order, &rp, 150) == 0, "first half");
        EXPECT(part.n_inflight == 4, "in flight at the checkpoint: %d", part.n_inflight);

        EvoState st;
        evolution_get_state(&part, &st);
        evolution_init(&resumed, &p, L, kstd, 21);
        Err err;
        EXPECT(evolution_restore(&resumed, &st, &err) == 0, "restore: %s", err.msg);
        /* The resumed driver has lost its window; its random report order continues. */
        EXPECT(drive(&resumed, &wr, 5, order, &rp, 400) == 0, "resumed run");
        EXPECT(same_history(&full, &resumed), "order %d: resumed history differs", order);

        /* A damaged state is rejected. */
        Evolution bad;
        evolution_init(&bad, &p, L, kstd, 21);
        int *pop = malloc((size_t)st.n_population * sizeof(int));
        memcpy(pop, st.population, (size_t)st.n_population * sizeof(int));
        pop[3] = pop[4];
        EvoState bs = st;
        bs.population = pop;
        EXPECT(evolution_restore(&bad, &bs, &err) == -1 && err.code == LEGR_EXIT_DATA,
               "duplicate population member accepted");
        evolution_free(&bad);
        evolution_init(&bad, &p, L, kstd, 21);
        bs = st;
        bs.next_id = st.next_id + 1;
        EXPECT(evolution_restore(&bad, &bs, &err) == -1, "missing id accepted");
        free(pop);
        evolution_free(&bad);

        evolution_free(&full);
        evolution_free(&part);
        evolution_free(&resumed);
        window_free(&wf);
        window_free(&wp);
        window_free(&wr);
    }
}

/* In async mode the reissued in-flight candidates equal the originals even though the population
 * moved on after they were generated. */
static void test_restore_reissues_inflight(void)
{
    EvoParams p;
    evolution_params_default(&p);
    p.population = 8;
    p.sample = 3;
    p.evaluations = 40;
    Evolution a, b;
    evolution_init(&a, &p, L, kstd, 5);
    Candidate c[40];
    Err err;
    int n = 0;
    for (int i = 0; i < 40; i++) evolution_candidate_alloc(&c[i], L);
    while (n < 8 && evolution_next(&a, &c[n]) == EVO_NEXT_CANDIDATE) n++;
    for (int i = 0; i < 8; i++) {
        EvoResult r = {.id = i, .fitness = synth_fitness(c[i].alpha, c[i].kappa)};
        evolution_report(&a, &r, &err);
    }
    for (int i = 8; i < 12; i++) evolution_next(&a, &c[i]);
    EvoResult r = {.id = 10, .fitness = 0.0}; /* changes the population after 11 was made */
    evolution_report(&a, &r, &err);
    EvoState st;
    evolution_get_state(&a, &st);
    evolution_init(&b, &p, L, kstd, 5);
    EXPECT(evolution_restore(&b, &st, &err) == 0, "restore: %s", err.msg);
    Candidate d;
    evolution_candidate_alloc(&d, L);
    int ids[3] = {8, 9, 11};
    for (int k = 0; k < 3; k++) {
        EXPECT(evolution_next(&b, &d) == EVO_NEXT_CANDIDATE, "reissue %d", k);
        const Candidate *o = &c[ids[k]];
        EXPECT(d.id == o->id && d.parent == o->parent && !differs(d.alpha, o->alpha) &&
                   !differs(d.kappa, o->kappa),
               "reissued candidate %d differs", ids[k]);
    }
    EXPECT(evolution_next(&b, &d) == EVO_NEXT_CANDIDATE && d.id == 12, "then new id 12");
    evolution_candidate_free(&d);
    for (int i = 0; i < 40; i++) evolution_candidate_free(&c[i]);
    evolution_free(&a);
    evolution_free(&b);
}

static void test_params(void)
{
    EvoParams p;
    Err err;
    evolution_params_default(&p);
    EXPECT(evolution_params_check(&p, &err) == 0, "defaults valid");
    EXPECT(p.population == 64 && p.sample == 16 && p.evaluations == 400, "defaults");
    p.mutate_fraction = 1.5;
    EXPECT(evolution_params_check(&p, &err) == -1 && err.code == LEGR_EXIT_USAGE,
           "mutate_fraction 1.5 accepted");
    evolution_params_default(&p);
    p.sample = 0;
    EXPECT(evolution_params_check(&p, &err) == -1 && strstr(err.msg, "sample"), "sample 0");
    p.sample = p.population + 1;
    EXPECT(evolution_params_check(&p, &err) == -1 && strstr(err.msg, "more than"),
           "a tournament larger than the population accepted");

    /* Small runs: E < P never makes children and finishes. */
    evolution_params_default(&p);
    p.evaluations = 10;
    Evolution e;
    evolution_init(&e, &p, L, kstd, 1);
    Candidate c;
    evolution_candidate_alloc(&c, L);
    int n = 0;
    while (evolution_next(&e, &c) == EVO_NEXT_CANDIDATE) {
        EvoResult r = {.id = c.id, .fitness = INFINITY};
        evolution_report(&e, &r, &err);
        n++;
    }
    EXPECT(n == 10 && evolution_finished(&e), "E=10 gave %d", n);
    EXPECT(evolution_next(&e, &c) == EVO_NEXT_DONE, "DONE after E");
    EXPECT(evolution_best(&e, NULL, NULL) != NULL, "an all-inf search still has a best");
    evolution_candidate_free(&c);
    evolution_free(&e);
}

int main(void)
{
    setup_problem();
    test_params();
    test_initial_population();
    test_children();
    test_reproducible_out_of_order();
    test_save_restore();
    test_restore_reissues_inflight();
    return harness_finish("test_evolution");
}
