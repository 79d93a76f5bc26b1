/* legr-mpi command line: parse options, start MPI, run the job. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "legr/isa.h"
#include "legr/job.h"

static void print_usage(FILE *f)
{
    fprintf(f,
            "usage: legr-mpi [options] job.cfg\n"
            "       mpirun -np N legr-mpi [options] job.cfg\n"
            "\n"
            "Prune a convolutional network with LeGR (learned global ranking of filters):\n"
            "train or load the base network, learn per-layer (alpha, kappa) by regularized\n"
            "evolution across MPI ranks, then prune and fine-tune a family of networks at\n"
            "several FLOP levels, written to one HDF5 file.\n"
            "\n"
            "options:\n"
            "  --dry-run        print the resolved config, the network layer by layer with its\n"
            "                   FLOPs and parameters, the prune groups and a work estimate;\n"
            "                   read no data (one training step on random images is\n"
            "                   timed for the estimate)\n"
            "  --resume FILE    continue from checkpoint FILE: search.h5 continues the search\n"
            "                   (a finished one goes on to the family), pretrain.h5 the\n"
            "                   pretraining (the family stage always continues the levels\n"
            "                   saved in the run directory as family-level-NN.h5)\n"
            "  --stop-after STAGE\n"
            "                   end (exit 0) after STAGE: 'pretrain' (base.h5 written) or\n"
            "                   'search' (search.h5 finished), e.g. to run the family as a\n"
            "                   separate job (which then runs search.rescore_top's\n"
            "                   re-scoring)\n"
            "  --help           this text\n"
            "  --version        the program version and the kernels' vector ISA\n"
            "\n"
            "exit codes: 0 success; 1 internal error; 2 usage or config error; 3 input data\n"
            "error (dataset, model or checkpoint file); 4 stopped by SIGTERM/SIGUSR1 after a\n"
            "clean checkpoint (resume with --resume); 5 an output cannot be written (full disk,\n"
            "permissions; the previous file is kept).\n"
            "Configuration keys: docs/CONFIG.md. File formats: docs/FORMAT.md.\n");
}

int main(int argc, char **argv)
{
    JobOptions opts = {NULL, NULL, 0, JOB_STOP_NONE};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            const char *isa = legr_isa();
            if (strncmp(isa, "native", 6) == 0)
                printf("legr-mpi %s\nkernels: %s (built with -march=native; LEGR_ISA is not "
                       "used)\n", LEGR_VERSION, isa);
            else
                printf("legr-mpi %s\nkernels: %s (this CPU runs: %s; LEGR_ISA picks one)\n",
                       LEGR_VERSION, isa, legr_isa_available());
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            opts.dry_run = 1;
        } else if (!strcmp(a, "--stop-after")) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (!strcmp(v, "pretrain")) opts.stop_after = JOB_STOP_PRETRAIN;
            else if (!strcmp(v, "search")) opts.stop_after = JOB_STOP_SEARCH;
            else {
                fprintf(stderr, "legr-mpi: error: --stop-after needs 'pretrain' or 'search', "
                        "not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--resume")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "legr-mpi: error: --resume needs a checkpoint file\n");
                return 2;
            }
            opts.resume_path = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "legr-mpi: error: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (opts.config_path) {
            fprintf(stderr, "legr-mpi: error: more than one config file ('%s', '%s')\n",
                    opts.config_path, a);
            return 2;
        } else {
            opts.config_path = a;
        }
    }
    if (!opts.config_path) {
        print_usage(stderr);
        return 2;
    }
    /* Before MPI_Init, which takes a while: a SLURM job can be told to stop a second after it
     * starts (the jobs/ scripts forward SIGUSR1 to mpirun, which passes it to the ranks), and a
     * SIGUSR1 before the handler would kill the rank instead of stopping it cleanly. Installed
     * again after, in case the MPI library set handlers of its own. */
    dist_install_signal_handlers();
    Dist d;
    dist_init(&argc, &argv, &d);
    dist_install_signal_handlers();
    /* Under a file-size limit (ulimit -f) a write past it then fails with EFBIG and is reported
     * like a full disk, instead of SIGXFSZ killing the rank. */
    signal(SIGXFSZ, SIG_IGN);
    int code = job_run(&opts, &d);
    dist_finalize();
    return code;
}
