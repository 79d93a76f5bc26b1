/* The training loop: shuffled mini-batches split across replicas, schedules, progress and logs. */
#include <stdlib.h>

#include "legr/jsonl.h"
#include "legr/train.h"

/* Queue this replica's slice [lo, hi) of global batch `step`: each image's augmentation draws
 * from its own stream keyed by (seed, global image position), so no replica's draws depend on
 * another's. The epoch order of the step is made first when *order_epoch is another epoch. */
static void submit_slice(DataLoader *ld, int *order, int *order_epoch, const int *idx, int n,
                         int lo, int hi, long long step, const TrainParams *p)
{
    const int per_epoch = n / p->batch;
    const int epoch = (int)(step / per_epoch);
    if (epoch != *order_epoch) {
        data_epoch_order(order, idx, n, p->seed, epoch);
        *order_epoch = epoch;
    }
    const int b = (int)(step % per_epoch);
    data_loader_submit(ld, order + (size_t)b * p->batch + lo, hi - lo, p->seed,
                       (uint64_t)step * p->batch + lo);
}

double train_run(Net *net, const Dataset *d, const int *idx, int n, const Dataset *eval,
                 const int *eval_idx, int n_eval, const TrainParams *p, const Replicas *rep)
{
    const int B = p->batch;
    CHECK(B >= rep->size && B <= n, "global batch %d needs %d <= batch <= %d samples", B,
          rep->size, n);
    const int per_epoch = n / B;
    const long long total = p->steps > 0 ? p->steps : (long long)p->epochs * per_epoch;
    const int lo = (int)((long long)rep->rank * B / rep->size);
    const int hi = (int)((long long)(rep->rank + 1) * B / rep->size);
    CHECK(hi - lo <= net->batch, "replica slice %d exceeds the net's batch %d", hi - lo, net->batch);
    const int augment = p->aug.crop_pad > 0 || p->aug.flip || p->aug.resized_crop;
    DataLoader *ld = data_loader_new(d, hi - lo, &p->norm, augment ? &p->aug : NULL);
    int *order = xmalloc((size_t)n * sizeof(int));
    int order_epoch = -1;

    double t0 = time_now(), epoch_loss = 0.0, last_epoch_loss = 0.0;
    int epoch = -1, epoch_steps = 0;
    const long long first = p->steps > 0 ? 0 : p->start_step;
    if (first < total) submit_slice(ld, order, &order_epoch, idx, n, lo, hi, first, p);
    for (long long step = first; step < total; step++) {
        if (step % per_epoch == 0 || step == first) {
            epoch = (int)(step / per_epoch);
            epoch_loss = 0.0;
            epoch_steps = 0;
        }
        const float lr = lr_at(&p->sched, epoch);
        const int b = (int)(step % per_epoch);
        const float *x;
        const int *y;
        data_loader_take(ld, &x, &y);
        /* The next step's images are read while this one computes. */
        if (step + 1 < total) submit_slice(ld, order, &order_epoch, idx, n, lo, hi, step + 1, p);
        net->drop_seed = p->seed;
        net->drop_step = (uint64_t)step;
        net->drop_image0 = lo;
        double loss = train_step(net, rep->col, x, y, hi - lo, B, &p->sgd, lr, NULL);
        epoch_loss += loss;
        epoch_steps++;
        const int epoch_done = (b == per_epoch - 1) || step == total - 1;
        if (rep->rank == 0 && p->log_every > 0 && ((step + 1) % p->log_every == 0 || epoch_done)) {
            double el = time_now() - t0;
            double ips = (double)(step + 1 - first) * B / el;
            char eta[32];
            fprintf(stderr, "%s: epoch %d step %lld/%lld loss %.4f lr %.4g %.0f img/s ETA %s\n",
                    p->tag, epoch + 1, step + 1, total, epoch_loss / epoch_steps, lr, ips,
                    format_duration(el / (step + 1 - first) * (total - step - 1), eta,
                                    sizeof eta));
            JsonLine j;
            jl_begin(&j, p->jsonl, "train_step");
            jl_str(&j, "stage", p->tag);
            jl_int(&j, "epoch", epoch + 1);
            jl_int(&j, "step", step + 1);
            jl_num(&j, "loss", epoch_loss / epoch_steps, 7);
            jl_num(&j, "lr", lr, 6);
            jl_num(&j, "img_per_s", ips, 5);
            jl_end(&j);
        }
        if (epoch_done) {
            last_epoch_loss = epoch_loss / epoch_steps;
            if (eval && rep->rank == 0) {
                EvalResult r = train_evaluate(net, eval, eval_idx, n_eval, &p->norm);
                fprintf(stderr, "%s: epoch %d train loss %.4f test loss %.4f top-1 %.2f%%\n",
                        p->tag, epoch + 1, last_epoch_loss, r.loss, 100.0 * r.acc);
                JsonLine j;
                jl_begin(&j, p->jsonl, "train_epoch");
                jl_str(&j, "stage", p->tag);
                jl_int(&j, "epoch", epoch + 1);
                jl_num(&j, "train_loss", last_epoch_loss, 7);
                jl_num(&j, "test_loss", r.loss, 7);
                jl_num(&j, "test_acc", r.acc, 7);
                jl_num(&j, "seconds", time_now() - t0, 6);
                jl_end(&j);
            }
        }
        if (p->step_end) {
            /* The callback may write HDF5 files while the loader reads one. */
            data_io_lock();
            int stop = p->step_end(p->step_ctx, step + 1);
            data_io_unlock();
            if (stop) break;
        }
    }
    data_loader_free(ld);
    free(order);
    return last_epoch_loss;
}
