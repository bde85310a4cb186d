/* cuda_bench's command line and the replay trace's split into parts. */
#ifndef BENCH_OPTS_H
#define BENCH_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "bench/bench_route.h"

#define BO_MAXPOS 128          /* longest decode sequence (prompt + steps) */
#define BO_PROMPT 32           /* batch-1 prompt */
#define BO_BATCH 16
#define BO_BPROMPT 8           /* batch-16 and training prompts */
#define BO_MAXFRAC 8
#define BO_MAXPOL 3

enum bo_part { BO_B1, BO_B16, BO_TRAIN, BO_PRE, BO_NPART };

struct bench_opts {
	const char *backend, *json, *model, *pack;
	const char *trace;         /* --routing trace:PATH; NULL: synthetic */
	enum cache_policy pols[BO_MAXPOL];
	double fracs[BO_MAXFRAC];
	int n_pols, n_fracs;
	enum br_mode order[BR_N];  /* --prefetch, in its order */
	int modes[BR_N], n_modes;
	int pre_seqs, pre_len;
	int w1, s1, w16, s16, tsteps;  /* warm-up, timed; training steps */
	double deadline;
	bool f32_pack;             /* --f32-pack: experts stored f32 even for cuda */
	int prefetch_k;            /* --prefetch-k: freq/cepr decode's experts
				    * predicted a next layer; 0: top_k */
	bool scan;                 /* --scan: cache_opts.scan_resistant */
	int pre_calls;             /* --prefill-calls: prefills, the last timed */
	int host_threads;          /* --host-threads: cache_opts.host_threads */
};

extern const char bo_usage[];

/* 0, or -EINVAL (bad value, or a decode sequence past BO_MAXPOS). */
int bo_parse(int argc, char **argv, struct bench_opts *o);

/* Replay: the trace's disjoint parts, in order b1, b16 (16 x), training
 * (16 x), prefill (the rest); part[p] = {start, tokens per sequence}
 * (prefill: its whole length).  *tsteps: training steps, cut down to fit
 * 3/4 of what b1 and b16 leave.  0, or -ERANGE with a line in err. */
int bo_plan_trace(const struct bench_opts *o, size_t n_tokens, const char *path,
		  size_t part[BO_NPART][2], int *tsteps, char *err, size_t errlen);

/* Sequence i of part p reads the trace from start + i * len (prefill: one
 * stretch, wrapped, prompt i at offset i * pre_len).  part NULL: synthetic. */
void bo_set_part(const size_t (*part)[2], int pre_len, struct br_seq *s, enum bo_part p, int i);

#endif
