/* Tests the legr-model HDF5 file: round trip of arch and tensors, and rejection of bad files.
 * With "--write PATH" it only writes a ResNet-8 model and prints reference values (for
 * test_h5model.sh, which reads the file back with h5py). */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "legr/h5io.h"

/* ResNet-8 on 3x32x32 with non-trivial BN statistics, so the buffers round trip is visible. */
static int build_resnet8(Net *net, int classes, int depth)
{
    Arch a;
    Err err;
    if (arch_resnet_cifar(&a, depth, 3, 32, 32, classes, 1.0, &err) != 0 ||
        net_build(net, &a, 2, &err) != 0) {
        fprintf(stderr, "build: %s\n", err.msg);
        return -1;
    }
    arch_free(&a);
    net_init_params(net, 1234);
    for (size_t i = 0; i < net->n_buf_floats; i++) net->buf[i] += 0.001f * (float)(i % 97);
    return 0;
}

static int write_only(const char *path)
{
    Net net;
    Err err;
    if (build_resnet8(&net, 10, 8) != 0) return 1;
    if (h5_model_save(path, &net, "model = { depth = 8; };", &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* Reference values for the reader: exact float32 values, printed round-trippably. */
    const char *names[] = {"conv1.weight", "layer2.0.conv1.weight", "fc.bias"};
    for (int i = 0; i < 3; i++) {
        const ParamSpec *s = net_find_param(&net, names[i]);
        printf("params/%s %.9g %.9g\n", names[i], net.param[s->offset],
               net.param[s->offset + s->count - 1]);
    }
    const ParamSpec *s = net_find_buf(&net, "layer3.0.bn2.running_var");
    printf("buffers/%s %.9g %.9g\n", s->name, net.buf[s->offset], net.buf[s->offset + s->count - 1]);
    net_free(&net);
    return 0;
}

static int same_arch(const Arch *a, const Arch *b)
{
    if (a->n_nodes != b->n_nodes || a->num_classes != b->num_classes) return 0;
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *x = &a->nodes[i], *y = &b->nodes[i];
        if (x->kind != y->kind || strcmp(x->name, y->name) || x->in[0] != y->in[0] ||
            x->in[1] != y->in[1] || x->c != y->c || x->h != y->h || x->w != y->w ||
            x->k != y->k || x->stride != y->stride || x->pad != y->pad ||
            x->groups != y->groups || x->map_len != y->map_len || x->bias != y->bias ||
            x->drop_p != y->drop_p)
            return 0;
        for (int j = 0; j < x->map_len; j++)
            if (x->chan_map[j] != y->chan_map[j]) return 0;
    }
    return 1;
}

static void test_round_trip(void)
{
    Net net, back;
    Arch arch;
    Err err;
    const char *path = "h5model_rt.h5";
    if (build_resnet8(&net, 10, 8) != 0) {
        EXPECT(0, "cannot build ResNet-8");
        return;
    }
    EXPECT(h5_model_save(path, &net, "cfg text", &err) == 0, "save: %s", err.msg);
    EXPECT(access("h5model_rt.h5.tmp", F_OK) != 0, "temporary file left behind");
    EXPECT(h5_model_load_arch(path, &arch, &err) == 0, "load arch: %s", err.msg);
    EXPECT(same_arch(&arch, &net.arch), "architecture differs after the round trip");
    EXPECT(arch_flops(&arch) == arch_flops(&net.arch), "flops differ");
    EXPECT(net_build(&back, &arch, 1, &err) == 0, "build from file: %s", err.msg);
    EXPECT(h5_model_load_params(path, &back, &err) == 0, "load params: %s", err.msg);
    EXPECT(back.n_params == net.n_params && back.n_bufs == net.n_bufs, "tables differ");
    EXPECT(net_hash(&back) == net_hash(&net), "tensors differ after the round trip");
    int bad = 0;
    for (int i = 0; i < net.n_params; i++)
        bad += memcmp(back.param + back.params[i].offset, net.param + net.params[i].offset,
                      net.params[i].count * sizeof(float)) != 0;
    EXPECT(bad == 0, "%d parameter tensors differ", bad);
    /* The config text is stored as an attribute. */
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char cfg[64] = "";
    EXPECT(fid >= 0 && H5LTget_attribute_string(fid, ".", "config", cfg) >= 0 &&
               strcmp(cfg, "cfg text") == 0,
           "config attribute '%s'", cfg);
    if (fid >= 0) H5Fclose(fid);
    net_free(&back);
    arch_free(&arch);
    net_free(&net);
}

/* A pruned-looking network: a shortcut with a non-identity channel map must survive. */
static void test_chan_map(void)
{
    Arch a, back;
    Err err;
    Net net;
    arch_init(&a);
    int x = arch_add_input(&a, "input", 3, 8, 8, &err);
    int c1 = arch_add_conv(&a, "c1", x, 4, 3, 1, 1, 1, &err);
    int r1 = arch_add_relu(&a, "r1", c1, &err);
    int c2 = arch_add_conv(&a, "c2", r1, 6, 3, 2, 1, 1, &err);
    int b2 = arch_add_bn(&a, "b2", c2, &err);
    int sc = arch_add_shortcut(&a, "sc", r1, 6, 2, &err);
    a.nodes[sc].chan_map[1] = 2;
    a.nodes[sc].chan_map[2] = 3;
    a.nodes[sc].chan_map[3] = 5;
    int ad = arch_add_add(&a, "add", b2, sc, &err);
    int g = arch_add_gap(&a, "gap", ad, &err);
    EXPECT(arch_add_fc(&a, "fc", g, 5, &err) >= 0, "tiny arch: %s", err.msg);
    EXPECT(arch_revalidate(&a, &err) == 0, "tiny arch: %s", err.msg);
    EXPECT(net_build(&net, &a, 1, &err) == 0, "tiny net: %s", err.msg);
    net_init_params(&net, 3);
    EXPECT(h5_model_save("h5model_map.h5", &net, NULL, &err) == 0, "save: %s", err.msg);
    EXPECT(h5_model_load_arch("h5model_map.h5", &back, &err) == 0, "load: %s", err.msg);
    EXPECT(same_arch(&a, &back), "chan_map or shapes lost");
    arch_free(&back);
    net_free(&net);
    arch_free(&a);
}

static void expect_error(int rc, const Err *err, const char *what, const char *needle,
                         const char *needle2)
{
    EXPECT(rc == -1, "%s: accepted", what);
    EXPECT(err->code == LEGR_EXIT_DATA, "%s: code %d", what, err->code);
    EXPECT(strstr(err->msg, needle) != NULL, "%s: message lacks '%s': %s", what, needle, err->msg);
    if (needle2)
        EXPECT(strstr(err->msg, needle2) != NULL, "%s: message lacks '%s': %s", what, needle2,
               err->msg);
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

static void write_h5_with_format(const char *path, const char *format, int version)
{
    hid_t fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5LTset_attribute_string(fid, ".", "format", format);
    H5LTset_attribute_int(fid, ".", "format_version", &version, 1);
    H5Fclose(fid);
}

static void test_bad_files(void)
{
    Net net, other;
    Arch arch;
    Err err;
    if (build_resnet8(&net, 10, 8) != 0) return;
    EXPECT(h5_model_save("h5model_bad.h5", &net, "", &err) == 0, "save: %s", err.msg);
    FILE *f = fopen("h5model_bad.h5", "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);

    copy_prefix("h5model_bad.h5", "h5model_trunc.h5", size / 2);
    int rc = h5_model_load_arch("h5model_trunc.h5", &arch, &err);
    expect_error(rc, &err, "truncated file", "h5model_trunc.h5", "truncated");
    rc = h5_model_load_params("h5model_trunc.h5", &net, &err);
    expect_error(rc, &err, "truncated file (params)", "h5model_trunc.h5", NULL);
    copy_prefix("h5model_bad.h5", "h5model_trunc2.h5", 40);
    rc = h5_model_load_arch("h5model_trunc2.h5", &arch, &err);
    expect_error(rc, &err, "file cut inside the header", "h5model_trunc2.h5", NULL);

    f = fopen("h5model_text.h5", "w");
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    rc = h5_model_load_arch("h5model_text.h5", &arch, &err);
    expect_error(rc, &err, "text file", "not an HDF5 file", NULL);
    rc = h5_model_load_arch("h5model_does_not_exist.h5", &arch, &err);
    expect_error(rc, &err, "missing file", "h5model_does_not_exist.h5", "cannot open");

    write_h5_with_format("h5model_fmt.h5", "legr-family", 1);
    rc = h5_model_load_params("h5model_fmt.h5", &net, &err);
    expect_error(rc, &err, "wrong format", "'legr-family'", "'legr-model'");
    write_h5_with_format("h5model_ver.h5", "legr-model", 99);
    rc = h5_model_load_arch("h5model_ver.h5", &arch, &err);
    expect_error(rc, &err, "newer version", "format_version 99", NULL);
    hid_t fid = H5Fcreate("h5model_nofmt.h5", H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(fid);
    rc = h5_model_load_arch("h5model_nofmt.h5", &arch, &err);
    expect_error(rc, &err, "no format attribute", "'format'", NULL);

    /* Shape mismatch: 100 classes against a 10-class file. */
    if (build_resnet8(&other, 100, 8) == 0) {
        rc = h5_model_load_params("h5model_bad.h5", &other, &err);
        expect_error(rc, &err, "class mismatch", "'params/fc.weight'", "(10, 64)");
        EXPECT(strstr(err.msg, "(100, 64)") && strstr(err.msg, "HINT"),
               "mismatch message lacks the expected shape or the hint: %s", err.msg);
        net_free(&other);
    }
    /* Missing tensor: a deeper net than the file. */
    if (build_resnet8(&other, 10, 14) == 0) {
        rc = h5_model_load_params("h5model_bad.h5", &other, &err);
        expect_error(rc, &err, "deeper net", "'params/layer1.1.conv1.weight'", "missing");
        net_free(&other);
    }
    /* Extra tensors: a shallower net than the file. */
    if (build_resnet8(&other, 10, 14) == 0) {
        EXPECT(h5_model_save("h5model_deep.h5", &other, "", &err) == 0, "save deep: %s", err.msg);
        rc = h5_model_load_params("h5model_deep.h5", &net, &err);
        expect_error(rc, &err, "shallower net", "not in the network", "layer");
        net_free(&other);
    }

    /* A stale temporary file from a killed writer neither blocks nor corrupts the next save. */
    f = fopen("h5model_bad.h5.tmp", "w");
    fputs("garbage from a killed writer", f);
    fclose(f);
    EXPECT(h5_model_save("h5model_bad.h5", &net, "", &err) == 0, "save over stale tmp: %s",
           err.msg);
    EXPECT(access("h5model_bad.h5.tmp", F_OK) != 0, "stale tmp not replaced");
    EXPECT(h5_model_load_params("h5model_bad.h5", &net, &err) == 0, "reload: %s", err.msg);
    net_free(&net);
}

/* The kinds after the CIFAR ResNet's: a conv with a bias, max pooling, ReLU6, a depthwise conv,
 * an add without a ReLU, dropout. The tensors and every node field must round trip. */
static void test_new_kinds(void)
{
    Arch a, back;
    Err err;
    Net net, net2;
    arch_init(&a);
    int x = arch_add_input(&a, "input", 3, 9, 9, &err);
    int c1 = arch_add_conv(&a, "stem", x, 8, 3, 1, 1, 1, &err);
    EXPECT(arch_set_conv_bias(&a, c1, &err) == 0, "bias: %s", err.msg);
    int r1 = arch_add_relu6(&a, "act", c1, &err);
    int mp = arch_add_maxpool(&a, "pool", r1, 3, 2, 1, &err);
    int dw = arch_add_conv(&a, "dw", mp, 8, 3, 1, 1, 8, &err);
    int bn = arch_add_bn(&a, "dw_bn", dw, &err);
    int ad = arch_add_add(&a, "add", bn, mp, &err);
    int g = arch_add_gap(&a, "gap", ad, &err);
    int d = arch_add_dropout(&a, "drop", g, 0.25, &err);
    EXPECT(arch_add_fc(&a, "fc", d, 4, &err) >= 0, "arch: %s", err.msg);
    EXPECT(a.nodes[mp].h == 5 && a.nodes[mp].w == 5, "maxpool 9 -> %dx%d, want 5x5",
           a.nodes[mp].h, a.nodes[mp].w);
    EXPECT(arch_set_conv_bias(&a, r1, &err) != 0 && strstr(err.msg, "not a conv"),
           "a bias on a ReLU6 was accepted");
    EXPECT(arch_add_dropout(&a, "bad", g, 1.0, &err) < 0 && strstr(err.msg, "[0, 1)"),
           "dropout p = 1 accepted");
    EXPECT(arch_add_maxpool(&a, "bad", mp, 2, 2, 2, &err) < 0 && strstr(err.msg, "padding"),
           "maxpool padding above half the kernel accepted");
    EXPECT(net_build(&net, &a, 2, &err) == 0, "net: %s", err.msg);
    EXPECT(net_find_param(&net, "stem.bias") != NULL, "no stem.bias tensor");
    net_init_params(&net, 5);
    EXPECT(h5_model_save("h5model_new.h5", &net, NULL, &err) == 0, "save: %s", err.msg);
    EXPECT(h5_model_load_arch("h5model_new.h5", &back, &err) == 0, "load: %s", err.msg);
    EXPECT(same_arch(&a, &back), "new node kinds or fields lost");
    EXPECT(arch_params(&back) == arch_params(&a) && arch_flops(&back) == arch_flops(&a),
           "counts differ after the round trip");
    EXPECT(net_build(&net2, &back, 2, &err) == 0, "net from file: %s", err.msg);
    EXPECT(h5_model_load_params("h5model_new.h5", &net2, &err) == 0, "params: %s", err.msg);
    EXPECT(net_hash(&net2) == net_hash(&net), "tensors differ after the round trip");
    net_free(&net2);
    arch_free(&back);
    net_free(&net);
    arch_free(&a);
}

/* A file written before the bias and drop_p fields existed: rewrite /arch/nodes without them
 * (as the first format did) and read it back with both fields 0. */
static void test_old_node_table(void)
{
    Net net;
    Arch back;
    Err err;
    if (build_resnet8(&net, 10, 8) != 0) {
        EXPECT(0, "cannot build ResNet-8");
        return;
    }
    EXPECT(h5_model_save("h5model_old.h5", &net, NULL, &err) == 0, "save: %s", err.msg);
    hid_t fid = H5Fopen("h5model_old.h5", H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(fid, "arch/nodes", H5P_DEFAULT);
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t old_size = H5Tget_member_offset(ft, (unsigned)H5Tget_member_index(ft, "bias"));
    hid_t ot = H5Tcreate(H5T_COMPOUND, old_size);
    for (int m = 0; m < H5Tget_nmembers(ft); m++) {
        char *name = H5Tget_member_name(ft, (unsigned)m);
        if (strcmp(name, "bias") && strcmp(name, "drop_p")) {
            hid_t mt = H5Tget_member_type(ft, (unsigned)m);
            H5Tinsert(ot, name, H5Tget_member_offset(ft, (unsigned)m), mt);
            H5Tclose(mt);
        }
        H5free_memory(name);
    }
    char *rows = malloc((size_t)n * old_size);
    EXPECT(H5Dread(ds, ot, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0, "cannot read the nodes");
    H5Dclose(ds);
    H5Ldelete(fid, "arch/nodes", H5P_DEFAULT);
    hid_t nd = H5Dcreate2(fid, "arch/nodes", ot, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT(nd >= 0 && H5Dwrite(nd, ot, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0,
           "cannot rewrite the node table");
    H5Dclose(nd);
    free(rows);
    H5Tclose(ot);
    H5Tclose(ft);
    H5Sclose(sp);
    H5Fclose(fid);
    EXPECT(h5_model_load_arch("h5model_old.h5", &back, &err) == 0, "old table: %s", err.msg);
    EXPECT(back.n_nodes == net.arch.n_nodes && same_arch(&back, &net.arch),
           "an old node table reads differently");
    arch_free(&back);
    net_free(&net);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write") == 0) return write_only(argv[2]);
    test_round_trip();
    test_chan_map();
    test_new_kinds();
    test_old_node_table();
    test_bad_files();
    const char *files[] = {"h5model_rt.h5",     "h5model_map.h5",    "h5model_bad.h5",
                           "h5model_trunc.h5",  "h5model_trunc2.h5", "h5model_text.h5",
                           "h5model_fmt.h5",    "h5model_ver.h5",    "h5model_nofmt.h5",
                           "h5model_deep.h5",   "h5model_new.h5",    "h5model_old.h5"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(files[i]);
    return harness_finish("test_h5model");
}
