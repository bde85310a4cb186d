/* Internals shared by engine/engine_cuda.c (setup) and engine_cuda_run.c
 * (the forward pass). */
#ifndef ENG_ENGINE_CUDA_INT_H
#define ENG_ENGINE_CUDA_INT_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/cuda_kernels.h"
#include "engine/cuda_moe.h"
#include "engine/engine_cuda.h"

#define C ENG_CUDA_MAX_ROWS
#define GMAX ENG_CU_GEMV_MAX      /* rows of a fast (graph) step */
#define PLAN_EXPERT 128           /* plan bytes an expert may take: its wave entry,
				     six GEMM pointers, its wave's alignment */

struct dlayer {
	void *qkv, *o;             /* [qd + 2 kvd][H], [H][qd]; dense dtype */
	void *mlp_gu, *mlp_down;   /* dense MLP layers: [2I][H], [H][I] */
	float *attn_norm, *mlp_norm, *q_norm, *k_norm;
	float *router;             /* [E][H], f32 */
};

/* The chunk's rows as the kernels read them; one pinned copy, one device copy. */
struct rowtab {
	float *kc[C], *vc[C];
	int tok[C], pos[C], cap[C], out[C];
	int sel[C];                /* the rows with out >= 0 */
};

struct eng_cuda {
	const struct ld_model *m;
	struct ld_expert_src src;
	int dev, max_ctx, qd, kvd, D, ni, bf16, H, E, K, NE;
	bool act16;                /* bf16 activations on bf16 GEMMs (opt-in) */
	bool graphs;               /* fast path allowed (MOED_CUDA_GRAPHS != 0) */
	bool norm_gemv;            /* GEMVs normalise (MOED_CUDA_NORM_GEMV != 0) */
	bool gemv_dims;            /* every GEMM's input length suits the GEMVs */
	cudaStream_t st;
	bool own_stream;
	cublasHandle_t blas;
	struct dlayer *L;
	void *embed, *lm_head;
	float *final_norm, *inv_freq;
	/* device scratch, C rows */
	float *x, *xn, *qkv, *q, *att, *rlog, *rw, *xe, *gu, *h, *logits;
	unsigned *done;            /* eng_cu_router_route's counter, then eng_cu_attention's */
	float *apart;              /* eng_cu_attention's spans */
	bool one_each;             /* every row of the chunk a sequence of its own */
	bool tiles;                /* tiled prefill attention allowed (MOED_CUDA_ATT_TILES) */
	bool att_tiles;            /* the chunk's attention tiled (eng_cuda_rows_in) */
	float *hb, *eo;            /* per routed entry [NE][ni], [NE][H] */
	void *xb;                  /* bf16 activations: [3][C][widest input] */
	float *y3;                 /* gemm_split's three products, or a wave's; y3n floats */
	size_t y3n;
	/* after the groups in hgrpb / dgrpb, uploaded with them: */
	int *hent, *dent;          /* each row's K entries, ascending */
	/* bf16 experts of a prefill chunk on tensor cores: their entries' inputs
	 * and hidden vectors split in three ([3 NE][H], then [3 NE][ni], bf16,
	 * eng_cu_split3_entries' layout; then slack a padded GEMM reads past the
	 * last expert), their products in y3, a wave at a time
	 * (eng_cuda_run_split) */
	void *xbe;
	int *hej, *dej;            /* entry -> expert index, or -1 (after ent) */
	bool any_split;            /* some expert of the layer runs that way */
	int wave_rows;             /* padded entries a wave's products may take in y3 */
	/* a layer's waves: their eng_cu_wave lists and GEMM pointer arrays
	 * (pinned, device), plan_at bytes used */
	char *hplan, *dplan;
	size_t plan_at;
	int *wj;                   /* the experts run_loaded and run_split_loaded ran, E */
	int *rid;
	void *dgrpb, *hgrpb;       /* a layer's expert groups, device and pinned */
	struct eng_cu_grp dg, hg;
	struct rowtab *hrow, *drow;
	struct eng_cu_rows rows;   /* pointers into drow */
	/* A call of more than C rows runs its chunks layer by layer
	 * (engine_cuda_run.c's chunks()): chunk k's residual rows and row
	 * tables, kept from one layer to the next, in cx[k], chrow[k], cdrow[k]
	 * ([0]: x, hrow and drow, which the graphs read; the others allocated
	 * on the first such call); call_chunks: at most that many a call
	 * (MOED_CUDA_CALL_CHUNKS). */
	int call_chunks;
	bool ahead;                /* and prefetch each next layer (MOED_CUDA_CALL_AHEAD) */
	float *cx[ENG_CUDA_CALL_CHUNKS];
	struct rowtab *chrow[ENG_CUDA_CALL_CHUNKS], *cdrow[ENG_CUDA_CALL_CHUNKS];
	bool c_one[ENG_CUDA_CALL_CHUNKS], c_tiles[ENG_CUDA_CALL_CHUNKS];
	/* pinned host */
	int *hid;
	float *hw, *hp, *hlog;
	int *cnt;
	const float **xw;          /* their weights, once acquired */
	char *xpend, *xran;        /* loading when acquired ahead; run */
	const void **hxtab, **dxtab;   /* loaded experts' weights by id (pinned, device) */
	/* fast path: every expert resident, one CUDA graph per row count */
	bool have_tab;             /* dtab uploaded (the source said all resident) */
	const void **dtab;         /* its device copy */
	const void **dwp;          /* a layer's experts' weights by group (eng_cu_grp.wp) */
	int *fr_id;                /* routes of a fast step, [moe][GMAX][K], device */
	float *fr_w;
	int *hfr_id;               /* pinned copies */
	float *hfr_w;
	int *lhits;                /* experts used per MoE layer in a fast step */
	/* [0]: routes and logits left on the device, copied back after the
	 * graph; [1]: written by the kernels straight into the pinned copies
	 * (zero-copy, MOED_CUDA_ZOUT) */
	cudaGraphExec_t gx[2][GMAX + 1];
	/* eng_cuda_greedy's second set of zero-copy outputs (allocated on its
	 * first use) and the [1] graphs that write them */
	int *hfr_id2, *hbest2;
	float *hfr_w2, *hlog2;
	cudaGraphExec_t gx2[GMAX + 1];
	cudaEvent_t cev[2];
	bool chain;                /* MOED_CUDA_CHAIN != 0 */
	bool spin;                 /* MOED_CUDA_SPIN != 0 */
	/* A decode step's layer pml routes for on_route, held (pn rows; ids
	 * and weights copied, as the next router overwrites hid and hw) until
	 * eng_cuda_routes_out (MOED_CUDA_DEFER_ROUTES != 0) */
	bool defer;
	int pml, pn;
	const struct eng_cuda_row *prows;
	int *pid;
	float *pw;
	/* This MoE layer's routes grouped by the router on the GPU (gg), and
	 * its experts already added into x by the fast step's down launch
	 * (added): engine_cuda_moe.c */
	bool gg, added;
	bool zout, zcap;           /* zero-copy allowed; capturing a [1] graph */
	/* the [1] graphs' lm_head also leaves each row's argmax in hbest */
	unsigned long long *amk;   /* its keys and counter (device) */
	int *hbest;                /* pinned, GMAX */
	bool best_in[GMAX + 1];    /* the [1] graph of n rows writes hbest */
	bool argmax;               /* hbest given out (MOED_CUDA_ARGMAX != 0) */
	int best_n;                /* rows of hbest valid now, for logits rows at */
	const float *best_at;      /* best_at + out[sel[t]] * V */
	uint64_t fast_steps;
	/* MOED_CUDA_PROFILE: where a fast step's time goes (printed at close) */
	bool prof;
	cudaEvent_t pev[2];
	uint64_t p_n;              /* steps timed (chained ones are not) */
	double p_pre, p_gpu, p_wait, p_post, p_between, p_last;
	/* and a one-row step's MoE layers through the expert source */
	uint64_t pm_nq[2];         /* layers without / with an expert loading */
	double pm_route, pm_between, pm_last, pm_first, t_first, pm_q[2];
	/* and what lies between one such layer's experts and the next one's
	 * loads: events on st at the MoE layer's start (attention done), the
	 * router's end and after the experts' kernels, and when the loads were
	 * queued (pst, an idle stream: that moment on the GPU's clock);
	 * gev[ml & 1][GEV_*], recorded for layer gml[ml & 1][GEV_*] */
	cudaStream_t pst;
	cudaEvent_t gev[2][4];
	int gml[2][4];
	bool gloading[2];          /* layer gml[i][GEV_DONE] had an expert loading */
	/* per layer without / with loads pending: attention, router, host,
	 * experts (GEV_QUEUED to GEV_DONE) */
	uint64_t pg_n[2];
	double pg[2][4];
	/* The source's host_threads (engine_cuda_host.c): a decode step's
	 * missed experts, one in two, computed by the CPU from host memory
	 * while the others load.  The router leaves the experts' input rows in
	 * hxn (pinned), the pool writes their outputs by entry into hy
	 * (pinned) and sets *hdone, and eng_cu_host_wait copies them into eo
	 * once *hdone reaches hwant.  hx: this layer may (its router fills
	 * hxn); he: the entries of the groups the host runs (xran set). */
	struct host_ffn *hf;
	float *hxn, *hy;
	uint32_t *hdone, hwant;
	unsigned hturn;
	bool hx;
	struct eng_cu_host_ents he;
};

int eng_cuda_fail(const char *what, const char *why);
/* MOED_CUDA_PROFILE (engine_cuda_prof.c), printed by eng_cuda_prof_print: */
void eng_cuda_prof_print(const struct eng_cuda *g);
/* one-row MoE layer ml through the expert source entered at t0, had its
 * routes on the host at t1, its first expert found loading at t_first (0:
 * none) and its experts queued at t2; */
void eng_cuda_prof_moe(struct eng_cuda *g, int ml, double t0, double t1, double t2);
/* such a layer's event which (GEV_*), and (layer ml's routes on the host)
 * the spans of layer ml - 1 they give; */
enum { GEV_ATTN, GEV_ROUTE, GEV_QUEUED, GEV_DONE };
void eng_cuda_gap_event(struct eng_cuda *g, int ml, int which);
void eng_cuda_gap_note(struct eng_cuda *g, int ml);
/* a fast step one at a time: host before the launch t[0] to t[1], its
 * logits on the host at t[2], done at t[3] (GPU time: pev). */
void eng_cuda_prof_step(struct eng_cuda *g, const double t[4]);
/* Whether n rows of length in go through the GEMV kernels. */
static inline bool eng_cuda_gemv_rows(int n, int in)
{
	return n <= GMAX && eng_cu_gemv_ok(in);
}

/* Whether bf16 experts can run on tensor cores (engine_cuda_moe.c's
 * expert_split; the scratch for it is allocated only then). */
static inline bool eng_cuda_split_experts(const struct eng_cuda *g)
{
	return g->src.bf16 && !g->act16;
}

/* engine_cuda_run.c's GEMMs and router, for the expert-source MoE path
 * (engine_cuda_moe.c): */
int eng_cuda_gemm_big(struct eng_cuda *g, float *y, const float *x, const int *rows,
		      const void *w, int bf16, int n, int in, int out, int add);
void eng_cuda_grp_layout(struct eng_cuda *g, int entries);
int eng_cuda_route(struct eng_cuda *g, const struct dlayer *d, int n, int *ids, float *w,
		   int group, const void *const *tab, float *pout, float *xh);
/* engine_cuda_run.c's fast step, for eng_cuda_greedy: whether n rows (all
 * giving logits) can take it; the graph of n rows (z: zero-copy) into *gx;
 * after a step, its routes (fr_id, fr_w: as hfr_id's) to the hooks and the
 * source's hit counts. */
bool eng_cuda_fast_ok(struct eng_cuda *g, const struct eng_hooks *h, int n, int m);
int eng_cuda_capture(struct eng_cuda *g, int n, int z, cudaGraphExec_t *gx);
void eng_cuda_fast_routes(struct eng_cuda *g, const struct eng_hooks *h,
			  const struct eng_cuda_row *rows, int n, const int *fr_id,
			  const float *fr_w);
/* The rows into the pinned row table (not yet copied); the number of rows
 * that give logits. */
int eng_cuda_rows_in(struct eng_cuda *g, const struct eng_cuda_row *rows, int n);
/* Chunk buffers 1 .. nc - 1 (once); chunk k's buffers and flags in use
 * (x, hrow, drow, rows, one_each, att_tiles). */
int eng_cuda_chunks_alloc(struct eng_cuda *g, int nc);
void eng_cuda_use_chunk(struct eng_cuda *g, int k);
/* eng_cuda_greedy's second output set, once. */
int eng_cuda_chain_alloc(struct eng_cuda *g);
/* Experts js[0 .. nj) of the layer's groups (acquired, weights in xw; bf16
 * on tensor cores, engine_cuda_wave.c) into eo, in waves of at most
 * wave_rows padded entries; sorts js. */
int eng_cuda_run_split(struct eng_cuda *g, int *js, int nj);
/* engine_cuda_host.c: the pool and its buffers when the source offers
 * host_weights (0 or a failure); closed with the engine. */
int eng_cuda_host_open(struct eng_cuda *g);
void eng_cuda_host_close(struct eng_cuda *g);
/* Picks the groups of the layer's routes (hg) the host computes (marked
 * run in xran, entries in he) and queues them; after the layer's other
 * experts are queued,
 * eng_cuda_host_done queues the wait that brings their outputs into eo. */
void eng_cuda_host_pick(struct eng_cuda *g, int ml);
int eng_cuda_host_done(struct eng_cuda *g);
/* A MoE layer through the expert source (hooks, cache); adds into x. */
int eng_cuda_moe(struct eng_cuda *g, const struct eng_hooks *h, const struct dlayer *d,
		 const struct eng_cuda_row *rows, int ml, int n);
/* The held routes (if any) to h's on_route; called once the next layer's
 * attention (or the step's head) is queued, so that the hooks' host work
 * (a predictor's, the cache's prefetches) overlaps it on the GPU instead
 * of delaying its launch.  Same calls, same order as without holding. */
void eng_cuda_routes_out(struct eng_cuda *g, const struct eng_hooks *h);

#define CU(x) do { cudaError_t e_ = (x); \
	if (e_ != cudaSuccess) return eng_cuda_fail(#x, cudaGetErrorString(e_)); } while (0)
#define KR(x) do { int e_ = (x); \
	if (e_) return eng_cuda_fail(#x, cudaGetErrorString((cudaError_t)e_)); } while (0)
#define BL(x) do { cublasStatus_t e_ = (x); \
	if (e_ != CUBLAS_STATUS_SUCCESS) return eng_cuda_fail(#x, cublasGetStatusString(e_)); \
	} while (0)

#endif
