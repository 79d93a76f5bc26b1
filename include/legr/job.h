/* The stage driver: config -> data -> base network -> search -> family, on every rank. */
#ifndef LEGR_JOB_H
#define LEGR_JOB_H

#include "legr/dist.h"

/* The last stage a run performs (--stop-after). */
typedef enum { JOB_STOP_NONE = 0, JOB_STOP_PRETRAIN, JOB_STOP_SEARCH } JobStopAfter;

typedef struct {
    const char *config_path;
    const char *resume_path; /* search checkpoint to continue, or NULL */
    int dry_run;             /* print the plan, read no data, run nothing */
    JobStopAfter stop_after; /* end successfully after this stage */
} JobOptions;

/* Run the job described by opts on this rank; returns the process exit code (LEGR_EXIT_*),
 * the same on every rank. */
int job_run(const JobOptions *opts, const Dist *d);

#endif
