/* legr-mpi entry point (placeholder until the job driver lands). */
#include <stdio.h>
int main(void) { puts("legr-mpi"); return 0; }
