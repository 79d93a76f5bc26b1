/* Load a libconfig job file into Config: defaults, types, ranges, unknown keys rejected. */
#include "legr/config.h"
#include "legr/evolution.h"
#include "legr/prune.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const cfg_dataset_names[CFG_DATASET_COUNT] = {"fashion-mnist", "mnist", "cifar10",
                                                          "cifar100", "synthetic", "hdf5"};
_Static_assert(CFG_DATASET_COUNT == 6, "cfg_dataset_names");
const char *const cfg_arch_names[CFG_ARCH_COUNT] = {
    "resnet",      "resnet18",          "resnet34", "resnet50", "resnet101",
    "mobilenetv2", "mobilenetv2_cifar", "file"};
_Static_assert(CFG_ARCH_COUNT == 8, "cfg_arch_names");
const char *const cfg_schedule_names[CFG_SCHEDULE_COUNT] = {"constant", "multistep", "cosine"};
_Static_assert(CFG_SCHEDULE_COUNT == 3, "cfg_schedule_names");
/* search.metric and family.ranking take the pruning layer's names: one table per concern. */
_Static_assert((int)CFG_METRIC_COUNT == (int)PRUNE_METRIC_COUNT &&
                   (int)CFG_METRIC_L1_WEIGHT == (int)PRUNE_METRIC_L1_WEIGHT &&
                   (int)CFG_METRIC_L2_BN == (int)PRUNE_METRIC_L2_BN &&
                   (int)CFG_METRIC_L2_BN_PARAM == (int)PRUNE_METRIC_L2_BN_PARAM,
               "CfgMetric and PruneMetric must list the same metrics in the same order");
_Static_assert((int)CFG_RANKING_COUNT == (int)PRUNE_METHOD_COUNT &&
                   (int)CFG_RANKING_IDENTITY == (int)PRUNE_METHOD_IDENTITY &&
                   (int)CFG_RANKING_UNIFORM == (int)PRUNE_METHOD_UNIFORM &&
                   (int)CFG_RANKING_RANDOM == (int)PRUNE_METHOD_RANDOM,
               "CfgRanking and PruneMethod must list the same methods in the same order");
const char *const cfg_fitness_names[CFG_FITNESS_COUNT] = {"val_loss", "val_acc"};
_Static_assert(CFG_FITNESS_COUNT == 2, "cfg_fitness_names");
const char *const cfg_batches_names[CFG_BATCHES_COUNT] = {"shared", "per_candidate"};
_Static_assert(CFG_BATCHES_COUNT == 2, "cfg_batches_names");
const char *const cfg_mode_names[CFG_MODE_COUNT] = {"async", "deterministic"};
_Static_assert(CFG_MODE_COUNT == 2, "cfg_mode_names");

/* Enum fields are stored and read through int pointers. */
_Static_assert(sizeof(CfgDataset) == sizeof(int) && sizeof(CfgRanking) == sizeof(int),
               "enum fields must be int-sized");

void config_defaults(Config *c)
{
    memset(c, 0, sizeof *c); /* also zeroes padding and unused slots, so memcmp compares */
    snprintf(c->run.name, sizeof c->run.name, "legr");
    c->run.seed = 1;
    snprintf(c->run.out_dir, sizeof c->run.out_dir, "runs");
    c->run.threads = 0;
    c->run.log_every = 50;

    c->data.dataset = CFG_DATASET_FASHION_MNIST;
    snprintf(c->data.dir, sizeof c->data.dir, "/usr/share/datasets/fashion-mnist");
    c->data.val_fraction = 0.1;
    c->data.split_seed = -1;
    c->data.augment = 1;
    c->data.crop_pad = 2;
    c->data.flip = 1;
    c->data.train_limit = 0;
    c->data.test_limit = 0;
    c->data.synthetic_n = 2048;
    c->data.synthetic_size = 16;
    c->data.synthetic_classes = 10;
    c->data.cache_mb = 256;

    c->model.arch = CFG_ARCH_RESNET;
    c->model.depth = 20;
    c->model.width = 1.0;
    c->model.init[0] = '\0';

    c->pretrain.epochs = 30;
    c->pretrain.batch = 128;
    c->pretrain.lr = 0.1;
    c->pretrain.momentum = 0.9;
    c->pretrain.weight_decay = 5e-4;
    c->pretrain.nesterov = 0;
    c->pretrain.schedule = CFG_SCHEDULE_COSINE;
    c->pretrain.n_milestones = 0;
    c->pretrain.gamma = 0.1;

    c->search.enabled = 1;
    c->search.n_target_flops = 1;
    c->search.target_flops[0] = 0.5;
    c->search.metric = CFG_METRIC_L2_WEIGHT;
    c->search.evaluations = 400;
    c->search.population = 64;
    c->search.sample = 16;
    c->search.mutate_fraction = 0.1;
    c->search.sigma = 1.0;
    c->search.tau = 200;
    c->search.lr = 0.01;
    c->search.momentum = 0.9;
    c->search.weight_decay = 5e-4;
    c->search.batch = 128;
    c->search.fitness = CFG_FITNESS_VAL_LOSS;
    c->search.batches = CFG_BATCHES_SHARED;
    c->search.mode = CFG_MODE_ASYNC;
    c->search.sync_batch = 8;
    c->search.checkpoint_every = 10;
    c->search.val_limit = 0;
    c->search.null_eval = 0;
    c->search.reuse_fitness = 1;
    c->search.safeguard = 0.1;
    c->search.round_to = 1;
    c->search.rescore_top = 0;
    c->search.rescore_sequences = 3;

    c->family.enabled = 1;
    c->family.n_flops = 3;
    c->family.flops[0] = 0.7;
    c->family.flops[1] = 0.5;
    c->family.flops[2] = 0.3;
    c->family.epochs = 10;
    c->family.lr = 0.01;
    c->family.momentum = 0.9;
    c->family.weight_decay = 5e-4;
    c->family.nesterov = 1;
    c->family.batch = 128;
    c->family.ranking = CFG_RANKING_LEGR;
    c->family.n_baselines = 0;
    c->family.latency_repeats = 20;
    c->family.ranks_per_level = 0;
}

/* ---- the key table: one row per key, in the order config_to_string writes them ---- */

typedef enum {
    KEY_INT,
    KEY_FLOAT, /* integer literals are accepted too */
    KEY_BOOL,
    KEY_STRING,
    KEY_ENUM,       /* a string from names[first_name..n_names) */
    KEY_INT_ARRAY,  /* [..] or (..) of integers */
    KEY_FLOAT_ARRAY,
    KEY_FLOAT_LIST, /* a number, or an array of at least one; printed as a number when one */
    KEY_ENUM_ARRAY
} KeyType;

typedef enum { BOUND_NONE = 0, BOUND_INCL, BOUND_EXCL } BoundKind;

typedef struct {
    const char *group;
    const char *key;
    KeyType type;
    size_t off;       /* offsetof the value (the first element of an array) */
    size_t cap;       /* string buffer size, array capacity */
    size_t count_off; /* arrays: offsetof their int element count */
    const char *const *names;
    int first_name;
    int n_names;
    BoundKind lo_kind;
    double lo;
    BoundKind hi_kind;
    double hi;
} KeySpec;

#define BOUNDS(lk, l, hk, h) BOUND_##lk, (l), BOUND_##hk, (h)
#define KEY_I(g, k, lk, l, hk, h) {CFG_FIELD_T(g, k, KEY_INT), 0, 0, NULL, 0, 0, BOUNDS(lk, l, hk, h)}
#define KEY_F(g, k, lk, l, hk, h) {CFG_FIELD_T(g, k, KEY_FLOAT), 0, 0, NULL, 0, 0, BOUNDS(lk, l, hk, h)}
#define KEY_B(g, k) {CFG_FIELD_T(g, k, KEY_BOOL), 0, 0, NULL, 0, 0, BOUNDS(NONE, 0, NONE, 0)}
#define KEY_S(g, k) \
    {CFG_FIELD_T(g, k, KEY_STRING), sizeof(((Config *)0)->g.k), 0, NULL, 0, 0, \
     BOUNDS(NONE, 0, NONE, 0)}
#define KEY_E(g, k, tbl, cnt) \
    {CFG_FIELD_T(g, k, KEY_ENUM), 0, 0, tbl, 0, cnt, BOUNDS(NONE, 0, NONE, 0)}
#define CFG_FIELD_T(g, k, t) #g, #k, t, offsetof(Config, g.k)
#define ARRAY_CAP(g, k) (sizeof(((Config *)0)->g.k) / sizeof(((Config *)0)->g.k[0]))

static const KeySpec key_specs[] = {
    KEY_S(run, name),
    KEY_I(run, seed, INCL, 0, NONE, 0),
    KEY_S(run, out_dir),
    KEY_I(run, threads, INCL, 0, NONE, 0),
    KEY_I(run, log_every, INCL, 1, NONE, 0),

    KEY_E(data, dataset, cfg_dataset_names, CFG_DATASET_COUNT),
    KEY_S(data, dir),
    KEY_F(data, val_fraction, INCL, 0, INCL, 0.9),
    KEY_I(data, split_seed, INCL, -1, NONE, 0),
    KEY_B(data, augment),
    KEY_I(data, crop_pad, INCL, 0, INCL, 16),
    KEY_B(data, flip),
    KEY_I(data, train_limit, INCL, 0, NONE, 0),
    KEY_I(data, test_limit, INCL, 0, NONE, 0),
    KEY_I(data, synthetic_n, INCL, 2, NONE, 0),
    KEY_I(data, synthetic_size, INCL, 4, INCL, 512),
    KEY_I(data, synthetic_classes, INCL, 2, INCL, 256),
    KEY_S(data, file),
    KEY_I(data, crop, INCL, 0, INCL, 4096),
    KEY_I(data, resize, INCL, 0, INCL, 8192),
    KEY_I(data, channels, INCL, 0, INCL, 256),
    KEY_I(data, classes, INCL, 0, NONE, 0),
    KEY_I(data, cache_mb, INCL, 0, INCL, 1048576),

    KEY_E(model, arch, cfg_arch_names, CFG_ARCH_COUNT),
    KEY_I(model, depth, INCL, 8, NONE, 0),
    KEY_F(model, width, EXCL, 0, INCL, 8),
    KEY_S(model, init),

    KEY_I(pretrain, epochs, INCL, 0, NONE, 0),
    KEY_I(pretrain, batch, INCL, 1, NONE, 0),
    KEY_F(pretrain, lr, EXCL, 0, NONE, 0),
    KEY_F(pretrain, momentum, INCL, 0, EXCL, 1),
    KEY_F(pretrain, weight_decay, INCL, 0, NONE, 0),
    KEY_B(pretrain, nesterov),
    KEY_E(pretrain, schedule, cfg_schedule_names, CFG_SCHEDULE_COUNT),
    {CFG_FIELD_T(pretrain, milestones, KEY_INT_ARRAY), ARRAY_CAP(pretrain, milestones),
     offsetof(Config, pretrain.n_milestones), NULL, 0, 0, BOUNDS(INCL, 1, NONE, 0)},
    KEY_F(pretrain, gamma, EXCL, 0, INCL, 1),

    KEY_B(search, enabled),
    {CFG_FIELD_T(search, target_flops, KEY_FLOAT_LIST), ARRAY_CAP(search, target_flops),
     offsetof(Config, search.n_target_flops), NULL, 0, 0, BOUNDS(EXCL, 0, EXCL, 1)},
    KEY_E(search, metric, prune_metric_names, CFG_METRIC_COUNT),
    KEY_I(search, evaluations, INCL, 2, NONE, 0),
    KEY_I(search, population, INCL, 2, NONE, 0),
    KEY_I(search, sample, INCL, 1, NONE, 0),
    KEY_F(search, mutate_fraction, EXCL, 0, INCL, 1),
    KEY_F(search, sigma, EXCL, 0, INCL, EVO_SIGMA_MAX),
    KEY_I(search, tau, INCL, 0, NONE, 0),
    KEY_F(search, lr, EXCL, 0, NONE, 0),
    KEY_F(search, momentum, INCL, 0, EXCL, 1),
    KEY_F(search, weight_decay, INCL, 0, NONE, 0),
    KEY_I(search, batch, INCL, 1, NONE, 0),
    KEY_E(search, fitness, cfg_fitness_names, CFG_FITNESS_COUNT),
    KEY_E(search, batches, cfg_batches_names, CFG_BATCHES_COUNT),
    KEY_E(search, mode, cfg_mode_names, CFG_MODE_COUNT),
    KEY_I(search, sync_batch, INCL, 1, NONE, 0),
    KEY_I(search, checkpoint_every, INCL, 1, NONE, 0),
    KEY_I(search, val_limit, INCL, 0, NONE, 0),
    KEY_I(search, train_subset, INCL, 0, NONE, 0),
    KEY_F(search, safeguard, INCL, 0, EXCL, 1),
    KEY_I(search, round_to, INCL, 1, INCL, 64),
    KEY_B(search, null_eval),
    KEY_B(search, reuse_fitness),
    KEY_I(search, rescore_top, INCL, 0, NONE, 0),
    KEY_I(search, rescore_sequences, INCL, 1, NONE, 0),

    KEY_B(family, enabled),
    {CFG_FIELD_T(family, flops, KEY_FLOAT_ARRAY), ARRAY_CAP(family, flops),
     offsetof(Config, family.n_flops), NULL, 0, 0, BOUNDS(EXCL, 0, EXCL, 1)},
    KEY_I(family, epochs, INCL, 0, NONE, 0),
    KEY_F(family, lr, EXCL, 0, NONE, 0),
    KEY_F(family, momentum, INCL, 0, EXCL, 1),
    KEY_F(family, weight_decay, INCL, 0, NONE, 0),
    KEY_B(family, nesterov),
    KEY_I(family, batch, INCL, 1, NONE, 0),
    KEY_E(family, ranking, prune_method_names, CFG_RANKING_COUNT),
    {CFG_FIELD_T(family, baselines, KEY_ENUM_ARRAY), ARRAY_CAP(family, baselines),
     offsetof(Config, family.n_baselines), prune_method_names, CFG_RANKING_IDENTITY,
     CFG_RANKING_COUNT, BOUNDS(NONE, 0, NONE, 0)},
    KEY_I(family, latency_repeats, INCL, 1, NONE, 0),
    KEY_I(family, ranks_per_level, INCL, 0, NONE, 0),
};
#define N_KEYS ((int)(sizeof key_specs / sizeof key_specs[0]))

static const char *const group_names[] = {"run", "data", "model", "pretrain", "search", "family"};
#define N_GROUPS ((int)(sizeof group_names / sizeof group_names[0]))

/* ---- loading ---- */

/* State of one load: the file name for messages and the line where each key was set. */
typedef struct {
    const char *name;
    int line[N_KEYS]; /* 0 = left at its default */
    Err *err;
} Loader;

static int key_find(const char *group, const char *key)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(key_specs[i].group, group) == 0 && strcmp(key_specs[i].key, key) == 0)
            return i;
    return -1;
}

/* "file:line: message" (or "file: message" when line is 0) as a usage error; returns -1. */
static int loader_fail(const Loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int loader_fail(const Loader *ld, int line, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return err_set(ld->err, LEGR_EXIT_USAGE, "%s:%d: %s", ld->name, line, msg);
    return err_set(ld->err, LEGR_EXIT_USAGE, "%s: %s", ld->name, msg);
}

static int setting_line(const config_setting_t *s)
{
    return (int)config_setting_source_line(s);
}

static const char *setting_type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    case CONFIG_TYPE_GROUP: return "a group";
    default: return "nothing";
    }
}

/* Shortest "%.*g" text that reads back as exactly v, with a '.' or an exponent so that
 * libconfig reads it as a float. */
static void format_double(char *buf, size_t size, double v)
{
    char tmp[32]; /* "%.17g" needs at most 24 characters */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    if (strpbrk(tmp, ".eEn"))
        snprintf(buf, size, "%s", tmp); /* already a float literal (or inf/nan) */
    else
        snprintf(buf, size, "%s.0", tmp); /* "1" would read back as an integer */
}

/* "(0, 1)", "[0, 0.9]", ">= 1", "> 0": the allowed range of a number key. */
static void format_range(char *buf, size_t size, const KeySpec *k)
{
    char lo[40], hi[40];
    snprintf(lo, sizeof lo, "%g", k->lo);
    snprintf(hi, sizeof hi, "%g", k->hi);
    if (k->lo_kind != BOUND_NONE && k->hi_kind != BOUND_NONE)
        snprintf(buf, size, "%c%s, %s%c", k->lo_kind == BOUND_INCL ? '[' : '(', lo, hi,
                 k->hi_kind == BOUND_INCL ? ']' : ')');
    else if (k->lo_kind != BOUND_NONE)
        snprintf(buf, size, "must be %s %s", k->lo_kind == BOUND_INCL ? ">=" : ">", lo);
    else
        snprintf(buf, size, "must be %s %s", k->hi_kind == BOUND_INCL ? "<=" : "<", hi);
}

static int in_range(const KeySpec *k, double v)
{
    if (k->lo_kind == BOUND_INCL && !(v >= k->lo)) return 0;
    if (k->lo_kind == BOUND_EXCL && !(v > k->lo)) return 0;
    if (k->hi_kind == BOUND_INCL && !(v <= k->hi)) return 0;
    if (k->hi_kind == BOUND_EXCL && !(v < k->hi)) return 0;
    return 1;
}

static int range_fail(const Loader *ld, int line, const KeySpec *k, const char *label,
                      const char *value)
{
    char range[96];
    format_range(range, sizeof range, k);
    if (k->lo_kind != BOUND_NONE && k->hi_kind != BOUND_NONE)
        return loader_fail(ld, line, "%s = %s is out of range %s", label, value, range);
    return loader_fail(ld, line, "%s = %s is out of range: %s", label, value, range);
}

/* s with non-printable bytes escaped (\n, \t, \xNN), so an echoed value stays on one line. */
static const char *escaped(const char *s, char *buf, size_t size)
{
    size_t o = 0;
    for (; *s && o + 5 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n') o += (size_t)snprintf(buf + o, size - o, "\\n");
        else if (ch == '\t') o += (size_t)snprintf(buf + o, size - o, "\\t");
        else if (ch < 0x20 || ch == 0x7f) o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
        else buf[o++] = (char)ch;
    }
    buf[o] = '\0';
    return buf;
}

/*
 * The integer literal of setting s as written in its file. libconfig 1.5 keeps an integer
 * without an L suffix in 32 bits, silently wrapping larger ones (99999999999 became 1215752191),
 * so the value is read again from the source line: after the key's name and its = or :, an
 * optional sign, decimal or 0x hex digits. Returns 1 and sets *v (errno-checked: a literal
 * beyond 64 bits is out of range too, *overflow = 1) and text, or 0 when the line cannot be
 * read that way (the setting's own value is then used).
 */
static int source_int(const config_setting_t *s, long long *v, int *overflow, char *text,
                      size_t size)
{
    const char *file = config_setting_source_file(s), *name = config_setting_name(s);
    int line = (int)config_setting_source_line(s);
    FILE *f = file && name ? fopen(file, "r") : NULL;
    if (!f) return 0;
    char buf[4096];
    int found = 0;
    for (int l = 1; fgets(buf, sizeof buf, f); l++) {
        if (l != line) continue;
        size_t nl = strlen(name);
        for (char *p = strstr(buf, name); p && !found; p = strstr(p + 1, name)) {
            if ((p > buf && (p[-1] == '_' || isalnum((unsigned char)p[-1]))) ||
                p[nl] == '_' || isalnum((unsigned char)p[nl]))
                continue;
            char *q = p + nl;
            while (*q == ' ' || *q == '\t') q++;
            if (*q != '=' && *q != ':') continue;
            q++;
            while (*q == ' ' || *q == '\t') q++;
            char *end;
            errno = 0;
            long long x = strtoll(q, &end, 0);
            if (end == q || (!isdigit((unsigned char)end[-1]) && !isxdigit((unsigned char)end[-1])))
                continue;
            *overflow = errno == ERANGE;
            *v = x;
            snprintf(text, size, "%.*s", (int)(end - q), q);
            found = 1;
        }
        break;
    }
    fclose(f);
    return found;
}

/* Read an integer setting s (label names it in messages) into *out, checking k's range. */
static int read_int(const Loader *ld, const config_setting_t *s, const KeySpec *k,
                    const char *label, int *out)
{
    int t = config_setting_type(s);
    int line = setting_line(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return loader_fail(ld, line, "%s must be an integer, not %s", label,
                           setting_type_name(s));
    long long v = config_setting_get_int64(s);
    char text[64];
    int overflow = 0;
    if (!source_int(s, &v, &overflow, text, sizeof text)) snprintf(text, sizeof text, "%lld", v);
    if (overflow || v < INT_MIN || v > INT_MAX)
        return loader_fail(ld, line, "%s = %s is out of range: integers here are at most %d in "
                           "magnitude", label, text, INT_MAX);
    if (!in_range(k, (double)v)) return range_fail(ld, line, k, label, text);
    *out = (int)v;
    return 0;
}

static int read_float(const Loader *ld, const config_setting_t *s, const KeySpec *k,
                      const char *label, double *out)
{
    int t = config_setting_type(s);
    int line = setting_line(s);
    double v;
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
        v = (double)config_setting_get_int64(s);
    else if (t == CONFIG_TYPE_FLOAT)
        v = config_setting_get_float(s);
    else
        return loader_fail(ld, line, "%s must be a number, not %s", label, setting_type_name(s));
    char text[48];
    format_double(text, sizeof text, v);
    if (!isfinite(v) || !in_range(k, v)) return range_fail(ld, line, k, label, text);
    *out = v;
    return 0;
}

static int read_enum(const Loader *ld, const config_setting_t *s, const KeySpec *k,
                     const char *label, int *out)
{
    int line = setting_line(s);
    char allowed[256] = "";
    for (int i = k->first_name; i < k->n_names; i++) {
        size_t len = strlen(allowed);
        snprintf(allowed + len, sizeof allowed - len, "%s%s", i > k->first_name ? ", " : "",
                 k->names[i]);
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return loader_fail(ld, line, "%s must be a string (one of %s), not %s", label, allowed,
                           setting_type_name(s));
    const char *v = config_setting_get_string(s);
    for (int i = k->first_name; i < k->n_names; i++) {
        if (strcmp(v, k->names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char shown[256];
    return loader_fail(ld, line, "%s = \"%s\" is not one of %s", label,
                       escaped(v, shown, sizeof shown), allowed);
}

static int read_array(const Loader *ld, const config_setting_t *s, const KeySpec *k,
                      const char *label, Config *c)
{
    int t = config_setting_type(s);
    int line = setting_line(s);
    const int floats = k->type == KEY_FLOAT_ARRAY || k->type == KEY_FLOAT_LIST;
    const char *what = k->type == KEY_INT_ARRAY ? "integers" : floats ? "numbers" : "strings";
    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return loader_fail(ld, line, "%s must be an array of %s like [a, b], not %s", label,
                           what, setting_type_name(s));
    int n = config_setting_length(s);
    if (n > (int)k->cap)
        return loader_fail(ld, line, "%s has %d values, at most %zu are allowed", label, n,
                           k->cap);
    if (n == 0 && k->type == KEY_FLOAT_LIST)
        return loader_fail(ld, line, "%s must hold at least one number", label);
    char *base = (char *)c + k->off;
    size_t elem = floats ? sizeof(double) : sizeof(int);
    memset(base, 0, elem * k->cap);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        char elabel[160];
        snprintf(elabel, sizeof elabel, "%s[%d]", label, i);
        int rc;
        if (k->type == KEY_INT_ARRAY)
            rc = read_int(ld, e, k, elabel, (int *)base + i);
        else if (floats)
            rc = read_float(ld, e, k, elabel, (double *)base + i);
        else
            rc = read_enum(ld, e, k, elabel, (int *)base + i);
        if (rc != 0) return -1;
    }
    *(int *)((char *)c + k->count_off) = n;
    return 0;
}

/* One setting `s` of group `group` into c. */
static int read_setting_in(Loader *ld, const char *group, const config_setting_t *s, Config *c);

/* Messages about a setting name the file it was written in (an @include'd one, maybe). */
static int read_setting(Loader *ld, const char *group, const config_setting_t *s, Config *c)
{
    const char *main_name = ld->name, *file = config_setting_source_file(s);
    if (file) ld->name = file;
    int rc = read_setting_in(ld, group, s, c);
    ld->name = main_name;
    return rc;
}

static int read_setting_in(Loader *ld, const char *group, const config_setting_t *s, Config *c)
{
    const char *key = config_setting_name(s);
    char label[128];
    snprintf(label, sizeof label, "%s.%s", group, key);
    int line = setting_line(s);
    int ki = key_find(group, key);
    if (ki < 0) return loader_fail(ld, line, "unknown key '%s'", label);
    const KeySpec *k = &key_specs[ki];
    void *field = (char *)c + k->off;
    int rc = 0;
    switch (k->type) {
    case KEY_INT: rc = read_int(ld, s, k, label, field); break;
    case KEY_FLOAT: rc = read_float(ld, s, k, label, field); break;
    case KEY_ENUM: rc = read_enum(ld, s, k, label, field); break;
    case KEY_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
            return loader_fail(ld, line, "%s must be true or false, not %s", label,
                               setting_type_name(s));
        *(int *)field = config_setting_get_bool(s) ? 1 : 0;
        break;
    case KEY_STRING: {
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return loader_fail(ld, line, "%s must be a string, not %s", label,
                               setting_type_name(s));
        const char *v = config_setting_get_string(s);
        if (strlen(v) >= k->cap)
            return loader_fail(ld, line, "%s is too long (%zu characters, at most %zu)", label,
                               strlen(v), k->cap - 1);
        memset(field, 0, k->cap);
        memcpy(field, v, strlen(v));
        break;
    }
    case KEY_FLOAT_LIST: {
        const int t = config_setting_type(s);
        if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) {
            rc = read_array(ld, s, k, label, c);
        } else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT) {
            rc = read_float(ld, s, k, label, field);
            if (rc == 0) *(int *)((char *)c + k->count_off) = 1;
        } else {
            rc = loader_fail(ld, setting_line(s), "%s must be a number or an array of numbers "
                             "like [a, b], not %s", label, setting_type_name(s));
        }
        break;
    }
    case KEY_INT_ARRAY:
    case KEY_FLOAT_ARRAY:
    case KEY_ENUM_ARRAY: rc = read_array(ld, s, k, label, c); break;
    }
    if (rc == 0) ld->line[ki] = line;
    return rc;
}

/* The line of the first of the named keys that the file set (0 if none was). */
static int key_line(const Loader *ld, const char *group, const char *key1, const char *key2)
{
    int l = ld->line[key_find(group, key1)];
    if (l == 0 && key2) l = ld->line[key_find(group, key2)];
    return l;
}

/* The keys of data.dataset = "hdf5": a file is needed, and the others' keys stay unset (by
 * value, so that the resolved text, which lists every key, loads back). */
static int check_data_file(const Loader *ld, const Config *c)
{
    const int hdf5 = c->data.dataset == CFG_DATASET_HDF5;
    if (hdf5 && c->data.file[0] == '\0')
        return loader_fail(ld, key_line(ld, "data", "dataset", "file"),
                           "data.dataset = \"hdf5\" reads the images from data.file, which is not "
                           "set");
    if (!hdf5) {
        static const char *const only[] = {"file", "crop", "resize", "channels", "classes"};
        const int set[] = {c->data.file[0] != '\0', c->data.crop != 0, c->data.resize != 0,
                           c->data.channels != 0, c->data.classes != 0};
        for (int i = 0; i < 5; i++) {
            if (set[i])
                return loader_fail(ld, key_line(ld, "data", only[i], NULL),
                                   "data.%s applies to data.dataset = \"hdf5\" only (this is "
                                   "\"%s\")", only[i], cfg_dataset_names[c->data.dataset]);
        }
    }
    if (c->data.resize != 0 && c->data.crop == 0)
        return loader_fail(ld, key_line(ld, "data", "resize", NULL),
                           "data.resize = %d needs data.crop (the evaluation resizes, then "
                           "crops the centre)", c->data.resize);
    if (c->data.resize != 0 && c->data.resize < c->data.crop)
        return loader_fail(ld, key_line(ld, "data", "resize", "crop"),
                           "data.resize = %d is smaller than data.crop = %d", c->data.resize,
                           c->data.crop);
    return 0;
}

/* Checks that involve more than one key or more than a range. */
static int check_consistency(const Loader *ld, const Config *c)
{
    char shown[256];
    /* run.name is a directory name: no '/', and no control characters, which would end up in
     * every path the job prints. */
    int control = 0;
    for (const char *p = c->run.name; *p; p++) control |= (unsigned char)*p < 0x20 || *p == 0x7f;
    if (c->run.name[0] == '\0' || strchr(c->run.name, '/') || control)
        return loader_fail(ld, key_line(ld, "run", "name", NULL),
                           "run.name = \"%s\" must be a non-empty name without '/' or control "
                           "characters", escaped(c->run.name, shown, sizeof shown));
    if (c->run.out_dir[0] == '\0')
        return loader_fail(ld, key_line(ld, "run", "out_dir", NULL),
                           "run.out_dir must not be empty");
    if (check_data_file(ld, c) != 0) return -1;
    if (c->model.arch == CFG_ARCH_RESNET && (c->model.depth - 2) % 6 != 0)
        return loader_fail(ld, key_line(ld, "model", "depth", NULL),
                           "model.depth = %d is not of the form 6n+2 (8, 14, 20, 32, 56, ...)",
                           c->model.depth);
    if (c->model.arch != CFG_ARCH_RESNET && key_line(ld, "model", "depth", NULL))
        return loader_fail(ld, key_line(ld, "model", "depth", NULL),
                           "model.depth applies to model.arch = \"resnet\" only (model.arch = "
                           "\"%s\" has its depth in its name or its file)",
                           cfg_arch_names[c->model.arch]);
    if (c->model.arch == CFG_ARCH_FILE && c->model.init[0] == '\0')
        return loader_fail(ld, key_line(ld, "model", "arch", NULL),
                           "model.arch = \"file\" takes the network from model.init, which is "
                           "not set");
    if (c->model.arch == CFG_ARCH_FILE && key_line(ld, "model", "width", NULL))
        return loader_fail(ld, key_line(ld, "model", "width", NULL),
                           "model.width does not apply to model.arch = \"file\" (the file "
                           "fixes the channels)");
    for (int i = 0; i < c->pretrain.n_milestones; i++) {
        int m = c->pretrain.milestones[i];
        if (i > 0 && m <= c->pretrain.milestones[i - 1])
            return loader_fail(ld, key_line(ld, "pretrain", "milestones", NULL),
                               "pretrain.milestones must be strictly ascending: [%d] = %d "
                               "follows %d",
                               i, m, c->pretrain.milestones[i - 1]);
        if (m >= c->pretrain.epochs)
            return loader_fail(ld, key_line(ld, "pretrain", "milestones", "epochs"),
                               "pretrain.milestones[%d] = %d is not below pretrain.epochs = %d",
                               i, m, c->pretrain.epochs);
    }
    if (c->search.evaluations < c->search.population)
        return loader_fail(ld, key_line(ld, "search", "evaluations", "population"),
                           "search.evaluations = %d is less than search.population = %d",
                           c->search.evaluations, c->search.population);
    if (c->search.sample > c->search.population)
        return loader_fail(ld, key_line(ld, "search", "sample", "population"),
                           "search.sample = %d is more than search.population = %d",
                           c->search.sample, c->search.population);
    if (c->family.enabled && c->family.n_flops == 0)
        return loader_fail(ld, key_line(ld, "family", "flops", "enabled"),
                           "family.flops is empty but family.enabled = true");
    for (int i = 0; i < c->family.n_baselines; i++)
        for (int j = 0; j < i; j++)
            if (c->family.baselines[i] == c->family.baselines[j])
                return loader_fail(ld, key_line(ld, "family", "baselines", NULL),
                                   "family.baselines[%d] = \"%s\" is listed twice", i,
                                   prune_method_names[c->family.baselines[i]]);
    return 0;
}

/* Walk the parsed tree: every top-level setting must be a known group, every setting in it a
 * known key. Fills c (already holding the defaults). */
static int load_tree(Loader *ld, const config_t *cfg, Config *c)
{
    const config_setting_t *root = config_root_setting(cfg);
    int n = config_setting_length(root);
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
        const char *gname = config_setting_name(g);
        int known = 0;
        for (int j = 0; j < N_GROUPS; j++) known |= strcmp(gname, group_names[j]) == 0;
        if (!known)
            return loader_fail(ld, setting_line(g),
                               "unknown group '%s' (groups: run, data, model, pretrain, search, "
                               "family)",
                               gname);
        if (!config_setting_is_group(g))
            return loader_fail(ld, setting_line(g), "'%s' must be a group: %s = { ... };",
                               gname, gname);
        int m = config_setting_length(g);
        for (int j = 0; j < m; j++)
            if (read_setting(ld, gname, config_setting_get_elem(g, (unsigned)j), c) != 0)
                return -1;
    }
    return check_consistency(ld, c);
}

/* Finish a parse (ok != 0 when libconfig accepted the text): report syntax errors, else load. */
static int load_parsed(Config *out, config_t *cfg, int ok, const char *name, Err *err)
{
    Loader ld;
    memset(&ld, 0, sizeof ld);
    ld.name = name;
    ld.err = err;
    int rc;
    if (!ok) {
        const char *file = config_error_file(cfg) ? config_error_file(cfg) : name;
        rc = err_set(err, LEGR_EXIT_USAGE, "%s:%d: %s", file, config_error_line(cfg),
                     config_error_text(cfg));
    } else {
        Config c;
        config_defaults(&c);
        rc = load_tree(&ld, cfg, &c);
        if (rc == 0) *out = c;
    }
    config_destroy(cfg);
    return rc;
}

/* path must be a readable regular file: libconfig's scanner exits the process on a directory. */
static int check_readable(const char *path, const char *what, Err *err)
{
    struct stat st;
    FILE *f;
    if (stat(path, &st) != 0 || !(f = fopen(path, "r")))
        return err_set(err, LEGR_EXIT_USAGE, "%s: cannot open %s: %s", path, what,
                       strerror(errno));
    fclose(f);
    if (S_ISDIR(st.st_mode))
        return err_set(err, LEGR_EXIT_USAGE, "%s: is a directory, not a %s", path, what);
    if (!S_ISREG(st.st_mode))
        return err_set(err, LEGR_EXIT_USAGE, "%s: is not a regular file (%s)", path, what);
    return 0;
}

/* Every @include "name" of path (names relative to dir, as the parser resolves them), checked
 * before parsing, recursively (at most 16 levels: a deeper chain is an include loop). */
static int check_includes(const char *path, const char *dir, int depth, Err *err)
{
    if (depth > 16)
        return err_set(err, LEGR_EXIT_USAGE, "%s: @include nested more than 16 deep (a loop?)",
                       path);
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* checked by the caller */
    char buf[4096];
    int rc = 0;
    for (int l = 1; rc == 0 && fgets(buf, sizeof buf, f); l++) {
        const char *p = buf;
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "@include", 8) != 0) continue;
        const char *q = strchr(p + 8, '"'), *e = q ? strchr(q + 1, '"') : NULL;
        if (!q || !e) continue; /* the parser reports it */
        int len = (int)(e - q - 1);
        if ((size_t)len + strlen(dir) + 2 > LEGR_PATH_MAX) {
            rc = err_set(err, LEGR_EXIT_USAGE, "%s:%d: the @include path is too long", path, l);
            break;
        }
        /* Relative names are relative to the main config's directory. */
        Path sub = q[1] == '/' || !dir[0] ? path_fmt("%.*s", len, q + 1)
                                          : path_fmt("%s/%.*s", dir, len, q + 1);
        Err e2 = {0, ""};
        if (check_readable(sub.s, "config file to @include", &e2) != 0)
            rc = err_set(err, LEGR_EXIT_USAGE, "%s:%d: %s", path, l, e2.msg);
        else
            rc = check_includes(sub.s, dir, depth + 1, err);
    }
    fclose(f);
    return rc;
}

int config_load_file(Config *c, const char *path, Err *err)
{
    if (check_readable(path, "config file", err) != 0) return -1;
    /* @include names are relative to the main config's directory. */
    Path dir = path_fmt("%s", path); /* fits: check_readable opened path */
    char *slash = strrchr(dir.s, '/');
    if (slash) *slash = '\0';
    else dir.s[0] = '\0';
    if (check_includes(path, dir.s, 0, err) != 0) return -1;
    config_t cfg;
    config_init(&cfg);
    if (dir.s[0]) config_set_include_dir(&cfg, dir.s);
    int ok = config_read_file(&cfg, path) == CONFIG_TRUE;
    return load_parsed(c, &cfg, ok, path, err);
}

int config_load_string(Config *c, const char *text, const char *name, Err *err)
{
    config_t cfg;
    config_init(&cfg);
    int ok = config_read_string(&cfg, text) == CONFIG_TRUE;
    return load_parsed(c, &cfg, ok, name, err);
}

/* ---- writing ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} TextBuf;

static void text_printf(TextBuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(TextBuf *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        CHECK(n >= 0, "vsnprintf failed");
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = 2 * t->cap + (size_t)n;
        t->buf = xrealloc(t->buf, t->cap);
    }
}

/* A libconfig string literal: quotes, backslashes and control characters escaped. */
static void text_string(TextBuf *t, const char *s)
{
    text_printf(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            text_printf(t, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            text_printf(t, "\\x%02x", *p);
        else
            text_printf(t, "%c", *p);
    }
    text_printf(t, "\"");
}

static void text_value(TextBuf *t, const KeySpec *k, const Config *c)
{
    const char *field = (const char *)c + k->off;
    char num[48];
    switch (k->type) {
    case KEY_INT: text_printf(t, "%d", *(const int *)field); break;
    case KEY_FLOAT:
        format_double(num, sizeof num, *(const double *)field);
        text_printf(t, "%s", num);
        break;
    case KEY_BOOL: text_printf(t, "%s", *(const int *)field ? "true" : "false"); break;
    case KEY_STRING: text_string(t, field); break;
    case KEY_ENUM: text_string(t, k->names[*(const int *)field]); break;
    case KEY_FLOAT_LIST:
    case KEY_INT_ARRAY:
    case KEY_FLOAT_ARRAY:
    case KEY_ENUM_ARRAY: {
        int n = *(const int *)((const char *)c + k->count_off);
        if (k->type == KEY_FLOAT_LIST && n == 1) {
            format_double(num, sizeof num, *(const double *)field);
            text_printf(t, "%s", num);
            break;
        }
        text_printf(t, "[");
        for (int i = 0; i < n; i++) {
            text_printf(t, "%s", i ? ", " : "");
            if (k->type == KEY_INT_ARRAY) {
                text_printf(t, "%d", ((const int *)field)[i]);
            } else if (k->type != KEY_ENUM_ARRAY) {
                format_double(num, sizeof num, ((const double *)field)[i]);
                text_printf(t, "%s", num);
            } else {
                text_string(t, k->names[((const int *)field)[i]]);
            }
        }
        text_printf(t, "]");
        break;
    }
    }
}

/* Whether key k is printed for c: model.depth belongs to the CIFAR ResNet only, and the loader
 * refuses it for any other architecture. */
static int key_printed(const KeySpec *k, const Config *c)
{
    return c->model.arch == CFG_ARCH_RESNET || strcmp(k->group, "model") != 0 ||
           strcmp(k->key, "depth") != 0;
}

char *config_to_string(const Config *c)
{
    TextBuf t = {xmalloc(4096), 0, 4096};
    t.buf[0] = '\0';
    for (int g = 0; g < N_GROUPS; g++) {
        text_printf(&t, "%s = {\n", group_names[g]);
        for (int i = 0; i < N_KEYS; i++) {
            if (strcmp(key_specs[i].group, group_names[g]) != 0 || !key_printed(&key_specs[i], c))
                continue;
            text_printf(&t, "  %s = ", key_specs[i].key);
            text_value(&t, &key_specs[i], c);
            text_printf(&t, ";\n");
        }
        text_printf(&t, "};\n");
    }
    return t.buf;
}

void config_print(const Config *c, FILE *f)
{
    char *s = config_to_string(c);
    fputs(s, f);
    free(s);
}
