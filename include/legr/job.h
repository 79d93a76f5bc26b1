/* The stage driver: config -> data -> base network -> search -> family, on every rank. */
#ifndef LEGR_JOB_H
#define LEGR_JOB_H

#include "legr/dist.h"

typedef struct {
    const char *config_path;
    const char *resume_path; /* search checkpoint to continue, or NULL */
    int dry_run;             /* print the plan, read no data, run nothing */
} JobOptions;

/* Run the job described by opts on this rank; returns the process exit code (LEGR_EXIT_*),
 * the same on every rank. */
int job_run(const JobOptions *opts, const Dist *d);

#endif
