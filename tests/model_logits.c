/* Test helper (not a test by itself): evaluates a legr-model file with the C engine on the images
 * of an HDF5 file and writes the logits, so scripts can compare them with PyTorch's.
 *
 * usage: model_logits MODEL.h5 INPUTS.h5 OUT.h5
 *   INPUTS.h5  dataset "x", float32 (N, C, H, W), the network's input shape
 *   OUT.h5     dataset "logits", float32 (N, classes), from net_forward in eval mode; root
 *              attributes flops and params (int64) as the C code recomputes them from the file's
 *              architecture (arch_flops, arch_params)
 * Prints one line (images, classes, flops, params). Exit codes as legr-mpi's: 2 usage, 3 a file
 * that cannot be read or does not fit, 1 anything else. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

#include "legr/arch.h"
#include "legr/h5io.h"
#include "legr/net.h"
#include "legr/util.h"

static int fail(int code, const char *msg)
{
    fprintf(stderr, "model_logits: error: %s\n", msg);
    return code;
}

/* The float32 (N, C, H, W) dataset "x" of path into a malloc'd buffer; N in *n. */
static float *read_inputs(const char *path, const Node *in, int *n, Err *err)
{
    float *x = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, "x", H5P_DEFAULT) : -1;
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[4] = {0};
    if (s < 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: cannot open dataset \"x\"", path);
        goto out;
    }
    if (H5Sget_simple_extent_ndims(s) != 4 || H5Sget_simple_extent_dims(s, dims, NULL) != 4 ||
        dims[0] < 1 || dims[0] > 4096 || dims[1] != (hsize_t)in->c || dims[2] != (hsize_t)in->h ||
        dims[3] != (hsize_t)in->w) {
        err_set(err, LEGR_EXIT_DATA,
                "%s: \"x\" must be (N, %d, %d, %d) with 1 <= N <= 4096, the network's input",
                path, in->c, in->h, in->w);
        goto out;
    }
    x = xmalloc((size_t)(dims[0] * dims[1] * dims[2] * dims[3]) * sizeof(float));
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: cannot read \"x\"", path);
        free(x);
        x = NULL;
        goto out;
    }
    *n = (int)dims[0];
out:
    if (s >= 0) H5Sclose(s);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    return x;
}

static int write_logits(const char *path, const float *logits, int n, int classes,
                        long long flops, long long params, Err *err)
{
    int rc = -1;
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)classes};
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s = H5Screate_simple(2, dims, NULL), s1 = H5Screate(H5S_SCALAR);
    hid_t d = f >= 0 ? H5Dcreate2(f, "logits", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT)
                     : -1;
    hid_t a1 = f >= 0 ? H5Acreate2(f, "flops", H5T_STD_I64LE, s1, H5P_DEFAULT, H5P_DEFAULT) : -1;
    hid_t a2 = f >= 0 ? H5Acreate2(f, "params", H5T_STD_I64LE, s1, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (d >= 0 && a1 >= 0 && a2 >= 0 &&
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits) >= 0 &&
        H5Awrite(a1, H5T_NATIVE_LLONG, &flops) >= 0 && H5Awrite(a2, H5T_NATIVE_LLONG, &params) >= 0)
        rc = 0;
    if (a2 >= 0) H5Aclose(a2);
    if (a1 >= 0) H5Aclose(a1);
    if (d >= 0) H5Dclose(d);
    H5Sclose(s1);
    H5Sclose(s);
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    if (rc) err_set(err, LEGR_EXIT_INTERNAL, "%s: cannot write the logits", path);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.h5 INPUTS.h5 OUT.h5\n", argv[0]);
        return LEGR_EXIT_USAGE;
    }
    Arch arch;
    Net net;
    Err err = {0};
    int n = 0;
    if (h5_model_load_arch(argv[1], &arch, &err) != 0) return fail(err.code, err.msg);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages only */
    float *x = read_inputs(argv[2], &arch.nodes[0], &n, &err);
    if (!x) {
        arch_free(&arch);
        return fail(err.code, err.msg);
    }
    if (net_build(&net, &arch, n, &err) != 0) {
        free(x);
        arch_free(&arch);
        return fail(err.code, err.msg);
    }
    int rc = 0;
    if (h5_model_load_params(argv[1], &net, &err) != 0) {
        rc = fail(err.code, err.msg);
    } else {
        const float *logits = net_forward(&net, x, n, 0);
        long long flops = arch_flops(&net.arch), params = arch_params(&net.arch);
        if (write_logits(argv[3], logits, n, net.arch.num_classes, flops, params, &err) != 0)
            rc = fail(err.code, err.msg);
        else
            printf("model_logits: %d images, %d classes, %lld MACs, %lld params\n", n,
                   net.arch.num_classes, flops, params);
    }
    net_free(&net);
    arch_free(&arch);
    free(x);
    return rc;
}
