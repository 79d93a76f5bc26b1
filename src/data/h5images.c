/* legr-images files read per rank: header checks, labels, a shared LRU cache, JPEG, transforms. */
#include "images.h"
#include "jpeg.h"
#include "../io/h5util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "legr/image_aug.h"

#define IMAGES_FORMAT "legr-images"
#define IMAGES_VERSION 1

/* torchvision's RandomResizedCrop defaults. */
#define RRC_SCALE_MIN 0.08
#define RRC_SCALE_MAX 1.0
#define RRC_RATIO_MIN (3.0 / 4.0)
#define RRC_RATIO_MAX (4.0 / 3.0)

static pthread_mutex_t io_mutex = PTHREAD_MUTEX_INITIALIZER;

void data_io_lock(void) { pthread_mutex_lock(&io_mutex); }
void data_io_unlock(void) { pthread_mutex_unlock(&io_mutex); }

/* One cached image: its stored bytes (HWC uint8 pixels, or the encoded JPEG). */
typedef struct CacheEntry {
    ImageSource *src;
    int index;
    uint8_t *bytes;
    size_t len;
    int pins; /* batches using it now: never evicted while > 0 */
    struct CacheEntry *prev, *next; /* LRU list, most recent first */
} CacheEntry;

struct ImageSource {
    char *path;
    char group[8];
    hid_t fid, images;
    int jpeg;
    int n;                        /* images in use (after the limit) */
    int channels, height, width;  /* stored size (0 for JPEG) */
    int crop, resize;
    int has_stats;
    float *mean, *std;            /* channels each, when has_stats */
    CacheEntry **slot;            /* n: the cached entry of each image, or NULL */
};

/* The process-wide cache; every field is guarded by io_mutex. */
static struct {
    CacheEntry *head, *tail;
    size_t bytes, limit;
} cache;

static void lru_unlink(CacheEntry *e)
{
    if (e->prev) e->prev->next = e->next;
    else cache.head = e->next;
    if (e->next) e->next->prev = e->prev;
    else cache.tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(CacheEntry *e)
{
    e->prev = NULL;
    e->next = cache.head;
    if (cache.head) cache.head->prev = e;
    cache.head = e;
    if (!cache.tail) cache.tail = e;
}

static void entry_drop(CacheEntry *e)
{
    lru_unlink(e);
    e->src->slot[e->index] = NULL;
    cache.bytes -= e->len;
    free(e->bytes);
    free(e);
}

/* Drop least recently used, unpinned entries until the cache fits its limit. */
static void cache_trim(void)
{
    CacheEntry *e = cache.tail;
    while (cache.bytes > cache.limit && e) {
        CacheEntry *prev = e->prev;
        if (e->pins == 0) entry_drop(e);
        e = prev;
    }
}

void images_cache_limit(size_t bytes)
{
    data_io_lock();
    cache.limit = bytes;
    cache_trim();
    data_io_unlock();
}

/* ---- header checks ---- */

/* The number of elements of attribute `name` of the root, its class into *cls; -1 if absent. */
static long long attr_count(hid_t fid, const char *name, H5T_class_t *cls)
{
    if (H5Aexists(fid, name) <= 0) return -1;
    hid_t a = H5Aopen(fid, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
    long long n = sp >= 0 ? (long long)H5Sget_simple_extent_npoints(sp) : -1;
    *cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return n;
}

/* Root attributes: classes (count), channels, and mean/std when present (stats[2*channels]). */
static int read_root(hid_t fid, const char *path, int *classes, int *channels, int *has_stats,
                     double *stats, Err *err)
{
    H5T_class_t cls;
    long long k = attr_count(fid, "classes", &cls);
    if (k < 0 || cls != H5T_STRING)
        return err_set(err, LEGR_EXIT_DATA, "%s: attribute 'classes' (an array of class names) "
                       "is %s", path, k < 0 ? "missing" : "not a string array");
    if (k < 1 || k > 1000000000)
        return err_set(err, LEGR_EXIT_DATA, "%s: attribute 'classes' lists %lld names", path, k);
    *classes = (int)k;
    if (h5u_get_attr(fid, ".", "channels", H5T_NATIVE_INT, channels, path, err) != 0) return -1;
    if (*channels < 1 || *channels > DATA_MAX_CHANNELS)
        return err_set(err, LEGR_EXIT_DATA, "%s: channels = %d is out of range [1, %d]", path,
                       *channels, DATA_MAX_CHANNELS);
    *has_stats = 0;
    long long nm = attr_count(fid, "mean", &cls);
    H5T_class_t cls2;
    long long ns = attr_count(fid, "std", &cls2);
    if (nm < 0 && ns < 0) return 0;
    if (nm != *channels || ns != *channels || cls != H5T_FLOAT || cls2 != H5T_FLOAT)
        return err_set(err, LEGR_EXIT_DATA, "%s: attributes 'mean' and 'std' must both be "
                       "float arrays of %d values (one per channel)", path, *channels);
    for (int i = 0; i < 2; i++) {
        hid_t a = H5Aopen(fid, i ? "std" : "mean", H5P_DEFAULT);
        herr_t rc = a >= 0 ? H5Aread(a, H5T_NATIVE_DOUBLE, stats + i * *channels) : -1;
        if (a >= 0) H5Aclose(a);
        if (rc < 0)
            return err_set(err, LEGR_EXIT_DATA, "%s: attribute '%s' is unreadable", path,
                           i ? "std" : "mean");
    }
    for (int c = 0; c < *channels; c++)
        if (!(stats[*channels + c] > 0) || !(stats[c] == stats[c]))
            return err_set(err, LEGR_EXIT_DATA, "%s: std[%d] = %g must be > 0 (and mean a "
                           "number)", path, c, stats[*channels + c]);
    *has_stats = 1;
    return 0;
}

/* What one group holds, checked: its images' encoding, stored size and count. */
typedef struct {
    int n, jpeg, height, width;
} GroupInfo;

/* Check /group/images and /group/labels (types, ranks, counts, the optional count attribute)
 * against the file's channel count. */
static int check_group(hid_t fid, const char *path, const char *group, int channels,
                       GroupInfo *gi, Err *err)
{
    char name[64];
    if (H5Lexists(fid, group, H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: group /%s is missing", path, group);
    snprintf(name, sizeof name, "%s/images", group);
    if (H5Lexists(fid, name, H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: dataset /%s is missing", path, name);
    hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
    hid_t t = d >= 0 ? H5Dget_type(d) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[8] = {0};
    if (nd >= 0 && nd <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rc = 0;
    char shape[96];
    memset(gi, 0, sizeof *gi);
    if (cls == H5T_VLEN) {
        hid_t base = H5Tget_super(t);
        int ok = base >= 0 && H5Tget_class(base) == H5T_INTEGER && H5Tget_size(base) == 1;
        if (base >= 0) H5Tclose(base);
        char *enc = NULL;
        Err e2;
        if (!ok || nd != 1)
            rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s is a variable-length dataset of shape %s "
                         "but not of uint8 bytes [N]", path, name,
                         h5u_format_shape(shape, sizeof shape, nd > 0 && nd <= 8 ? nd : 0, dims));
        else if (h5u_get_attr_string(d, ".", "encoding", &enc, path, &e2) != 0 ||
                 strcmp(enc, "jpeg") != 0)
            rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s holds encoded images but its attribute "
                         "'encoding' is %s%s%s, expected \"jpeg\"", path, name, enc ? "\"" : "",
                         enc ? enc : "missing", enc ? "\"" : "");
        else if (channels != 1 && channels != 3)
            rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s is JPEG, which decodes to 1 or 3 "
                         "channels, but the file has channels = %d", path, name, channels);
        free(enc);
        gi->jpeg = 1;
    } else if (cls == H5T_INTEGER && H5Tget_size(t) == 1 && H5Tget_sign(t) == H5T_SGN_NONE) {
        if (nd != 4 || dims[1] < 1 || dims[2] < 1 || dims[1] > 65536 || dims[2] > 65536)
            rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s has shape %s, expected [N, H, W, C]",
                         path, name,
                         h5u_format_shape(shape, sizeof shape, nd > 0 && nd <= 8 ? nd : 0, dims));
        else if ((int)dims[3] != channels)
            rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s has %llu channels (shape %s), but the "
                         "file's channels attribute says %d", path, name,
                         (unsigned long long)dims[3], h5u_format_shape(shape, sizeof shape, 4, dims),
                         channels);
        gi->height = (int)dims[1];
        gi->width = (int)dims[2];
    } else {
        rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s has the wrong dtype: expected uint8 "
                     "[N, H, W, C] pixels or variable-length uint8 JPEG bytes", path, name);
    }
    if (rc == 0 && dims[0] > (hsize_t)0x7fffffff)
        rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s holds %llu images, more than this build "
                     "reads", path, name, (unsigned long long)dims[0]);
    gi->n = (int)dims[0];
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    if (rc) return rc;

    snprintf(name, sizeof name, "%s/labels", group);
    int lnd;
    hsize_t ldims[4];
    if (h5u_shape(fid, name, &lnd, ldims, path, err) != 0) return -1;
    d = H5Dopen2(fid, name, H5P_DEFAULT);
    t = d >= 0 ? H5Dget_type(d) : -1;
    cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    if (cls != H5T_INTEGER)
        return err_set(err, LEGR_EXIT_DATA, "%s: /%s has the wrong dtype: expected int32 class "
                       "indices", path, name);
    if (lnd != 1 || ldims[0] != (hsize_t)gi->n)
        return err_set(err, LEGR_EXIT_DATA, "%s: /%s has shape %s, but /%s/images holds %d "
                       "images", path, name, h5u_format_shape(shape, sizeof shape, lnd, ldims),
                       group, gi->n);
    if (H5Aexists_by_name(fid, group, "count", H5P_DEFAULT) > 0) {
        int count = -1;
        if (h5u_get_attr(fid, group, "count", H5T_NATIVE_INT, &count, path, err) != 0) return -1;
        if (count != gi->n)
            return err_set(err, LEGR_EXIT_DATA, "%s: /%s says count = %d, but holds %d images",
                           path, group, count, gi->n);
    }
    return 0;
}

/* The group the test set comes from: /test, else /val; NULL when there is neither. */
static const char *test_group(hid_t fid)
{
    if (H5Lexists(fid, "test", H5P_DEFAULT) > 0) return "test";
    if (H5Lexists(fid, "val", H5P_DEFAULT) > 0) return "val";
    return NULL;
}

int images_probe(const char *path, ImagesInfo *info, Err *err)
{
    H5Quiet q;
    memset(info, 0, sizeof *info);
    data_io_lock();
    h5u_quiet_begin(&q);
    double stats[2 * DATA_MAX_CHANNELS];
    GroupInfo tr, te;
    int rc = -1;
    hid_t fid = h5u_open_read(path, IMAGES_FORMAT, IMAGES_VERSION, err);
    if (fid < 0) goto done;
    if (read_root(fid, path, &info->classes, &info->channels, &info->has_stats, stats, err) ||
        check_group(fid, path, "train", info->channels, &tr, err))
        goto done;
    const char *tg = test_group(fid);
    if (!tg) {
        err_set(err, LEGR_EXIT_DATA, "%s: group /test is missing (and there is no /val to test "
                "on instead)", path);
        goto done;
    }
    if (check_group(fid, path, tg, info->channels, &te, err)) goto done;
    if (tr.jpeg != te.jpeg || tr.height != te.height || tr.width != te.width) {
        err_set(err, LEGR_EXIT_DATA, "%s: /train and /%s store their images differently (%s "
                "%dx%d and %s %dx%d)", path, tg, tr.jpeg ? "JPEG" : "uint8", tr.height,
                tr.width, te.jpeg ? "JPEG" : "uint8", te.height, te.width);
        goto done;
    }
    info->jpeg = tr.jpeg;
    info->height = tr.height;
    info->width = tr.width;
    info->n_train = tr.n;
    info->n_test = te.n;
    snprintf(info->test_group, sizeof info->test_group, "%s", tg);
    rc = 0;
done:
    if (fid >= 0) H5Fclose(fid);
    h5u_quiet_end(&q);
    data_io_unlock();
    return rc;
}

/* ---- opening a group ---- */

void images_close(ImageSource *s)
{
    if (!s) return;
    data_io_lock();
    for (CacheEntry *e = cache.head; e;) {
        CacheEntry *next = e->next;
        if (e->src == s) {
            CHECK(e->pins == 0, "closing %s while image %d is in use", s->path, e->index);
            entry_drop(e);
        }
        e = next;
    }
    if (s->images >= 0) H5Dclose(s->images);
    if (s->fid >= 0) H5Fclose(s->fid);
    data_io_unlock();
    free(s->slot);
    free(s->path);
    free(s->mean);
    free(s->std);
    free(s);
}


/* HDF5's metadata cache grows with the part of the chunk index that reads have walked, up to
 * 32 MiB of file bytes by default, and a B-tree node takes about 7 times its file size in memory
 * (about 200 MiB per rank for ImageNet's 1.28 M chunks): random images walk all of it. Capped
 * at 1 MiB (about 7 MiB of memory), a rank's memory does not depend on the file's size; evicted
 * index nodes are read again from the OS's page cache. */
#define IMAGES_MDC_MAX ((size_t)1 << 20)

static void cap_metadata_cache(hid_t fid)
{
    H5AC_cache_config_t c;
    memset(&c, 0, sizeof c);
    c.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    if (H5Fget_mdc_config(fid, &c) < 0) return;
    c.set_initial_size = 1;
    c.initial_size = IMAGES_MDC_MAX / 2;
    c.min_size = IMAGES_MDC_MAX / 2;
    c.max_size = IMAGES_MDC_MAX;
    H5Fset_mdc_config(fid, &c); /* a cache left at its default is no error */
}

/* Read labels[0..n) of the group as ints and check each against the class count. */
static int read_labels(ImageSource *s, int *labels, int classes, Err *err)
{
    char name[64];
    snprintf(name, sizeof name, "%s/labels", s->group);
    hid_t d = H5Dopen2(s->fid, name, H5P_DEFAULT);
    hid_t fsp = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t start = 0, count = (hsize_t)s->n;
    hid_t msp = H5Screate_simple(1, &count, NULL);
    int rc = -1;
    if (fsp >= 0 && H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0 &&
        (s->n == 0 || H5Dread(d, H5T_NATIVE_INT, msp, fsp, H5P_DEFAULT, labels) >= 0))
        rc = 0;
    H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    if (d >= 0) H5Dclose(d);
    if (rc)
        return err_set(err, LEGR_EXIT_DATA, "%s: /%s cannot be read: the file is truncated or "
                       "corrupt", s->path, name);
    for (int i = 0; i < s->n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return err_set(err, LEGR_EXIT_DATA, "%s: /%s[%d] = %d is out of range [0, %d) (the "
                           "file lists %d classes)", s->path, name, i, labels[i], classes,
                           classes);
    return 0;
}

int dataset_open_images(Dataset *d, const char *path, const char *group, const ImagesOpen *o,
                        Err *err)
{
    memset(d, 0, sizeof *d);
    ImageSource *s = xcalloc(1, sizeof *s);
    s->fid = s->images = -1;
    s->path = xstrdup(path);
    snprintf(s->group, sizeof s->group, "%s", group);
    H5Quiet q;
    data_io_lock();
    h5u_quiet_begin(&q);
    double stats[2 * DATA_MAX_CHANNELS];
    GroupInfo gi;
    int classes = 0, rc = -1;
    char name[64];
    s->fid = h5u_open_read(path, IMAGES_FORMAT, IMAGES_VERSION, err);
    if (s->fid < 0 ||
        read_root(s->fid, path, &classes, &s->channels, &s->has_stats, stats, err) ||
        check_group(s->fid, path, group, s->channels, &gi, err))
        goto done;
    s->jpeg = gi.jpeg;
    s->height = gi.height;
    s->width = gi.width;
    s->n = o->limit > 0 && o->limit < gi.n ? o->limit : gi.n;
    s->crop = o->crop;
    s->resize = o->resize > 0 ? o->resize : o->crop;
    if (s->jpeg && s->crop == 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: /%s/images are JPEG images of any size; set data.crop "
                "(and data.resize) to give the network one size", path, group);
        goto done;
    }
    cap_metadata_cache(s->fid);
    snprintf(name, sizeof name, "%s/images", group);
    s->images = H5Dopen2(s->fid, name, H5P_DEFAULT);
    if (s->images < 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: /%s cannot be opened", path, name);
        goto done;
    }
    d->labels = xmalloc((size_t)(s->n ? s->n : 1) * sizeof(int));
    d->n = s->n;
    if (read_labels(s, d->labels, classes, err)) goto done;
    if (s->has_stats) {
        s->mean = xmalloc((size_t)s->channels * sizeof(float));
        s->std = xmalloc((size_t)s->channels * sizeof(float));
        for (int c = 0; c < s->channels; c++) {
            s->mean[c] = (float)stats[c];
            s->std[c] = (float)stats[s->channels + c];
        }
    }
    s->slot = xcalloc((size_t)(s->n ? s->n : 1), sizeof *s->slot);
    rc = 0;
done:
    h5u_quiet_end(&q);
    data_io_unlock();
    if (rc) {
        free(d->labels);
        memset(d, 0, sizeof *d);
        images_close(s);
        return -1;
    }
    d->c = s->channels;
    d->h = s->crop ? s->crop : s->height;
    d->w = s->crop ? s->crop : s->width;
    d->num_classes = classes;
    d->src = s;
    return 0;
}

int dataset_images_stats(const Dataset *d, float *mean, float *std)
{
    if (!d->src || !d->src->has_stats) return 0;
    memcpy(mean, d->src->mean, (size_t)d->c * sizeof(float));
    memcpy(std, d->src->std, (size_t)d->c * sizeof(float));
    return 1;
}

int data_hdf5_threadsafe(void)
{
    hbool_t ts = 0;
    return H5is_library_threadsafe(&ts) >= 0 && ts;
}

const char *dataset_describe(const Dataset *d, char *buf, size_t size)
{
    const ImageSource *s = d->src;
    if (!s)
        snprintf(buf, size, "%d images of %dx%dx%d in memory", d->n, d->c, d->h, d->w);
    else if (s->jpeg)
        snprintf(buf, size, "%s /%s: %d JPEG images, %d channel(s)", s->path, s->group, s->n,
                 s->channels);
    else
        snprintf(buf, size, "%s /%s: %d images of %dx%dx%d", s->path, s->group, s->n, s->height,
                 s->width, s->channels);
    return buf;
}

int dataset_resize(const Dataset *d) { return d->src ? d->src->resize : 0; }

/* ---- reading images ---- */

/* HDF5 allocates variable-length data with these, so the cache owns and frees the bytes. */
static void *vlen_alloc(size_t size, void *info)
{
    (void)info;
    return malloc(size ? size : 1);
}

static void vlen_free(void *p, void *info)
{
    (void)info;
    free(p);
}

static CacheEntry *entry_new(ImageSource *s, int index, uint8_t *bytes, size_t len)
{
    CacheEntry *e = xcalloc(1, sizeof *e);
    e->src = s;
    e->index = index;
    e->bytes = bytes;
    e->len = len;
    s->slot[index] = e;
    cache.bytes += len;
    lru_push_front(e);
    return e;
}

/* Read the uncached JPEGs miss[0..m) (ascending, distinct) into new entries, by one point
 * selection. */
static int read_jpeg_misses(ImageSource *s, const int *miss, int m, Err *err)
{
    hsize_t *coord = xmalloc((size_t)m * sizeof(hsize_t));
    hvl_t *v = xcalloc((size_t)m, sizeof(hvl_t));
    for (int i = 0; i < m; i++) coord[i] = (hsize_t)miss[i];
    hsize_t cnt = (hsize_t)m;
    hid_t fsp = H5Dget_space(s->images), msp = H5Screate_simple(1, &cnt, NULL);
    hid_t mt = H5Tvlen_create(H5T_NATIVE_UINT8), dx = H5Pcreate(H5P_DATASET_XFER);
    int rc = fsp >= 0 && H5Sselect_elements(fsp, H5S_SELECT_SET, (size_t)m, coord) >= 0 &&
                     H5Pset_vlen_mem_manager(dx, vlen_alloc, NULL, vlen_free, NULL) >= 0 &&
                     H5Dread(s->images, mt, msp, fsp, dx, v) >= 0
                 ? 0
                 : -1;
    H5Pclose(dx);
    H5Tclose(mt);
    H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    for (int i = 0; i < m; i++) {
        if (rc == 0) entry_new(s, miss[i], v[i].p, v[i].len); /* an empty one has p NULL */
        else free(v[i].p);
    }
    free(v);
    free(coord);
    if (rc)
        err_set(err, LEGR_EXIT_DATA, "%s: /%s/images cannot be read (images %d..%d among "
                "others): the file is truncated or corrupt", s->path, s->group, miss[0],
                miss[m - 1]);
    return rc;
}

/* Read the uncached uint8 images miss[0..m) (ascending, distinct) into new entries, by one
 * hyperslab per run of consecutive indices. */
static int read_pixel_misses(ImageSource *s, const int *miss, int m, Err *err)
{
    const size_t img = (size_t)s->height * s->width * s->channels;
    hid_t fsp = H5Dget_space(s->images);
    int rc = fsp >= 0 ? 0 : -1;
    for (int i = 0; i < m && rc == 0;) {
        int j = i + 1;
        while (j < m && miss[j] == miss[j - 1] + 1) j++;
        hsize_t start[4] = {(hsize_t)miss[i], 0, 0, 0};
        hsize_t count[4] = {(hsize_t)(j - i), (hsize_t)s->height, (hsize_t)s->width,
                            (hsize_t)s->channels};
        hsize_t flat = (hsize_t)(j - i) * img;
        uint8_t *buf = xmalloc((size_t)flat);
        hid_t msp = H5Screate_simple(1, &flat, NULL);
        rc = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
                     H5Dread(s->images, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, buf) >= 0
                 ? 0
                 : -1;
        H5Sclose(msp);
        for (int k = i; k < j && rc == 0; k++) {
            uint8_t *one = xmalloc(img);
            memcpy(one, buf + (size_t)(k - i) * img, img);
            entry_new(s, miss[k], one, img);
        }
        free(buf);
        if (rc)
            err_set(err, LEGR_EXIT_DATA, "%s: /%s/images[%d..%d] cannot be read: the file is "
                    "truncated or corrupt", s->path, s->group, miss[i], miss[j - 1]);
        i = j;
    }
    if (fsp >= 0) H5Sclose(fsp);
    else err_set(err, LEGR_EXIT_DATA, "%s: /%s/images cannot be read", s->path, s->group);
    return rc;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Pin the entries of images idx[0..n) into out[], reading those not cached. */
static int source_fetch(ImageSource *s, const int *idx, int n, CacheEntry **out, Err *err)
{
    int *miss = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    int m = 0, rc = 0;
    H5Quiet q;
    data_io_lock();
    for (int i = 0; i < n; i++) {
        CHECK(idx[i] >= 0 && idx[i] < s->n, "image %d of %d", idx[i], s->n);
        out[i] = s->slot[idx[i]];
        if (out[i]) {
            out[i]->pins++;
            lru_unlink(out[i]);
            lru_push_front(out[i]);
        } else {
            miss[m++] = idx[i];
        }
    }
    qsort(miss, (size_t)m, sizeof(int), cmp_int);
    int u = 0;
    for (int i = 0; i < m; i++)
        if (u == 0 || miss[i] != miss[u - 1]) miss[u++] = miss[i];
    h5u_quiet_begin(&q);
    if (u > 0)
        rc = s->jpeg ? read_jpeg_misses(s, miss, u, err) : read_pixel_misses(s, miss, u, err);
    h5u_quiet_end(&q);
    for (int i = 0; i < n; i++) {
        if (out[i]) continue;
        out[i] = s->slot[idx[i]]; /* NULL only when the read failed */
        if (out[i]) out[i]->pins++;
    }
    cache_trim();
    data_io_unlock();
    free(miss);
    return rc;
}

/* Unpin the entries of a batch (NULLs skipped) and trim the cache. */
static void source_release(CacheEntry **e, int n)
{
    data_io_lock();
    for (int i = 0; i < n; i++)
        if (e[i]) e[i]->pins--;
    cache_trim();
    data_io_unlock();
}

/* ---- transforms ---- */

void data_norm_lut(float *lut, int c, const Normalize *norm)
{
    for (int ch = 0; ch < c; ch++) {
        float m = norm ? norm->mean[ch] : 0.0f;
        float sd = norm ? norm->std[ch] : 1.0f;
        CHECK(sd > 0.0f, "normalisation std[%d] = %g", ch, (double)sd);
        for (int v = 0; v < 256; v++) lut[ch * 256 + v] = ((float)v / 255.0f - m) / sd;
    }
}

/* The stored-size path, the same as the in-memory sets' (dataset.c): a crop at offset (oy, ox)
 * of the image zero-padded by pad (padding is raw 0), mirrored when flip; HWC source. */
static void padded_crop(float *out, const uint8_t *img, int c, int h, int w, int pad, int oy,
                        int ox, int flip, const float *lut)
{
    for (int ch = 0; ch < c; ch++) {
        const float *l = lut + ch * 256;
        float *dst = out + (size_t)ch * h * w;
        for (int y = 0; y < h; y++) {
            int sy = y + oy - pad;
            for (int x = 0; x < w; x++) {
                int cx = flip ? w - 1 - x : x;
                int sx = cx + ox - pad;
                int inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
                dst[(size_t)y * w + x] = l[inside ? img[((size_t)sy * w + sx) * c + ch] : 0];
            }
        }
    }
}

/* Per-call buffers of the crop path, grown as images need. */
typedef struct {
    uint8_t *crop;    /* crop*crop*c */
    void *scratch;
    size_t scratch_size;
} Work;

/* out (C, h, w) floats from an HWC uint8 image of the same size, mirrored when flip. */
static void hwc_to_chw(float *out, const uint8_t *img, int c, int h, int w, int flip,
                       const float *lut)
{
    for (int ch = 0; ch < c; ch++) {
        const float *l = lut + ch * 256;
        float *dst = out + (size_t)ch * h * w;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sx = flip ? w - 1 - x : x;
                dst[(size_t)y * w + x] = l[img[((size_t)y * w + sx) * c + ch]];
            }
    }
}

static void *work_scratch(Work *w, size_t bytes)
{
    if (bytes > w->scratch_size) {
        free(w->scratch);
        w->scratch = xmalloc(bytes);
        w->scratch_size = bytes;
    }
    return w->scratch;
}

/* The crop path into out (C, oh, ow): training RandomResizedCrop then a flip (draws: the box,
 * then the flip, torchvision's order), evaluation Resize then CenterCrop (a flip only when
 * asked for without the random crop). */
static void crop_image(float *out, const uint8_t *pix, int h, int w0, const ImageSource *s,
                       int oh, int ow, const Augment *aug, Rng *r, Work *w, const float *lut)
{
    const ImageView view = {h, w0, s->channels, pix}, *v = &view;
    int flip;
    if (aug && aug->resized_crop) {
        CropBox box = aug_rrc_box(v->h, v->w, RRC_SCALE_MIN, RRC_SCALE_MAX, RRC_RATIO_MIN,
                                  RRC_RATIO_MAX, r);
        flip = aug->flip ? rng_below(r, 2) == 1 : 0;
        void *scr = work_scratch(w, aug_resized_crop_scratch(oh, ow, v, box));
        aug_resized_crop(w->crop, oh, ow, v, box, scr);
    } else {
        flip = aug && aug->flip ? rng_below(r, 2) == 1 : 0;
        void *scr = work_scratch(w, aug_resize_center_crop_scratch(oh, s->resize, v));
        aug_resize_center_crop(w->crop, oh, s->resize, v, scr);
    }
    hwc_to_chw(out, w->crop, v->c, oh, ow, flip, lut);
}

int images_fill(float *x, int *y, const Dataset *d, const int *idx, int n,
                const Normalize *norm, const Augment *aug, Rng *shared, uint64_t seed,
                uint64_t stream0, Err *err)
{
    ImageSource *s = d->src;
    const int c = d->c, oh = d->h, ow = d->w;
    const size_t img = (size_t)c * oh * ow;
    CacheEntry **e = xcalloc((size_t)(n ? n : 1), sizeof *e);
    float *lut = xmalloc((size_t)c * 256 * sizeof(float));
    data_norm_lut(lut, c, norm);
    Work w = {xmalloc(img), NULL, 0};
    int rc = source_fetch(s, idx, n, e, err);
    const int pad = aug ? aug->crop_pad : 0;
    for (int b = 0; b < n && rc == 0; b++) {
        Rng own, *r = shared;
        if (!r) {
            rng_init(&own, seed, rng_stream_id(RNG_PURPOSE_AUGMENT, stream0 + (uint64_t)b));
            r = &own;
        }
        y[b] = d->labels[idx[b]];
        float *out = x + (size_t)b * img;
        int vh = s->height, vw = s->width;
        const uint8_t *pix = e[b]->bytes;
        uint8_t *decoded = NULL;
        if (s->jpeg) {
            char why[256];
            if (jpeg_decode(e[b]->bytes, e[b]->len, c, &decoded, &vh, &vw, why, sizeof why)) {
                rc = err_set(err, LEGR_EXIT_DATA, "%s: /%s/images[%d]: corrupt JPEG: %s",
                             s->path, s->group, idx[b], why);
                break;
            }
            pix = decoded;
        }
        if (!s->crop) {
            /* Draw order as in dataset.c: row offset, column offset, flip. */
            int oy = pad, ox = pad, flip = 0;
            if (pad > 0) {
                oy = (int)rng_below(r, (uint32_t)(2 * pad + 1));
                ox = (int)rng_below(r, (uint32_t)(2 * pad + 1));
            }
            if (aug && aug->flip) flip = rng_below(r, 2) == 1;
            padded_crop(out, pix, c, oh, ow, pad, oy, ox, flip, lut);
        } else {
            crop_image(out, pix, vh, vw, s, oh, ow, aug, r, &w, lut);
        }
        free(decoded);
    }
    source_release(e, n);
    free(w.crop);
    free(w.scratch);
    free(lut);
    free(e);
    return rc;
}
