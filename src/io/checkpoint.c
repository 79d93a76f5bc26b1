/* The "legr-checkpoint" HDF5 file: the complete evolution state, written atomically. */
#include "legr/h5io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"

/* The per-candidate columns of /search/history and /search/inflight. */
static int write_rows(hid_t g, int n, int L, const int *id, const int *parent,
                      const double *alpha, const double *kappa, Err *err)
{
    hsize_t d1[1] = {(hsize_t)n}, d2[2] = {(hsize_t)n, (hsize_t)L};
    return h5u_write(g, "id", H5T_NATIVE_INT, H5T_STD_I32LE, 1, d1, id, err) ||
                   h5u_write(g, "parent", H5T_NATIVE_INT, H5T_STD_I32LE, 1, d1, parent, err) ||
                   h5u_write(g, "alpha", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 2, d2, alpha, err) ||
                   h5u_write(g, "kappa", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 2, d2, kappa, err)
               ? -1
               : 0;
}

static int write_history(hid_t g, const Evolution *e, const EvoState *s, Err *err)
{
    int n = s->n_history;
    hsize_t d1[1] = {(hsize_t)n};
    int *id = xcalloc((size_t)n + 1, sizeof(int)), *parent = xcalloc((size_t)n + 1, sizeof(int));
    int *rank = xcalloc((size_t)n + 1, sizeof(int));
    double *col[4];
    for (int c = 0; c < 4; c++) col[c] = xcalloc((size_t)n + 1, sizeof(double));
    for (int i = 0; i < n; i++) {
        const EvoRecord *r = &s->history[i];
        id[i] = r->id;
        parent[i] = r->parent;
        rank[i] = r->rank;
        col[0][i] = r->fitness;
        col[1][i] = r->accuracy;
        col[2][i] = r->flops;
        col[3][i] = r->seconds;
    }
    static const char *const names[4] = {"fitness", "accuracy", "flops", "seconds"};
    int rc = write_rows(g, n, e->n_layers, id, parent, s->history_alpha, s->history_kappa, err) ||
             h5u_write(g, "rank", H5T_NATIVE_INT, H5T_STD_I32LE, 1, d1, rank, err);
    for (int c = 0; c < 4 && rc == 0; c++)
        rc = h5u_write(g, names[c], H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, d1, col[c], err);
    free(id);
    free(parent);
    free(rank);
    for (int c = 0; c < 4; c++) free(col[c]);
    return rc ? -1 : 0;
}

static int write_search(hid_t fid, const Evolution *e, Err *err)
{
    EvoState s;
    evolution_get_state(e, &s);
    hid_t g = H5Gcreate2(fid, "search", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gh = g >= 0 ? H5Gcreate2(g, "history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    hid_t gi = gh >= 0 ? H5Gcreate2(g, "inflight", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = -1;
    if (gi < 0) {
        err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create the /search groups");
        goto out;
    }
    const EvoRecord *best = evolution_best(e, NULL, NULL);
    int best_id = best ? best->id : -1;
    hsize_t dl[1] = {(hsize_t)e->n_layers}, dp[1] = {(hsize_t)s.n_population};
    if (h5u_set_attr(g, ".", "population", H5T_NATIVE_INT, &e->p.population, err) ||
        h5u_set_attr(g, ".", "sample", H5T_NATIVE_INT, &e->p.sample, err) ||
        h5u_set_attr(g, ".", "evaluations", H5T_NATIVE_INT, &e->p.evaluations, err) ||
        h5u_set_attr(g, ".", "mutate_fraction", H5T_NATIVE_DOUBLE, &e->p.mutate_fraction, err) ||
        h5u_set_attr(g, ".", "sigma", H5T_NATIVE_DOUBLE, &e->p.sigma, err) ||
        h5u_set_attr(g, ".", "n_layers", H5T_NATIVE_INT, &e->n_layers, err) ||
        h5u_set_attr(g, ".", "seed", H5T_NATIVE_ULLONG, &e->seed, err) ||
        h5u_set_attr_string(g, ".", "rng",
                            "philox4x32-10; the draws of candidate i come from stream "
                            "(seed, RNG_PURPOSE_EVOLUTION=5, i), so seed is the whole RNG state",
                            err) ||
        h5u_set_attr(g, ".", "next_id", H5T_NATIVE_INT, &s.next_id, err) ||
        h5u_set_attr(g, ".", "best_id", H5T_NATIVE_INT, &best_id, err) ||
        h5u_write(g, "kappa_std", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, dl, e->kappa_std, err) ||
        h5u_write(g, "population", H5T_NATIVE_INT, H5T_STD_I32LE, 1, dp, s.population, err) ||
        write_history(gh, e, &s, err) ||
        write_rows(gi, s.n_inflight, e->n_layers, s.inflight_id, s.inflight_parent,
                   s.inflight_alpha, s.inflight_kappa, err))
        goto out;
    rc = 0;
out:
    if (gi >= 0) H5Gclose(gi);
    if (gh >= 0) H5Gclose(gh);
    if (g >= 0) H5Gclose(g);
    return rc;
}

int h5_checkpoint_save(const char *path, const Evolution *e, const char *config_text,
                       unsigned long long base_hash, const char *stage, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    Path tmp;
    int rc = -1;
    hid_t fid = h5u_create_tmp(path, &tmp, H5IO_CHECKPOINT_FORMAT,
                               H5IO_CHECKPOINT_VERSION, config_text, err);
    if (fid < 0) goto out;
    if (h5u_set_attr(fid, ".", "base_hash", H5T_NATIVE_ULLONG, &base_hash, err) ||
        h5u_set_attr_string(fid, ".", "stage", stage ? stage : "", err) ||
        write_search(fid, e, err)) {
        h5u_discard(fid, tmp.s);
        goto out;
    }
    rc = h5u_commit(fid, tmp.s, path, err);
out:
    h5u_quiet_end(&q);
    return rc;
}

/* Arrays read from a file, owned here, viewed by an EvoState. */
typedef struct {
    EvoRecord *history;
    double *history_alpha, *history_kappa;
    int *population;
    int *inflight_id, *inflight_parent;
    double *inflight_alpha, *inflight_kappa;
} StateArrays;

static void state_arrays_free(StateArrays *a)
{
    free(a->history);
    free(a->history_alpha);
    free(a->history_kappa);
    free(a->population);
    free(a->inflight_id);
    free(a->inflight_parent);
    free(a->inflight_alpha);
    free(a->inflight_kappa);
}

/* Every value of the stored array `name` must lie in [min, max] (so be finite). */
static int check_values(const double *v, size_t n, double min, double max, const char *name,
                        const char *path, Err *err)
{
    for (size_t i = 0; i < n; i++)
        if (!(v[i] >= min && v[i] <= max))
            return err_set(err, LEGR_EXIT_DATA, "%s: /search/%s[%zu] = %g: must be in [%g, %g]",
                           path, name, i, v[i], min, max);
    return 0;
}

/* Length of the 1-D dataset `name`, bounded by max. */
static int read_length(hid_t g, const char *name, int max, int *n, const char *path, Err *err)
{
    int ndim;
    hsize_t dims[4];
    if (h5u_shape(g, name, &ndim, dims, path, err)) return -1;
    if (ndim != 1 || dims[0] > (hsize_t)max)
        return err_set(err, LEGR_EXIT_DATA, "%s: dataset '%s' must be a list of at most %d",
                       path, name, max);
    *n = (int)dims[0];
    return 0;
}

static int read_rows(hid_t g, const char *gname, int n, int L, int *id, int *parent,
                     double *alpha, double *kappa, const char *path, Err *err)
{
    char name[64];
    hsize_t d1[1] = {(hsize_t)n}, d2[2] = {(hsize_t)n, (hsize_t)L};
    static const char *const cols[4] = {"id", "parent", "alpha", "kappa"};
    void *dst[4] = {id, parent, alpha, kappa};
    for (int c = 0; c < 4; c++) {
        snprintf(name, sizeof name, "%s/%s", gname, cols[c]);
        if (h5u_read(g, name, c < 2 ? H5T_NATIVE_INT : H5T_NATIVE_DOUBLE, c < 2 ? 1 : 2,
                     c < 2 ? d1 : d2, dst[c], path, err))
            return -1;
    }
    return 0;
}

static int read_history(hid_t g, int n, int L, StateArrays *a, const char *path, Err *err)
{
    size_t m = (size_t)n + 1;
    int *id = xcalloc(m, sizeof(int)), *parent = xcalloc(m, sizeof(int));
    int *rank = xcalloc(m, sizeof(int));
    double *col[4];
    for (int c = 0; c < 4; c++) col[c] = xcalloc(m, sizeof(double));
    a->history = xcalloc(m, sizeof(EvoRecord));
    a->history_alpha = xcalloc(m * (size_t)L, sizeof(double));
    a->history_kappa = xcalloc(m * (size_t)L, sizeof(double));
    hsize_t d1[1] = {(hsize_t)n};
    static const char *const names[4] = {"history/fitness", "history/accuracy", "history/flops",
                                          "history/seconds"};
    int rc = read_rows(g, "history", n, L, id, parent, a->history_alpha, a->history_kappa, path,
                       err) ||
             h5u_read(g, "history/rank", H5T_NATIVE_INT, 1, d1, rank, path, err);
    for (int c = 0; c < 4 && rc == 0; c++)
        rc = h5u_read(g, names[c], H5T_NATIVE_DOUBLE, 1, d1, col[c], path, err);
    for (int i = 0; i < n && rc == 0; i++)
        if (isnan(col[0][i]))
            rc = err_set(err, LEGR_EXIT_DATA, "%s: /search/history/fitness[%d] is NaN (a failed "
                         "candidate is stored as +inf)", path, i);
    for (int i = 0; i < n && rc == 0; i++)
        a->history[i] = (EvoRecord){.id = id[i],
                                    .parent = parent[i],
                                    .fitness = col[0][i],
                                    .accuracy = col[1][i],
                                    .flops = col[2][i],
                                    .seconds = col[3][i],
                                    .rank = rank[i]};
    free(id);
    free(parent);
    free(rank);
    for (int c = 0; c < 4; c++) free(col[c]);
    return rc ? -1 : 0;
}

/* Params, L, kappa_std and seed: enough to evolution_init the target. */
static int read_setup(hid_t g, Evolution *e, const char *path, Err *err)
{
    EvoParams p;
    int L = 0;
    unsigned long long seed = 0;
    if (h5u_get_attr(g, ".", "population", H5T_NATIVE_INT, &p.population, path, err) ||
        h5u_get_attr(g, ".", "sample", H5T_NATIVE_INT, &p.sample, path, err) ||
        h5u_get_attr(g, ".", "evaluations", H5T_NATIVE_INT, &p.evaluations, path, err) ||
        h5u_get_attr(g, ".", "mutate_fraction", H5T_NATIVE_DOUBLE, &p.mutate_fraction, path,
                     err) ||
        h5u_get_attr(g, ".", "sigma", H5T_NATIVE_DOUBLE, &p.sigma, path, err) ||
        h5u_get_attr(g, ".", "n_layers", H5T_NATIVE_INT, &L, path, err) ||
        h5u_get_attr(g, ".", "seed", H5T_NATIVE_ULLONG, &seed, path, err))
        return -1;
    Err sub = {0};
    if (evolution_params_check(&p, &sub) != 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: stored search parameters are invalid: %s", path,
                       sub.msg);
    if (p.evaluations > 10000000 || p.population > 10000000)
        return err_set(err, LEGR_EXIT_DATA, "%s: stored search.evaluations = %d, search.population "
                       "= %d: more than 10^7", path, p.evaluations, p.population);
    if (L < 1 || L > 1000000)
        return err_set(err, LEGR_EXIT_DATA, "%s: n_layers = %d is invalid", path, L);
    double *kstd = xcalloc((size_t)L, sizeof(double));
    hsize_t dl[1] = {(hsize_t)L};
    if (h5u_read(g, "kappa_std", H5T_NATIVE_DOUBLE, 1, dl, kstd, path, err) ||
        check_values(kstd, (size_t)L, 0.0, 1e30, "kappa_std", path, err)) {
        free(kstd);
        return -1;
    }
    evolution_init(e, &p, L, kstd, seed);
    free(kstd);
    return 0;
}

static int read_search(hid_t fid, Evolution *e, const char *path, Err *err)
{
    if (H5Lexists(fid, "search", H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: group /search is missing", path);
    hid_t g = H5Gopen2(fid, "search", H5P_DEFAULT);
    if (g < 0) return err_set(err, LEGR_EXIT_DATA, "%s: /search is not a group", path);
    StateArrays a = {0};
    EvoState s = {0};
    int rc = -1, inited = 0;
    if (read_setup(g, e, path, err)) goto out;
    inited = 1;
    int L = e->n_layers, E = e->p.evaluations;
    if (h5u_get_attr(g, ".", "next_id", H5T_NATIVE_INT, &s.next_id, path, err) ||
        read_length(g, "population", e->p.population, &s.n_population, path, err) ||
        read_length(g, "history/id", E, &s.n_history, path, err) ||
        read_length(g, "inflight/id", E, &s.n_inflight, path, err))
        goto out;
    hsize_t dp[1] = {(hsize_t)s.n_population};
    a.population = xcalloc((size_t)s.n_population + 1, sizeof(int));
    a.inflight_id = xcalloc((size_t)s.n_inflight + 1, sizeof(int));
    a.inflight_parent = xcalloc((size_t)s.n_inflight + 1, sizeof(int));
    a.inflight_alpha = xcalloc(((size_t)s.n_inflight + 1) * (size_t)L, sizeof(double));
    a.inflight_kappa = xcalloc(((size_t)s.n_inflight + 1) * (size_t)L, sizeof(double));
    if (h5u_read(g, "population", H5T_NATIVE_INT, 1, dp, a.population, path, err) ||
        read_history(g, s.n_history, L, &a, path, err) ||
        read_rows(g, "inflight", s.n_inflight, L, a.inflight_id, a.inflight_parent,
                  a.inflight_alpha, a.inflight_kappa, path, err))
        goto out;
    /* alpha scales filter norms (log-normal steps from 1, kept in [1e-300, 1e300]), kappa shifts
     * them; a NaN or infinity would rank every filter alike without any error. */
    size_t nh = (size_t)s.n_history * (size_t)L, ni = (size_t)s.n_inflight * (size_t)L;
    if (check_values(a.history_alpha, nh, 1e-300, 1e300, "history/alpha", path, err) ||
        check_values(a.history_kappa, nh, -1e300, 1e300, "history/kappa", path, err) ||
        check_values(a.inflight_alpha, ni, 1e-300, 1e300, "inflight/alpha", path, err) ||
        check_values(a.inflight_kappa, ni, -1e300, 1e300, "inflight/kappa", path, err))
        goto out;
    s.history = a.history;
    s.history_alpha = a.history_alpha;
    s.history_kappa = a.history_kappa;
    s.population = a.population;
    s.inflight_id = a.inflight_id;
    s.inflight_parent = a.inflight_parent;
    s.inflight_alpha = a.inflight_alpha;
    s.inflight_kappa = a.inflight_kappa;
    Err sub = {0};
    if (evolution_restore(e, &s, &sub) != 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: inconsistent search state: %s", path, sub.msg);
        goto out;
    }
    rc = 0;
out:
    if (rc && inited) evolution_free(e);
    state_arrays_free(&a);
    H5Gclose(g);
    return rc;
}

int h5_checkpoint_load(const char *path, Evolution *e, char **config_text,
                       unsigned long long *base_hash, char **stage, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    memset(e, 0, sizeof *e);
    char *cfg = NULL, *stg = NULL;
    unsigned long long hash = 0;
    int rc = -1;
    hid_t fid = h5u_open_read(path, H5IO_CHECKPOINT_FORMAT, H5IO_CHECKPOINT_VERSION, err);
    if (fid < 0) goto out;
    if (h5u_get_attr_string(fid, ".", "config", &cfg, path, err) ||
        h5u_get_attr_string(fid, ".", "stage", &stg, path, err) ||
        h5u_get_attr(fid, ".", "base_hash", H5T_NATIVE_ULLONG, &hash, path, err) ||
        read_search(fid, e, path, err))
        goto out;
    if (config_text) {
        *config_text = cfg;
        cfg = NULL;
    }
    if (stage) {
        *stage = stg;
        stg = NULL;
    }
    if (base_hash) *base_hash = hash;
    rc = 0;
out:
    free(cfg);
    free(stg);
    if (fid >= 0) H5Fclose(fid);
    h5u_quiet_end(&q);
    return rc;
}
