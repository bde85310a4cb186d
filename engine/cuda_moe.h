/* The CUDA engine's small-batch kernels (engine/cuda_moe.cu; routing in
 * engine/cuda_route.cu), callable from C: GEMV on bf16 or f32 weights for
 * up to ENG_CU_GEMV_MAX rows, the MoE layer's routing, grouping and expert
 * FFNs.  Activations f32, f32
 * accumulation.  Each dot product runs in a fixed order that depends only on
 * the shape: in one warp (lane l takes elements [8 c, 8 c + 8) for c = l,
 * l + 32, ...; then a butterfly over the lanes), or, for a GEMV with few
 * output rows, over one block.  So the number of rows or experts in a launch
 * does not change the bits: a single expert launched alone and all of a
 * layer's experts launched at once agree, and so do f32 and bf16 weights of
 * equal value.
 * Launchers return the launch's cudaError_t as an int. */
#ifndef ENG_CUDA_MOE_H
#define ENG_CUDA_MOE_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_CU_GEMV_MAX 16
/* eng_cu_gemv with at most this many output rows splits each row over a
 * block instead of a warp (a fixed choice per shape, so still the same bits
 * for any row count). */
#define ENG_CU_SPLIT_ROWS 256
/* The most experts whose weights the routing launches write to g.wp. */
#define ENG_CU_WP_MAX 256

/* Whether the routing launches take their fast way for n rows of E experts:
 * it writes the ids and weights once and never reads them back, so they
 * may be pinned host memory (zero-copy). */
static inline bool eng_cu_route_fast(int n, int E)
{
	return n <= 32 && E <= 256 && E % 4 == 0;
}

/* A MoE layer's rows grouped per expert, in device memory: nact experts in
 * use, ascending (xid[j]), expert j's entries [start[j], start[j] + cnt[j]),
 * each a row (ascending within an expert) and its routing weight.  One
 * allocation: eng_cu_grp_bytes(E, entries) bytes, laid out by
 * eng_cu_grp_at (the host mirror uses the same layout). */
struct eng_cu_grp {
	int *nact, *xid, *start, *cnt, *row;
	float *wt;
	/* Not NULL (set by the caller, E pointers): the router also writes
	 * expert j's weights (its table's entry for xid[j]) to wp[j], where the
	 * expert kernels take them (one dependent load less); the router is
	 * then given the table. */
	const void **wp;
};
size_t eng_cu_grp_bytes(int E, int entries);
struct eng_cu_grp eng_cu_grp_at(void *base, int E, int entries);

/* 1 when in (a row's length) suits the GEMV kernels. */
int eng_cu_gemv_ok(int in);
/* y[t][o] = (add ? y[t][o] : 0) + W[o] . x[t], t < n <= ENG_CU_GEMV_MAX;
 * W [out][in] (bf16 when bf16, else f32); y and x rows ldy, ldx apart. */
int eng_cu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, int bf16, int n,
		int in, int out, int add, void *stream);
/* y[t][o] = W[o] . RMSNorm(x[t]) (weights nw, eps) for t < n <=
 * ENG_CU_GEMV_MAX and out > ENG_CU_SPLIT_ROWS (y and x rows packed): the
 * dot over x * nw, scaled by 1/rms at the end (not eng_cu_rmsnorm's bits:
 * within a rounding of them; each row's bits the same for any n).  scratch:
 * n * in + n floats (or NULL) for a launch that prepares x * nw for more
 * than four rows or many output rows, instead of every warp doing it as it
 * reads.  host: y is pinned host memory (zero-copy), written in 16-byte
 * stores where the shape allows, and then each row's argmax (eng_argmax's
 * answer: the first index of the largest value, NaNs skipped, 0 when the
 * row's first value is NaN) into host->out[t]; host->ok says whether it
 * was (else y took plain stores and out is not written). */
struct eng_cu_host_y {
	unsigned long long *keys;  /* device, ENG_CU_GEMV_MAX, at 0 (left at 0) */
	unsigned *done;            /* device counter at 0 (left at 0) */
	int *out;                  /* pinned host, n */
	int ok;
};
int eng_cu_gemv_norm(float *y, const float *x, const float *nw, float eps, const void *w,
		     int bf16, int n, int in, int out, float *scratch, struct eng_cu_host_y *host,
		     void *stream);
/* eng_cu_gemv (y and x rows packed, no add) for out <= ENG_CU_SPLIT_ROWS
 * into host rows, and their argmax as eng_cu_gemv_norm's. */
int eng_cu_gemv_host(float *y, const float *x, const void *w, int bf16, int n, int in, int out,
		     struct eng_cu_host_y *host, void *stream);
/* Softmax over each row's E logits in p (in place), top-k (ties to the
 * lowest id), ids ascending with their weights (renormalised when norm)
 * into ids/w [n][K]; with group, also g for these n rows. */
int eng_cu_route(float *p, int *ids, float *w, int n, int E, int K, int norm,
		 struct eng_cu_grp g, int group, const void *const *tab, void *stream);
/* The router's logits p[t][E] = wr [E][H] (f32) . x[t] (x rows H apart)
 * and eng_cu_route's routing of them in one launch, n <= ENG_CU_GEMV_MAX;
 * done: a device counter at 0 (left at 0) that no other launch uses at the
 * same time.  nw not NULL: the logits of RMSNorm(x) (weight nw, eps), whose
 * rows go to xn (eng_cu_rmsnorm's bits) for the experts.  pout not NULL:
 * p's final contents (the probabilities) are written there too, after ids
 * and w (zero-copy for a host that watches them land).  xh not NULL: the
 * experts' input rows (xn, or x when nw is NULL) go there, [n][H], before
 * ids and w (zero-copy, for experts the host computes). */
int eng_cu_router_route(float *p, const float *x, const float *wr, int n, int H, int E, int K,
			int norm, int *ids, float *w, struct eng_cu_grp g, int group,
			unsigned *done, const float *nw, float eps, float *xn,
			const void *const *tab, float *pout, float *xh, void *stream);
/* Which of the experts a launch takes: all, those with at most
 * ENG_CU_FEW_ROWS entries, or the others.  Two launches (few, then many)
 * give the same values as one (all): each expert's sums do not depend on
 * the kernel's row count, and the few take a kernel that keeps more of
 * their weights in flight. */
enum { ENG_CU_ALL, ENG_CU_FEW, ENG_CU_MANY };
#define ENG_CU_FEW_ROWS 2
/* Experts j0 .. j0 + nj - 1 of g (nj launches at once; j >= nact skipped)
 * of the part asked for: hb[e][I] = silu(gate . x[row[e]]) * (up .
 * x[row[e]]) for their entries; weights w (one expert: nj == 1) or
 * tab[xid[j]] (layout gate [I][H], up [I][H], down [H][I]; a NULL entry:
 * that expert skipped); each expert has at most mmax <= ENG_CU_GEMV_MAX
 * entries. */
int eng_cu_moe_gu(float *hb, const float *x, int H, int I, struct eng_cu_grp g,
		  const void *const *tab, const void *w, int bf16, int j0, int nj, int mmax,
		  int part, void *stream);
/* eo[e][H] = down . hb[e] for the entries of experts j0 .. j0 + nj - 1
 * (weights and part as eng_cu_moe_gu's). */
int eng_cu_moe_down(float *eo, const float *hb, int H, int I, struct eng_cu_grp g,
		    const void *const *tab, const void *w, int bf16, int j0, int nj, int mmax,
		    int part, void *stream);
/* eng_cu_moe_gu into hb and eng_cu_moe_down into eo for experts [0, nj) of
 * g (weights tab[xid]): those of up to ENG_CU_FEW_ROWS entries in launches
 * of their own when mmax is larger; the same values as one launch each. */
int eng_cu_moe_experts(float *hb, float *eo, const float *x, int H, int I, struct eng_cu_grp g,
		       const void *const *tab, int bf16, int nj, int mmax, void *stream);
/* x[t] += sum over t's entries e, ascending: wt[e] * eo[e] (fused multiply-
 * add from 0), for t < n; ent[t * K + k]: row t's K entries, ascending (a
 * list per row: a prefill chunk has thousands of entries). */
int eng_cu_moe_combine(float *x, const float *eo, int H, const float *wt, const int *ent,
		       int K, int n, void *stream);
/* The same sums from g's rows and weights (its `entries` entries, at most
 * ENG_CU_GEMV_MAX * 32), for a decode step grouped on the GPU (no lists). */
int eng_cu_moe_combine_grp(float *x, const float *eo, int H, struct eng_cu_grp g, int n,
			   int entries, void *stream);
/* The experts' three-part layout (eng_cu_split3's, per expert): expert j's
 * entries [st, st + m) take rows 3 st .. 3 (st + m) - 1 of a [3 entries][w]
 * matrix, hi parts first.  ej[e]: entry e's expert index j, or -1 for an
 * entry left out (its expert runs as GEMVs).
 * xb = the parts of x's rows row[e], bf16 [3 entries][in]: */
int eng_cu_split3_entries(void *xb, const float *x, int in, struct eng_cu_grp g,
			  const int *ej, int entries, void *stream);
/* A wave of experts run on tensor cores together (engine_cuda_wave.c):
 * expert b's entries [st, st + cnt) in the layout above; its
 * GEMMs' products in a [rows][w] scratch from row yb: the hi rows, then
 * mid and lo, cnt apart (rows past 3 cnt: padding, never read). */
struct eng_cu_wave {
	int st, cnt, yb;
};
/* For the nj experts of wave w (device; mmax: their most entries): their
 * gate/up products p (w = 2I) to silu(gate) * up in xb's hidden layout,
 * split in three as eng_cu_split3_entries writes (in = I). */
int eng_cu_silu_split3_wave(void *xb, const float *p, int I, const struct eng_cu_wave *w,
			    int nj, int mmax, void *stream);
/* eo[e][0..H) = hi + (mid + lo) of their down products p (w = H). */
int eng_cu_sum3_wave(float *eo, const float *p, int H, const struct eng_cu_wave *w, int nj,
		     int mmax, void *stream);
/* The down projections of all nact experts of g and the combine above in
 * one launch (same bits as eng_cu_moe_down then eng_cu_moe_combine); n rows
 * of K entries each, n <= ENG_CU_GEMV_MAX, K <= 32. */
int eng_cu_moe_down_add(float *x, const float *hb, int H, int I, struct eng_cu_grp g,
			const void *const *tab, int bf16, int n, int K, void *stream);
/* Entries whose expert outputs the host computes (engine/host_ffn.h). */
#define ENG_CU_HOST_ENTS 64
struct eng_cu_host_ents {
	int n;
	int e[ENG_CU_HOST_ENTS];
};
/* Waits until *done (host memory the GPU can read; a counter that only
 * grows, modulo 2^32) reaches want, then copies rows he.e[i] of hy
 * ([entries][H], host memory) into the same rows of eo.  Gives up with a
 * launch failure after 10 s (a host that never finishes). */
int eng_cu_host_wait(float *eo, const float *hy, int H, const unsigned *done, unsigned want,
		     struct eng_cu_host_ents he, void *stream);

#ifdef __cplusplus
}
#endif

#endif
