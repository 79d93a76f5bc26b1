/* Regularized evolution over (alpha, kappa) per layer: population, aging queue, tournament, mutation. */
#include "legr/evolution.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "legr/rng.h"

void evolution_params_default(EvoParams *p)
{
    p->population = 64;
    p->sample = 16;
    p->evaluations = 400;
    p->mutate_fraction = 0.1;
    p->sigma = 1.0;
}

int evolution_params_check(const EvoParams *p, Err *err)
{
    if (p->population < 1)
        return err_set(err, LEGR_EXIT_USAGE, "search.population = %d: must be at least 1",
                       p->population);
    if (p->sample < 1)
        return err_set(err, LEGR_EXIT_USAGE, "search.sample = %d: must be at least 1", p->sample);
    if (p->evaluations < 1)
        return err_set(err, LEGR_EXIT_USAGE, "search.evaluations = %d: must be at least 1",
                       p->evaluations);
    /* A tournament larger than the population only repeats draws (a stored 2^31 - 1 would
     * take minutes per child). */
    if (p->sample > p->population)
        return err_set(err, LEGR_EXIT_USAGE, "search.sample = %d is more than search.population = %d",
                       p->sample, p->population);
    if (!(p->mutate_fraction >= 0.0 && p->mutate_fraction <= 1.0))
        return err_set(err, LEGR_EXIT_USAGE, "search.mutate_fraction = %g: must be in [0, 1]",
                       p->mutate_fraction);
    /* sigma is a log-scale step: beyond 10 a single mutation can scale alpha by e^60. */
    if (!(p->sigma >= 0.0 && p->sigma <= EVO_SIGMA_MAX))
        return err_set(err, LEGR_EXIT_USAGE, "search.sigma = %g: must be in [0, %g]", p->sigma,
                       EVO_SIGMA_MAX);
    return 0;
}

void evolution_init(Evolution *e, const EvoParams *p, int n_layers, const double *kappa_std,
                    uint64_t seed)
{
    CHECK(evolution_params_check(p, NULL) == 0, "evolution_init: invalid params");
    CHECK(n_layers >= 1, "evolution_init: n_layers = %d", n_layers);
    memset(e, 0, sizeof *e);
    e->p = *p;
    e->n_layers = n_layers;
    /* The reference draws int(0.1 L) layers; at least one, so a child always differs. */
    e->n_mutate = (int)(p->mutate_fraction * n_layers);
    if (e->n_mutate < 1) e->n_mutate = 1;
    e->seed = seed;
    size_t L = (size_t)n_layers, E = (size_t)p->evaluations;
    e->kappa_std = xmalloc(L * sizeof *e->kappa_std);
    memcpy(e->kappa_std, kappa_std, L * sizeof *e->kappa_std);
    e->history = xcalloc(E, sizeof *e->history);
    e->history_alpha = xcalloc(E * L, sizeof(double));
    e->history_kappa = xcalloc(E * L, sizeof(double));
    e->row_of_id = xmalloc(E * sizeof *e->row_of_id);
    for (size_t i = 0; i < E; i++) e->row_of_id[i] = -1;
    e->best_row = -1;
    e->population = xcalloc((size_t)p->population, sizeof *e->population);
    e->inflight_id = xcalloc(E, sizeof *e->inflight_id);
    e->inflight_parent = xcalloc(E, sizeof *e->inflight_parent);
    e->inflight_issued = xcalloc(E, sizeof *e->inflight_issued);
    e->inflight_alpha = xcalloc(E * L, sizeof(double));
    e->inflight_kappa = xcalloc(E * L, sizeof(double));
    e->mark = xcalloc(L, 1);
}

void evolution_free(Evolution *e)
{
    free(e->kappa_std);
    free(e->history);
    free(e->history_alpha);
    free(e->history_kappa);
    free(e->row_of_id);
    free(e->population);
    free(e->inflight_id);
    free(e->inflight_parent);
    free(e->inflight_issued);
    free(e->inflight_alpha);
    free(e->inflight_kappa);
    free(e->mark);
    memset(e, 0, sizeof *e);
}

void evolution_candidate_alloc(Candidate *c, int n_layers)
{
    c->id = -1;
    c->parent = -1;
    c->alpha = xcalloc((size_t)n_layers, sizeof(double));
    c->kappa = xcalloc((size_t)n_layers, sizeof(double));
}

void evolution_candidate_free(Candidate *c)
{
    free(c->alpha);
    free(c->kappa);
    c->alpha = c->kappa = NULL;
}

double evolution_alpha_std(const Evolution *e, int id)
{
    return e->p.sigma * (1.0 - (double)id / (1.25 * (double)e->p.evaluations));
}

/* Fitness of a reported id (the population only holds reported ids). */
static double evolution_fitness_of(const Evolution *e, int id)
{
    return e->history[e->row_of_id[id]].fitness;
}

/* Tournament: S population positions drawn with replacement; the first lowest fitness wins
 * (strict <, as numpy's argmin), so an all-inf sample still yields a parent. */
static int evolution_pick_parent(const Evolution *e, Rng *r)
{
    int best = -1;
    for (int s = 0; s < e->p.sample; s++) {
        int id = e->population[rng_below(r, (uint32_t)e->n_population)];
        if (best < 0 || evolution_fitness_of(e, id) < evolution_fitness_of(e, best)) best = id;
    }
    return best;
}

/* Fill alpha/kappa/parent for candidate `id` from its own stream and the current population. */
static void evolution_generate(Evolution *e, int id, int *parent, double *alpha, double *kappa)
{
    int L = e->n_layers, P = e->p.population;
    Rng r;
    rng_init(&r, e->seed, rng_stream_id(RNG_PURPOSE_EVOLUTION, (uint64_t)id));
    *parent = -1;
    if (id < P - 1) {
        for (int l = 0; l < L; l++) {
            alpha[l] = exp(rng_normal(&r));
            kappa[l] = e->kappa_std[l] * rng_normal(&r);
        }
        return;
    }
    if (id == P - 1) {
        for (int l = 0; l < L; l++) {
            alpha[l] = 1.0;
            kappa[l] = 0.0;
        }
        return;
    }
    int par = evolution_pick_parent(e, &r);
    int row = e->row_of_id[par];
    memcpy(alpha, e->history_alpha + (size_t)row * L, (size_t)L * sizeof(double));
    memcpy(kappa, e->history_kappa + (size_t)row * L, (size_t)L * sizeof(double));
    /* Layer draws with replacement; a layer drawn twice is still mutated once (docs/ALGORITHM.md section 6). */
    memset(e->mark, 0, (size_t)L);
    for (int j = 0; j < e->n_mutate; j++) e->mark[rng_below(&r, (uint32_t)L)] = 1;
    double astd = evolution_alpha_std(e, id);
    for (int l = 0; l < L; l++) {
        if (!e->mark[l]) continue;
        /* Clamped so that no lineage, however long, reaches 0 or infinity; real alphas are
         * nowhere near these bounds. */
        alpha[l] = fmin(fmax(alpha[l] * exp(astd * rng_normal(&r)), 1e-300), 1e300);
        kappa[l] += e->kappa_std[l] * rng_normal(&r);
    }
    *parent = par;
}

static void evolution_copy_out(const Evolution *e, int slot, Candidate *out)
{
    size_t L = (size_t)e->n_layers;
    out->id = e->inflight_id[slot];
    out->parent = e->inflight_parent[slot];
    memcpy(out->alpha, e->inflight_alpha + slot * L, L * sizeof(double));
    memcpy(out->kappa, e->inflight_kappa + slot * L, L * sizeof(double));
}

int evolution_next(Evolution *e, Candidate *out)
{
    for (int i = 0; i < e->n_inflight; i++) {
        if (!e->inflight_issued[i]) {
            e->inflight_issued[i] = 1;
            evolution_copy_out(e, i, out);
            return EVO_NEXT_CANDIDATE;
        }
    }
    if (e->next_id >= e->p.evaluations) return EVO_NEXT_DONE;
    /* Children need the complete initial population; only initial results can fill it. */
    if (e->next_id >= e->p.population && e->n_population < e->p.population)
        return EVO_NEXT_WAIT;
    int id = e->next_id++;
    int slot = e->n_inflight++; /* ids are handed out ascending, so the slots stay sorted */
    size_t L = (size_t)e->n_layers;
    e->inflight_id[slot] = id;
    e->inflight_issued[slot] = 1;
    evolution_generate(e, id, &e->inflight_parent[slot], e->inflight_alpha + slot * L,
                       e->inflight_kappa + slot * L);
    evolution_copy_out(e, slot, out);
    return EVO_NEXT_CANDIDATE;
}

/* Append one reported candidate to the history and the population. */
static void evolution_apply(Evolution *e, const EvoRecord *rec, const double *alpha,
                            const double *kappa)
{
    size_t L = (size_t)e->n_layers;
    int row = e->n_history++;
    e->history[row] = *rec;
    if (!isfinite(e->history[row].fitness)) e->history[row].fitness = INFINITY;
    memcpy(e->history_alpha + row * L, alpha, L * sizeof(double));
    memcpy(e->history_kappa + row * L, kappa, L * sizeof(double));
    e->row_of_id[rec->id] = row;
    if (e->best_row < 0 || e->history[row].fitness < e->history[e->best_row].fitness)
        e->best_row = row;
}

/* Aging: append while not full, else drop the oldest (position 0) and push at the back. */
static void evolution_push_member(Evolution *e, int id)
{
    if (e->n_population < e->p.population) {
        e->population[e->n_population++] = id;
        return;
    }
    memmove(e->population, e->population + 1,
            (size_t)(e->n_population - 1) * sizeof *e->population);
    e->population[e->n_population - 1] = id;
}

static void evolution_remove_inflight(Evolution *e, int slot)
{
    size_t L = (size_t)e->n_layers;
    size_t tail = (size_t)(e->n_inflight - slot - 1);
    memmove(e->inflight_id + slot, e->inflight_id + slot + 1, tail * sizeof(int));
    memmove(e->inflight_parent + slot, e->inflight_parent + slot + 1, tail * sizeof(int));
    memmove(e->inflight_issued + slot, e->inflight_issued + slot + 1, tail * sizeof(int));
    memmove(e->inflight_alpha + slot * L, e->inflight_alpha + (slot + 1) * L,
            tail * L * sizeof(double));
    memmove(e->inflight_kappa + slot * L, e->inflight_kappa + (slot + 1) * L,
            tail * L * sizeof(double));
    e->n_inflight--;
}

int evolution_report(Evolution *e, const EvoResult *r, Err *err)
{
    int slot = -1;
    for (int i = 0; i < e->n_inflight; i++)
        if (e->inflight_id[i] == r->id) slot = i;
    if (slot < 0)
        return err_set(err, LEGR_EXIT_INTERNAL,
                       "evolution: result for candidate %d, which is not in flight", r->id);
    size_t L = (size_t)e->n_layers;
    EvoRecord rec = {.id = r->id,
                     .parent = e->inflight_parent[slot],
                     .fitness = r->fitness,
                     .accuracy = r->accuracy,
                     .flops = r->flops,
                     .seconds = r->seconds,
                     .rank = r->rank};
    evolution_apply(e, &rec, e->inflight_alpha + slot * L, e->inflight_kappa + slot * L);
    evolution_push_member(e, r->id);
    evolution_remove_inflight(e, slot);
    return 0;
}

int evolution_finished(const Evolution *e) { return e->n_history >= e->p.evaluations; }

const EvoRecord *evolution_best(const Evolution *e, const double **alpha, const double **kappa)
{
    if (e->best_row < 0) return NULL;
    size_t L = (size_t)e->n_layers;
    if (alpha) *alpha = e->history_alpha + (size_t)e->best_row * L;
    if (kappa) *kappa = e->history_kappa + (size_t)e->best_row * L;
    return &e->history[e->best_row];
}

double evolution_population_mean(const Evolution *e)
{
    double sum = 0.0;
    int n = 0;
    for (int i = 0; i < e->n_population; i++) {
        double f = evolution_fitness_of(e, e->population[i]);
        if (isfinite(f)) {
            sum += f;
            n++;
        }
    }
    return n ? sum / n : NAN;
}

void evolution_get_state(const Evolution *e, EvoState *s)
{
    s->next_id = e->next_id;
    s->n_history = e->n_history;
    s->history = e->history;
    s->history_alpha = e->history_alpha;
    s->history_kappa = e->history_kappa;
    s->n_population = e->n_population;
    s->population = e->population;
    s->n_inflight = e->n_inflight;
    s->inflight_id = e->inflight_id;
    s->inflight_parent = e->inflight_parent;
    s->inflight_alpha = e->inflight_alpha;
    s->inflight_kappa = e->inflight_kappa;
}

/* Consistency of a saved state against e's params: every id below next_id exactly once in
 * history or in flight, parents earlier ids, population ids reported and distinct. */
static int evolution_check_state(const Evolution *e, const EvoState *s, Err *err)
{
    int E = e->p.evaluations, P = e->p.population;
    if (s->next_id < 0 || s->next_id > E)
        return err_set(err, LEGR_EXIT_DATA, "search state: next_id %d outside [0, %d]",
                       s->next_id, E);
    if (s->n_history < 0 || s->n_inflight < 0 || s->n_history + s->n_inflight != s->next_id)
        return err_set(err, LEGR_EXIT_DATA,
                       "search state: %d results + %d in flight do not account for %d ids",
                       s->n_history, s->n_inflight, s->next_id);
    int expect_pop = s->n_history < P ? s->n_history : P;
    if (s->n_population != expect_pop)
        return err_set(err, LEGR_EXIT_DATA,
                       "search state: population has %d members, expected %d for %d results",
                       s->n_population, expect_pop, s->n_history);
    unsigned char *seen = xcalloc((size_t)E, 1); /* 1 reported, 2 in flight, |4 in population */
    int rc = 0;
    for (int i = 0; i < s->n_history + s->n_inflight && rc == 0; i++) {
        int hist = i < s->n_history;
        int id = hist ? s->history[i].id : s->inflight_id[i - s->n_history];
        int parent = hist ? s->history[i].parent : s->inflight_parent[i - s->n_history];
        if (id < 0 || id >= s->next_id || seen[id])
            rc = err_set(err, LEGR_EXIT_DATA, "search state: id %d out of range or repeated", id);
        else if ((id < P && parent != -1) || (id >= P && (parent < 0 || parent >= id)))
            rc = err_set(err, LEGR_EXIT_DATA, "search state: candidate %d has parent %d", id,
                         parent);
        else
            seen[id] = hist ? 1 : 2;
    }
    for (int i = 0; i < s->n_population && rc == 0; i++) {
        int id = s->population[i];
        if (id < 0 || id >= E || (seen[id] & 3) != 1 || (seen[id] & 4))
            rc = err_set(err, LEGR_EXIT_DATA,
                         "search state: population member %d is not a distinct reported id", id);
        else
            seen[id] |= 4;
    }
    free(seen);
    return rc;
}

int evolution_restore(Evolution *e, const EvoState *s, Err *err)
{
    CHECK(e->next_id == 0 && e->n_history == 0 && e->n_inflight == 0,
          "evolution_restore: target is not freshly initialised");
    if (evolution_check_state(e, s, err) != 0) return -1;
    size_t L = (size_t)e->n_layers;
    for (int i = 0; i < s->n_history; i++)
        evolution_apply(e, &s->history[i], s->history_alpha + (size_t)i * L,
                        s->history_kappa + (size_t)i * L);
    memcpy(e->population, s->population, (size_t)s->n_population * sizeof(int));
    e->n_population = s->n_population;
    /* Keep in-flight candidates in ascending id order; they are handed out again first. */
    for (int i = 0; i < s->n_inflight; i++) {
        int slot = 0;
        while (slot < e->n_inflight && e->inflight_id[slot] < s->inflight_id[i]) slot++;
        size_t tail = (size_t)(e->n_inflight - slot);
        memmove(e->inflight_id + slot + 1, e->inflight_id + slot, tail * sizeof(int));
        memmove(e->inflight_parent + slot + 1, e->inflight_parent + slot, tail * sizeof(int));
        memmove(e->inflight_alpha + (slot + 1) * L, e->inflight_alpha + slot * L,
                tail * L * sizeof(double));
        memmove(e->inflight_kappa + (slot + 1) * L, e->inflight_kappa + slot * L,
                tail * L * sizeof(double));
        e->inflight_id[slot] = s->inflight_id[i];
        e->inflight_parent[slot] = s->inflight_parent[i];
        memcpy(e->inflight_alpha + slot * L, s->inflight_alpha + (size_t)i * L, L * sizeof(double));
        memcpy(e->inflight_kappa + slot * L, s->inflight_kappa + (size_t)i * L, L * sizeof(double));
        e->n_inflight++;
    }
    for (int i = 0; i < e->n_inflight; i++) e->inflight_issued[i] = 0;
    e->next_id = s->next_id;
    return 0;
}
