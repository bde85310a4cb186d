/* MOED_CUDA_PROFILE's copy timing for the CUDA backend: events around a
 * pool's first CU_PROF_COPIES whole-load copies (from the copy stream's wait
 * for the slot to the copy's end), summed up on stderr when closed. */
#ifndef LD_BACKEND_CUDA_PROF_H
#define LD_BACKEND_CUDA_PROF_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>

#define CU_PROF_COPIES 4096

struct cu_prof;

/* *out: a new profile, or NULL when there is no memory for one (loads then
 * go untimed).  0, or -EIO when the events cannot be made. */
int cu_prof_open(struct cu_prof **out);
/* Whether p (NULL: no profile) times one more copy. */
bool cu_prof_room(const struct cu_prof *p);
/* The start and end of that copy on stream s (cu_prof_room first). */
int cu_prof_begin(struct cu_prof *p, cudaStream_t s);
int cu_prof_end(struct cu_prof *p, cudaStream_t s, size_t bytes);
/* Prints the summary and frees p (NULL: nothing). */
void cu_prof_close(struct cu_prof *p);

#endif
