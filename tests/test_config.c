/* Config loading: defaults, a full file, every kind of error with its file:line, round trip. */
#include "harness.h"
#include "legr/config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Load `text` as "job.cfg" and expect failure with exactly the message `want`. */
static void expect_error(const char *text, const char *want)
{
    Config c;
    config_defaults(&c);
    Config before = c;
    Err err = {0, ""};
    int rc = config_load_string(&c, text, "job.cfg", &err);
    EXPECT(rc == -1, "accepted: %s", text);
    EXPECT(err.code == LEGR_EXIT_USAGE, "code %d for '%s'", err.code, err.msg);
    EXPECT(strcmp(err.msg, want) == 0, "message\n  got:  %s\n  want: %s", err.msg, want);
    EXPECT(memcmp(&c, &before, sizeof c) == 0, "a failed load modified the Config");
}

static void test_defaults(void)
{
    Config c;
    config_defaults(&c);
    EXPECT(strcmp(c.run.name, "legr") == 0 && c.run.seed == 1 && c.run.log_every == 50,
           "run defaults");
    EXPECT(strcmp(c.run.out_dir, "runs") == 0 && c.run.threads == 0, "run defaults 2");
    EXPECT(c.data.dataset == CFG_DATASET_FASHION_MNIST && c.data.val_fraction == 0.1 &&
               c.data.augment == 1 && c.data.crop_pad == 2 && c.data.flip == 1,
           "data defaults");
    EXPECT(strcmp(c.data.dir, "/usr/share/datasets/fashion-mnist") == 0, "data.dir default");
    EXPECT(c.data.synthetic_n == 2048 && c.data.synthetic_size == 16 &&
               c.data.synthetic_classes == 10 && c.data.train_limit == 0,
           "synthetic defaults");
    EXPECT(c.model.arch == CFG_ARCH_RESNET && c.model.depth == 20 && c.model.width == 1.0 &&
               c.model.init[0] == '\0',
           "model defaults");
    EXPECT(c.pretrain.epochs == 30 && c.pretrain.batch == 128 && c.pretrain.lr == 0.1 &&
               c.pretrain.momentum == 0.9 && c.pretrain.weight_decay == 5e-4 &&
               !c.pretrain.nesterov && c.pretrain.schedule == CFG_SCHEDULE_COSINE &&
               c.pretrain.n_milestones == 0 && c.pretrain.gamma == 0.1,
           "pretrain defaults");
    EXPECT(c.search.enabled && c.search.n_target_flops == 1 && c.search.target_flops[0] == 0.5 &&
               c.search.metric == CFG_METRIC_L2_WEIGHT && c.search.evaluations == 400 &&
               c.search.population == 64 && c.search.sample == 16 &&
               c.search.mutate_fraction == 0.1 && c.search.sigma == 1.0 && c.search.tau == 200,
           "search defaults");
    EXPECT(c.search.lr == 0.01 && c.search.momentum == 0.9 && c.search.weight_decay == 5e-4 &&
               c.search.batch == 128 && c.search.fitness == CFG_FITNESS_VAL_LOSS &&
               c.search.batches == CFG_BATCHES_SHARED && c.search.mode == CFG_MODE_ASYNC &&
               c.search.sync_batch == 8 && c.search.checkpoint_every == 10 &&
               c.search.val_limit == 0 && c.search.safeguard == 0.1 && c.search.round_to == 1,
           "search defaults 2");
    EXPECT(c.family.enabled && c.family.n_flops == 3 && c.family.flops[0] == 0.7 &&
               c.family.flops[1] == 0.5 && c.family.flops[2] == 0.3 && c.family.epochs == 10 &&
               c.family.lr == 0.01 && c.family.nesterov && c.family.batch == 128 &&
               c.family.ranking == CFG_RANKING_LEGR && c.family.n_baselines == 0 &&
               c.family.latency_repeats == 20,
           "family defaults");

    /* An empty file and a file with empty groups leave every default in place. */
    Config d;
    Err err = {0, ""};
    EXPECT(config_load_string(&d, "", "empty.cfg", &err) == 0, "empty file: %s", err.msg);
    EXPECT(memcmp(&c, &d, sizeof c) == 0, "empty file differs from the defaults");
    EXPECT(config_load_string(&d, "run = {};\nfamily = {};\n", "g.cfg", &err) == 0,
           "empty groups: %s", err.msg);
    EXPECT(memcmp(&c, &d, sizeof c) == 0, "empty groups differ from the defaults");
}

static const char *full_text =
    "# every key, none at its default\n"
    "run = {\n"
    "  name = \"exp \\\"7\\\" \\\\ a\";\n"
    "  seed = 1234567;\n"
    "  out_dir = \"/scratch/out\";\n"
    "  threads = 3;\n"
    "  log_every = 5;\n"
    "};\n"
    "data: {\n"
    "  dataset = \"cifar100\";\n"
    "  dir = \"/data/c100\";\n"
    "  val_fraction = 0;\n"
    "  augment = false; crop_pad = 4; flip = false;\n"
    "  train_limit = 1000; test_limit = 500;\n"
    "  synthetic_n = 64; synthetic_size = 8; synthetic_classes = 3;\n"
    "};\n"
    "model = { arch = \"resnet\"; depth = 56; width = 2; init = \"base.h5\"; };\n"
    "pretrain = {\n"
    "  epochs = 160; batch = 64; lr = 0.05; momentum = 0.0; weight_decay = 1e-4;\n"
    "  nesterov = true; schedule = \"multistep\"; milestones = [80, 120]; gamma = 0.2;\n"
    "};\n"
    "search = {\n"
    "  enabled = false; target_flops = 0.3; metric = \"l2_bn_param\";\n"
    "  evaluations = 100; population = 10; sample = 3; mutate_fraction = 1;\n"
    "  sigma = 0.5; tau = 0; lr = 0.02; momentum = 0.5; weight_decay = 0;\n"
    "  batch = 32; fitness = \"val_acc\"; batches = \"per_candidate\";\n"
    "  mode = \"deterministic\"; sync_batch = 4; checkpoint_every = 7; val_limit = 256;\n"
    "  safeguard = 0.0; round_to = 8;\n"
    "};\n"
    "family = {\n"
    "  enabled = false; flops = [0.9, 0.25, 0.1, 0.05]; epochs = 0; lr = 0.001;\n"
    "  momentum = 0.8; weight_decay = 2e-4; nesterov = false; batch = 256;\n"
    "  ranking = \"identity\"; baselines = [\"random\", \"uniform\"];\n"
    "  latency_repeats = 3;\n"
    "};\n";

static void check_full(const Config *c)
{
    EXPECT(strcmp(c->run.name, "exp \"7\" \\ a") == 0, "run.name '%s'", c->run.name);
    EXPECT(c->run.seed == 1234567 && strcmp(c->run.out_dir, "/scratch/out") == 0 &&
               c->run.threads == 3 && c->run.log_every == 5,
           "run");
    EXPECT(c->data.dataset == CFG_DATASET_CIFAR100 && strcmp(c->data.dir, "/data/c100") == 0 &&
               c->data.val_fraction == 0.0 && !c->data.augment && c->data.crop_pad == 4 &&
               !c->data.flip && c->data.train_limit == 1000 && c->data.test_limit == 500 &&
               c->data.synthetic_n == 64 && c->data.synthetic_size == 8 &&
               c->data.synthetic_classes == 3,
           "data");
    EXPECT(c->model.depth == 56 && c->model.width == 2.0 && strcmp(c->model.init, "base.h5") == 0,
           "model");
    EXPECT(c->pretrain.epochs == 160 && c->pretrain.batch == 64 && c->pretrain.lr == 0.05 &&
               c->pretrain.momentum == 0.0 && c->pretrain.weight_decay == 1e-4 &&
               c->pretrain.nesterov && c->pretrain.schedule == CFG_SCHEDULE_MULTISTEP &&
               c->pretrain.n_milestones == 2 && c->pretrain.milestones[0] == 80 &&
               c->pretrain.milestones[1] == 120 && c->pretrain.gamma == 0.2,
           "pretrain");
    EXPECT(!c->search.enabled && c->search.n_target_flops == 1 &&
               c->search.target_flops[0] == 0.3 &&
               c->search.metric == CFG_METRIC_L2_BN_PARAM && c->search.evaluations == 100 &&
               c->search.population == 10 && c->search.sample == 3 &&
               c->search.mutate_fraction == 1.0 && c->search.sigma == 0.5 && c->search.tau == 0 &&
               c->search.lr == 0.02 && c->search.momentum == 0.5 &&
               c->search.weight_decay == 0.0 && c->search.batch == 32,
           "search");
    EXPECT(c->search.fitness == CFG_FITNESS_VAL_ACC &&
               c->search.batches == CFG_BATCHES_PER_CANDIDATE &&
               c->search.mode == CFG_MODE_DETERMINISTIC && c->search.sync_batch == 4 &&
               c->search.checkpoint_every == 7 && c->search.val_limit == 256 &&
               c->search.safeguard == 0.0 && c->search.round_to == 8,
           "search 2");
    EXPECT(!c->family.enabled && c->family.n_flops == 4 && c->family.flops[0] == 0.9 &&
               c->family.flops[1] == 0.25 && c->family.flops[2] == 0.1 &&
               c->family.flops[3] == 0.05 && c->family.epochs == 0 && c->family.lr == 0.001 &&
               c->family.momentum == 0.8 && c->family.weight_decay == 2e-4 &&
               !c->family.nesterov && c->family.batch == 256 &&
               c->family.ranking == CFG_RANKING_IDENTITY && c->family.n_baselines == 2 &&
               c->family.baselines[0] == CFG_RANKING_RANDOM &&
               c->family.baselines[1] == CFG_RANKING_UNIFORM && c->family.latency_repeats == 3,
           "family");
}

static void test_full_and_round_trip(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/full.cfg", dir);
    FILE *f = fopen(path, "w");
    CHECK(f, "cannot write %s", path);
    fputs(full_text, f);
    fclose(f);
    Config c;
    Err err = {0, ""};
    int rc = config_load_file(&c, path, &err);
    EXPECT(rc == 0, "full file: %s", err.msg);
    if (rc != 0) return;
    check_full(&c);

    /* Round trip of the full config and of values that need all 17 digits. */
    c.search.lr = 0.1 + 0.2;
    c.family.flops[3] = 1.0 / 3.0;
    c.pretrain.weight_decay = 1e-7;
    snprintf(c.run.out_dir, sizeof c.run.out_dir, "tab\there\001\"q\"\\");
    char *text = config_to_string(&c);
    Config back;
    rc = config_load_string(&back, text, "resolved", &err);
    EXPECT(rc == 0, "resolved text does not load: %s\n%s", err.msg, text);
    EXPECT(rc == 0 && memcmp(&c, &back, sizeof c) == 0, "round trip changed the config:\n%s",
           text);
    char *again = config_to_string(&back);
    EXPECT(strcmp(text, again) == 0, "second rendering differs");
    free(again);
    free(text);

    /* Several search targets render as an array and load back. */
    c.search.n_target_flops = 3;
    c.search.target_flops[0] = 0.7;
    c.search.target_flops[1] = 1.0 / 3.0;
    c.search.target_flops[2] = 0.2;
    text = config_to_string(&c);
    EXPECT(strstr(text, "  target_flops = [0.7, 0.3333333333333333, 0.2];\n") != NULL,
           "target list rendering:\n%s", text);
    rc = config_load_string(&back, text, "resolved", &err);
    EXPECT(rc == 0 && memcmp(&c, &back, sizeof c) == 0, "target list round trip: %s", err.msg);
    free(text);

    Config d;
    config_defaults(&d);
    text = config_to_string(&d);
    EXPECT(strstr(text, "  milestones = [];\n") && strstr(text, "  baselines = [];\n") &&
               strstr(text, "  weight_decay = 0.0005;\n") && strstr(text, "  width = 1.0;\n") &&
               strstr(text, "  target_flops = 0.5;\n"),
           "default rendering:\n%s", text);
    rc = config_load_string(&back, text, "defaults", &err);
    EXPECT(rc == 0 && memcmp(&d, &back, sizeof d) == 0, "defaults round trip: %s", err.msg);
    free(text);

    /* An error in a real file names its path and line. */
    snprintf(path, sizeof path, "%s/bad.cfg", dir);
    f = fopen(path, "w");
    CHECK(f, "cannot write %s", path);
    fputs("run = {\n  seed = 2;\n};\npretrain = {\n\n  epoch = 3;\n};\n", f);
    fclose(f);
    rc = config_load_file(&c, path, &err);
    char want[700];
    snprintf(want, sizeof want, "%s:6: unknown key 'pretrain.epoch'", path);
    EXPECT(rc == -1 && strcmp(err.msg, want) == 0 && err.code == LEGR_EXIT_USAGE,
           "file error '%s'", err.msg);
    snprintf(path, sizeof path, "%s/missing.cfg", dir);
    rc = config_load_file(&c, path, &err);
    snprintf(want, sizeof want, "%s: cannot open config file: No such file or directory", path);
    EXPECT(rc == -1 && strcmp(err.msg, want) == 0 && err.code == LEGR_EXIT_USAGE,
           "missing file '%s'", err.msg);
}

/* The keys of a file-backed set and the search subset: values, defaults and round trip. */
static void test_hdf5_keys(void)
{
    Config c, back;
    Err err = {0, ""};
    config_defaults(&c);
    EXPECT(c.data.cache_mb == 256 && c.data.crop == 0 && c.data.resize == 0 &&
               c.data.file[0] == '\0' && c.search.train_subset == 0,
           "hdf5 defaults");
    int rc = config_load_string(&c, "data = { dataset = \"hdf5\"; file = \"/d/in.h5\"; "
                                "crop = 224; resize = 256; channels = 3; classes = 1000; "
                                "cache_mb = 0; };\nsearch = { train_subset = 5000; };\n",
                                "hdf5.cfg", &err);
    EXPECT(rc == 0, "hdf5 config: %s", err.msg);
    EXPECT(c.data.dataset == CFG_DATASET_HDF5 && strcmp(c.data.file, "/d/in.h5") == 0 &&
               c.data.crop == 224 && c.data.resize == 256 && c.data.channels == 3 &&
               c.data.classes == 1000 && c.data.cache_mb == 0 && c.search.train_subset == 5000,
           "hdf5 values");
    char *text = config_to_string(&c);
    rc = config_load_string(&back, text, "resolved", &err);
    EXPECT(rc == 0 && memcmp(&c, &back, sizeof c) == 0, "hdf5 round trip: %s", err.msg);
    free(text);
}

static void test_errors(void)
{
    /* Unknown names. */
    expect_error("run = { seed = 2; };\n\ntrainer = { lr = 1.0; };\n",
                 "job.cfg:3: unknown group 'trainer' (groups: run, data, model, pretrain, "
                 "search, family)");
    expect_error("seed = 3;\n", "job.cfg:1: unknown group 'seed' (groups: run, data, model, "
                                "pretrain, search, family)");
    expect_error("run = 5;\n", "job.cfg:1: 'run' must be a group: run = { ... };");
    expect_error("pretrain = {\n  epochs = 3;\n  epoch = 3;\n};\n",
                 "job.cfg:3: unknown key 'pretrain.epoch'");
    expect_error("search = {\n  pretrain = { lr = 1.0; };\n};\n",
                 "job.cfg:2: unknown key 'search.pretrain'");

    /* Wrong types. */
    expect_error("pretrain = {\n  epochs = \"ten\";\n};\n",
                 "job.cfg:2: pretrain.epochs must be an integer, not a string");
    expect_error("pretrain = { batch = 12.5; };\n",
                 "job.cfg:1: pretrain.batch must be an integer, not a float");
    expect_error("search = { lr = \"0.1\"; };\n",
                 "job.cfg:1: search.lr must be a number, not a string");
    expect_error("data = { augment = 1; };\n",
                 "job.cfg:1: data.augment must be true or false, not an integer");
    expect_error("run = { name = [\"a\"]; };\n",
                 "job.cfg:1: run.name must be a string, not an array");
    expect_error("search = { metric = 2; };\n",
                 "job.cfg:1: search.metric must be a string (one of l2_weight, l1_weight, "
                 "l2_bn, l2_bn_param), not an integer");
    expect_error("family = { flops = 0.5; };\n",
                 "job.cfg:1: family.flops must be an array of numbers like [a, b], not a float");
    expect_error("family = { flops = [\"a\"]; };\n",
                 "job.cfg:1: family.flops[0] must be a number, not a string");
    expect_error("pretrain = { epochs = 100; milestones = [50.5]; };\n",
                 "job.cfg:1: pretrain.milestones[0] must be an integer, not a float");

    /* Out of range, both one- and two-sided, integers beyond 32 bits, array elements. */
    expect_error("run = { seed = 4; };\n\n\n\n\n\nsearch = { target_flops = 1.5; };\n",
                 "job.cfg:7: search.target_flops = 1.5 is out of range (0, 1)");
    expect_error("search = { target_flops = 0; };\n",
                 "job.cfg:1: search.target_flops = 0.0 is out of range (0, 1)");
    expect_error("search = { target_flops = [0.5, 1.5]; };\n",
                 "job.cfg:1: search.target_flops[1] = 1.5 is out of range (0, 1)");
    expect_error("search = { target_flops = []; };\n",
                 "job.cfg:1: search.target_flops must hold at least one number");
    expect_error("search = { target_flops = \"half\"; };\n",
                 "job.cfg:1: search.target_flops must be a number or an array of numbers like "
                 "[a, b], not a string");
    expect_error("data = { val_fraction = 0.95; };\n",
                 "job.cfg:1: data.val_fraction = 0.95 is out of range [0, 0.9]");
    expect_error("pretrain = { batch = 0; };\n",
                 "job.cfg:1: pretrain.batch = 0 is out of range: must be >= 1");
    expect_error("pretrain = { lr = -1; };\n",
                 "job.cfg:1: pretrain.lr = -1.0 is out of range: must be > 0");
    expect_error("pretrain = { momentum = 1; };\n",
                 "job.cfg:1: pretrain.momentum = 1.0 is out of range [0, 1)");
    expect_error("run = { seed = -1; };\n",
                 "job.cfg:1: run.seed = -1 is out of range: must be >= 0");
    expect_error("run = { seed = 10000000000L; };\n",
                 "job.cfg:1: run.seed = 10000000000 is out of range: integers here are at "
                 "most 2147483647 in magnitude");
    expect_error("data = { crop_pad = 17; };\n",
                 "job.cfg:1: data.crop_pad = 17 is out of range [0, 16]");
    expect_error("model = { width = 8.5; };\n",
                 "job.cfg:1: model.width = 8.5 is out of range (0, 8]");
    expect_error("family = {\n  flops = [0.5,\n 1.0];\n};\n",
                 "job.cfg:3: family.flops[1] = 1.0 is out of range (0, 1)");
    expect_error("search = { safeguard = 1.0; };\n",
                 "job.cfg:1: search.safeguard = 1.0 is out of range [0, 1)");
    expect_error("search = { round_to = 0; };\n",
                 "job.cfg:1: search.round_to = 0 is out of range [1, 64]");

    /* Bad enumerated values. */
    expect_error("search = { metric = \"l3\"; };\n",
                 "job.cfg:1: search.metric = \"l3\" is not one of l2_weight, l1_weight, l2_bn, "
                 "l2_bn_param");
    expect_error("data = { dataset = \"imagenet\"; };\n",
                 "job.cfg:1: data.dataset = \"imagenet\" is not one of fashion-mnist, mnist, "
                 "cifar10, cifar100, synthetic, hdf5");
    expect_error("family = { baselines = [\"legr\"]; };\n",
                 "job.cfg:1: family.baselines[0] = \"legr\" is not one of identity, uniform, "
                 "random");
    expect_error("search = { mode = \"sync\"; };\n",
                 "job.cfg:1: search.mode = \"sync\" is not one of async, deterministic");

    /* Consistency between keys. */
    expect_error("model = {\n depth = 21;\n};\n",
                 "job.cfg:2: model.depth = 21 is not of the form 6n+2 (8, 14, 20, 32, 56, ...)");
    expect_error("model = {\n arch = \"mobilenetv2\";\n depth = 56;\n};\n",
                 "job.cfg:3: model.depth applies to model.arch = \"resnet\" only (model.arch = "
                 "\"mobilenetv2\" has its depth in its name or its file)");
    expect_error("model = {\n arch = \"file\";\n};\n",
                 "job.cfg:2: model.arch = \"file\" takes the network from model.init, which is "
                 "not set");
    expect_error("model = {\n arch = \"file\"; init = \"x.h5\";\n width = 0.5;\n};\n",
                 "job.cfg:3: model.width does not apply to model.arch = \"file\" (the file "
                 "fixes the channels)");
    expect_error("model = { arch = \"vgg16\"; };\n",
                 "job.cfg:1: model.arch = \"vgg16\" is not one of resnet, resnet18, resnet34, "
                 "resnet50, resnet101, mobilenetv2, mobilenetv2_cifar, file");
    expect_error("model = { depth = 2; };\n",
                 "job.cfg:1: model.depth = 2 is out of range: must be >= 8");
    expect_error("pretrain = { epochs = 100; milestones = [50, 50]; };\n",
                 "job.cfg:1: pretrain.milestones must be strictly ascending: [1] = 50 follows "
                 "50");
    expect_error("pretrain = {\n milestones = [10, 30];\n};\n",
                 "job.cfg:2: pretrain.milestones[1] = 30 is not below pretrain.epochs = 30");
    expect_error("pretrain = { milestones = [0]; };\n",
                 "job.cfg:1: pretrain.milestones[0] = 0 is out of range: must be >= 1");
    expect_error("search = {\n population = 500;\n};\n",
                 "job.cfg:2: search.evaluations = 400 is less than search.population = 500");
    expect_error("search = {\n sample = 65;\n};\n",
                 "job.cfg:2: search.sample = 65 is more than search.population = 64");
    expect_error("family = {\n  flops = [];\n};\n",
                 "job.cfg:2: family.flops is empty but family.enabled = true");
    expect_error("family = { baselines = [\"random\", \"uniform\", \"random\"]; };\n",
                 "job.cfg:1: family.baselines[2] = \"random\" is listed twice");
    expect_error("data = {\n dataset = \"hdf5\";\n};\n",
                 "job.cfg:2: data.dataset = \"hdf5\" reads the images from data.file, which is "
                 "not set");
    expect_error("data = {\n dataset = \"cifar10\";\n crop = 24;\n};\n",
                 "job.cfg:3: data.crop applies to data.dataset = \"hdf5\" only (this is "
                 "\"cifar10\")");
    expect_error("data = { file = \"x.h5\"; };\n",
                 "job.cfg:1: data.file applies to data.dataset = \"hdf5\" only (this is "
                 "\"fashion-mnist\")");
    expect_error("data = { dataset = \"hdf5\"; file = \"x.h5\";\n resize = 256; };\n",
                 "job.cfg:2: data.resize = 256 needs data.crop (the evaluation resizes, then "
                 "crops the centre)");
    expect_error("data = { dataset = \"hdf5\"; file = \"x.h5\"; crop = 224;\n resize = 200; };\n",
                 "job.cfg:2: data.resize = 200 is smaller than data.crop = 224");
    expect_error("data = { dataset = \"hdf5\"; file = \"x.h5\"; channels = 300; };\n",
                 "job.cfg:1: data.channels = 300 is out of range [0, 256]");
    expect_error("run = { name = \"a/b\"; };\n",
                 "job.cfg:1: run.name = \"a/b\" must be a non-empty name without '/' or control "
                 "characters");
    expect_error("run = { name = \"a\\nb\"; };\n",
                 "job.cfg:1: run.name = \"a\\nb\" must be a non-empty name without '/' or "
                 "control characters");
    expect_error("run = { name = \"0123456789012345678901234567890123456789"
                 "012345678901234567890123456789\"; };\n",
                 "job.cfg:1: run.name is too long (70 characters, at most 63)");

    /* Syntax errors, including libconfig's own duplicate check. */
    expect_error("run = {\n  seed = 3;\n  threads = ;\n};\n", "job.cfg:3: syntax error");
    expect_error("run = {\n  seed = 3;\n\n", "job.cfg:4: syntax error"); /* at end of file */
    expect_error("run = { seed = 3; };\nrun = { seed = 4; };\n",
                 "job.cfg:2: duplicate setting name");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/legr-test-config-XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(dir), "mkdtemp %s", dir);
    test_defaults();
    test_full_and_round_trip(dir);
    test_hdf5_keys();
    test_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return harness_finish("test_config");
}
