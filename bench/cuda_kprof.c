/* Time of each CUDA engine kernel at the OLMoE shape (hidden 2048,
 * 16 heads of 128, 64 experts, top-8, expert width 1024, vocab 50304), one
 * decode row (or n rows), and of one whole decoder layer (the fast step's
 * kernels in its order; its first RMSNorm inside the q/k/v GEMV): 50
 * launches captured in a CUDA graph, as a decode step runs, timed with CUDA
 * events over 3 launches of the graph after one; weights bf16 with
 * arbitrary values.  Launch i uses layer i % 16's weights, experts and KV
 * cache (16 layers as the model has, 13 GB), so that weights come from HBM
 * as in a decode step, not from L2.  With more than one row, the expert
 * kernels again with the rows spread over the experts (spread()).  Prints
 * microseconds per launch with programmatic dependent launch off and on,
 * and, for the weight-streaming kernels, GB/s of weight bytes (with it on).
 *   cuda_kprof [n] [context]
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/graph_time.h"
#include "engine/cuda_kernels.h"
#include "engine/cuda_moe.h"

#define H 2048
#define HEADS 16
#define HD 128
#define E 64
#define K 8
#define I 1024
#define V 50304
#define REPS 50
#define NL 16

static void *dev(size_t bytes)
{
	void *p = NULL;

	if (cudaMalloc(&p, bytes) != cudaSuccess) {
		fprintf(stderr, "cudaMalloc %zu failed\n", bytes);
		exit(1);
	}
	cudaMemset(p, 0x3c, bytes);    /* about 0.0115 as bf16 and as f32 */
	return p;
}

struct ctx;
typedef int (*launch_fn)(struct ctx *c);
static void set_layer(struct ctx *c, int li);

static cudaStream_t st;

/* Call i of a timed graph: layer i % NL, then the launch under test. */
struct timed {
	launch_fn f;
	struct ctx *ctx;
};

static int timed_call(void *p, int i)
{
	struct timed *t = p;

	set_layer(t->ctx, i % NL);
	return t->f(t->ctx);
}

static void timeit(const char *name, launch_fn f, struct ctx *ctx, double wbytes)
{
	double us[2];

	struct timed t = {f, ctx};

	for (int pdl = 0; pdl < 2; pdl++) {
		eng_cu_set_pdl(pdl);
		us[pdl] = bench_graph_us(st, REPS, timed_call, &t);
	}
	if (us[0] < 0 || us[1] < 0) {
		printf("%-28s failed: %s\n", name, cudaGetErrorString(cudaGetLastError()));
		exit(1);
	}
	printf("%-28s %9.2f %9.2f", name, us[0], us[1]);
	if (wbytes > 0)
		printf("  %8.1f", wbytes / (us[1] * 1e3));
	printf("\n");
}

struct ctx {
	int n, ctxlen;
	float *x, *xn, *y, *qkv, *att, *rlog, *rw, *hb, *eo, *logits, *norm, *inv;
	unsigned *done;
	float *apart;
	int *rid, *ent;                /* ent: each row's K entries (f_combine) */
	void *wqkv, *wo, *wlm, *grpb;
	float *router;
	const void **tab;
	struct eng_cu_grp g;
	struct eng_cu_rows rows;
	const struct gemv_case *gc;   /* f_gemv's */
	/* the current layer's: */
	int li;
	void *lqkv, *lo;
	float *lrouter;
	const void **ltab;
	unsigned skip;   /* layer(): launches left out (1 << SK_*), for their cost in place */
	int norm_apart;  /* layer(): the attention's RMSNorm a launch of its own */
};

enum { SK_NORM, SK_QKV, SK_ATTN, SK_O, SK_ROUTER, SK_GU, SK_DOWN, SK_N };

static void set_layer(struct ctx *c, int li)
{
	c->li = li;
	c->lqkv = (char *)c->wqkv + (size_t)li * 3 * H * H * 2;
	c->lo = (char *)c->wo + (size_t)li * H * H * 2;
	c->lrouter = c->router + (size_t)li * E * H;
	c->ltab = c->tab + (size_t)li * E;
}

/* One GEMV shape of the model (the launch f_gemv times); its weights for
 * layer li at w + li * stride bytes. */
struct gemv_case {
	const char *name;
	float *y;
	const float *x;
	const void *w;
	int bf16, in, out, add;
	size_t stride;
};

static int f_gemv(struct ctx *c)
{
	const struct gemv_case *k = c->gc;

	return eng_cu_gemv(k->y, k->out, k->x, k->in, (const char *)k->w + c->li * k->stride,
			   k->bf16, c->n, k->in, k->out, k->add, st);
}

static int f_route(struct ctx *c)
{
	return eng_cu_route(c->rlog, c->rid, c->rw, c->n, E, K, 0, c->g, 1, NULL, st);
}

static int f_router_route(struct ctx *c)
{
	return eng_cu_router_route(c->rlog, c->xn, c->lrouter, c->n, H, E, K, 0, c->rid, c->rw,
				   c->g, 1, c->done, NULL, 0, NULL, NULL, NULL, NULL, st);
}

/* The fast step's MoE entry: RMSNorm, router, routing in one launch. */
static int f_norm_router_route(struct ctx *c)
{
	return eng_cu_router_route(c->rlog, c->x, c->lrouter, c->n, H, E, K, 0, c->rid, c->rw,
				   c->g, 1, c->done, c->norm, 1e-5f, c->xn, NULL, NULL, NULL, st);
}

/* Experts the n rows' routes can use: the expert kernels' grid height. */
static int experts_used(const struct ctx *c)
{
	return c->n * K < E ? c->n * K : E;
}

static int f_gu(struct ctx *c)
{
	return eng_cu_moe_gu(c->hb, c->xn, H, I, c->g, c->ltab, NULL, 1, 0, experts_used(c), c->n,
			     ENG_CU_ALL, st);
}

static int f_down(struct ctx *c)
{
	return eng_cu_moe_down_add(c->x, c->hb, H, I, c->g, c->ltab, 1, c->n, K, st);
}

/* The combine of a MoE layer through the expert cache (its experts' outputs
 * in eo, each row's entries in ent). */
static int f_combine(struct ctx *c)
{
	return eng_cu_moe_combine(c->x, c->eo, H, c->g.wt, c->ent, K, c->n, st);
}

/* The MoE as a fast step of more than ENG_CU_FEW_ROWS rows runs it: the
 * experts of few rows in launches of their own, then the combine. */
static int f_moe_parts(struct ctx *c)
{
	int rc = eng_cu_moe_experts(c->hb, c->eo, c->xn, H, I, c->g, c->ltab, 1, experts_used(c),
				    c->n, st);

	return rc ? rc : eng_cu_moe_combine_grp(c->x, c->eo, H, c->g, c->n, c->n * K, st);
}

/* The MoE in two launches (gate/up for all, down with the combine). */
static int f_moe_two(struct ctx *c)
{
	int rc = f_gu(c);

	return rc ? rc : f_down(c);
}

static int f_norm(struct ctx *c)
{
	return eng_cu_rmsnorm(c->xn, c->x, c->norm, c->n, H, 1e-5f, st);
}

static struct eng_cu_prep prep_of(struct ctx *c)
{
	return (struct eng_cu_prep){c->qkv, 3 * H, 1, c->norm, c->norm, 1e-5f, 0, c->inv};
}

static int f_prep(struct ctx *c)
{
	struct eng_cu_prep p = prep_of(c);

	return eng_cu_qk_prep(c->att, &p, &c->rows, c->li, c->n, HEADS, HEADS, HD, st);
}

static int attend(struct ctx *c, const struct eng_cu_prep *p)
{
	return eng_cu_attention(c->y, c->att, H, p, &c->rows, c->li, c->n, HEADS, HEADS, HD,
				c->apart, c->done + 1, c->ctxlen + 1, st);
}

static int f_attn(struct ctx *c)
{
	return attend(c, NULL);
}

/* Attention doing the q/k prep itself, as a decode step's. */
static int f_attn_prep(struct ctx *c)
{
	struct eng_cu_prep p = prep_of(c);

	return attend(c, &p);
}

/* y = W . RMSNorm(x) as the engine's norm GEMV runs it (scratch: c->xn, so
 * that it may take its prepared form), or in one launch (NULL). */
static int norm_gemv(struct ctx *c, float *y, const void *w, int out, float *scratch)
{
	return eng_cu_gemv_norm(y, c->x, c->norm, 1e-5f, w, 1, c->n, H, out, scratch, NULL, st);
}

/* The attention's RMSNorm and q/k/v (over four rows a launch that prepares
 * the normalised input first), or (f_qkv_fused) in one launch at any row
 * count; the final norm and lm_head (f_head). */
static int f_qkv_norm(struct ctx *c)
{
	return norm_gemv(c, c->qkv, c->lqkv, 3 * H, c->xn);
}

static int f_qkv_fused(struct ctx *c)
{
	return norm_gemv(c, c->qkv, c->lqkv, 3 * H, NULL);
}

static int f_head(struct ctx *c)
{
	return norm_gemv(c, c->logits, c->wlm, V, c->xn);
}

/* One decoder layer of a fast step (engine_cuda_run.c's order: for up to
 * two rows the MLP norm inside the router's launch; attention doing the q/k
 * prep), or (f_layer2) with that norm, the router and the routing as
 * launches of their own. */
static int layer(struct ctx *c, int fused)
{
	unsigned k = c->skip;
	int rc = 0;

#define ON(b) (!(k & 1u << (b)))
	if ((c->norm_apart && ON(SK_NORM) && (rc = f_norm(c))) ||
	    (c->norm_apart && ON(SK_QKV) &&
	     (rc = eng_cu_gemv(c->qkv, 3 * H, c->xn, H, c->lqkv, 1, c->n, H, 3 * H, 0, st))) ||
	    (!c->norm_apart && ON(SK_QKV) && (rc = f_qkv_norm(c))) ||
	    (ON(SK_ATTN) && (rc = f_attn_prep(c))) ||
	    (ON(SK_O) && (rc = eng_cu_gemv(c->x, H, c->y, H, c->lo, 1, c->n, H, H, 1, st))))
		return rc;
	if (!ON(SK_ROUTER))
		;
	else if (fused && c->n <= 2)
		rc = f_norm_router_route(c);
	else if (!(rc = f_norm(c)) && fused)
		rc = f_router_route(c);
	else if (!rc && !(rc = eng_cu_gemv(c->rlog, E, c->xn, H, c->lrouter, 0, c->n, H, E, 0,
					   st)))
		rc = f_route(c);
	if (rc || (ON(SK_GU) && (rc = f_gu(c))))
		return rc;
	return ON(SK_DOWN) ? f_down(c) : 0;
#undef ON
}

static int f_layer(struct ctx *c)
{
	return layer(c, 1);
}

static int f_layer2(struct ctx *c)
{
	return layer(c, 0);
}

/* Routes row t to experts 8t .. 8t + 7 (mod E): with more than one row, the
 * rows spread over the experts as real routing spreads them (the ties of
 * setup() send every row to experts 0..7); 16 rows take all 64, two each.
 * Returns how many experts the rows use. */
static int spread(struct ctx *c)
{
	static float rl[ENG_CU_GEMV_MAX * E];

	for (int t = 0; t < c->n; t++)
		for (int e = 0; e < E; e++)
			rl[t * E + e] = (e - 8 * t % E + E) % E < K;
	cudaMemcpy(c->rlog, rl, (size_t)c->n * E * sizeof(float), cudaMemcpyHostToDevice);
	f_route(c);
	cudaDeviceSynchronize();
	return experts_used(c);
}

/* Device buffers, 16 layers' weights and experts, and n rows at position
 * ctxlen in KV caches of ctxlen + 1 positions. */
static void setup(struct ctx *c)
{
	size_t eb = (size_t)3 * I * H * 2, f = sizeof(float);
	int n = c->n;

	c->x = dev(n * H * f), c->y = dev(n * H * f), c->xn = dev((n * H + n) * f);
	c->qkv = dev(n * 3 * H * f), c->att = dev(n * H * f), c->rlog = dev(n * E * f);
	c->rw = dev(n * K * f), c->rid = dev(n * K * sizeof(int));
	c->hb = dev((size_t)n * K * I * f), c->eo = dev((size_t)n * K * H * f);
	int hent[16 * K];
	for (int i = 0; i < n * K; i++)
		hent[i] = i;
	c->ent = dev(n * K * sizeof(int));
	cudaMemcpy(c->ent, hent, n * K * sizeof(int), cudaMemcpyHostToDevice);
	c->logits = dev((size_t)n * V * f), c->norm = dev(H * f), c->inv = dev(HD / 2 * f);
	c->apart = dev(eng_cu_att_part_floats(n, HEADS, HD, c->ctxlen + 1) * f);
	c->done = dev((1 + n * HEADS) * sizeof(unsigned));
	cudaMemset(c->done, 0, (1 + n * HEADS) * sizeof(unsigned));
	c->wqkv = dev((size_t)NL * 3 * H * H * 2), c->wo = dev((size_t)NL * H * H * 2);
	c->wlm = dev((size_t)V * H * 2), c->router = dev((size_t)NL * E * H * f);
	char *experts = dev((size_t)NL * E * eb);
	c->grpb = dev(eng_cu_grp_bytes(E, n * K));
	c->g = eng_cu_grp_at(c->grpb, E, n * K);
	static const void *htab[NL * E];
	for (int x = 0; x < NL * E; x++)
		htab[x] = experts + x * eb;
	c->tab = dev(sizeof(htab));
	cudaMemcpy(c->tab, htab, sizeof(htab), cudaMemcpyHostToDevice);
	set_layer(c, 0);
	int *dpos = dev(n * sizeof(int)), *dcap = dev(n * sizeof(int)), *dtok = dev(n * sizeof(int));
	float **dkc = dev(n * sizeof(float *)), **dvc = dev(n * sizeof(float *));
	int hpos[16], hcap[16];
	float *hkc[16], *hvc[16];
	for (int t = 0; t < n; t++) {
		hpos[t] = c->ctxlen, hcap[t] = c->ctxlen + 1;
		hkc[t] = dev((size_t)NL * (c->ctxlen + 1) * H * f);
		hvc[t] = dev((size_t)NL * (c->ctxlen + 1) * H * f);
	}
	cudaMemcpy(dpos, hpos, n * sizeof(int), cudaMemcpyHostToDevice);
	cudaMemcpy(dcap, hcap, n * sizeof(int), cudaMemcpyHostToDevice);
	cudaMemcpy(dkc, hkc, n * sizeof(float *), cudaMemcpyHostToDevice);
	cudaMemcpy(dvc, hvc, n * sizeof(float *), cudaMemcpyHostToDevice);
	c->rows = (struct eng_cu_rows){.tok = dtok, .pos = dpos, .cap = dcap, .kc = dkc, .vc = dvc};
	cudaMemset(c->rlog, 0, n * E * f);   /* ties: the route takes experts 0..7 */
	cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
	f_route(c);
	cudaDeviceSynchronize();
}

int main(int argc, char **argv)
{
	struct ctx c = {.n = argc > 1 ? atoi(argv[1]) : 1, .ctxlen = argc > 2 ? atoi(argv[2]) : 128};
	size_t f = sizeof(float);
	int n = c.n;

	if (n < 1 || n > ENG_CU_GEMV_MAX || c.ctxlen < 1) {
		fprintf(stderr, "usage: cuda_kprof [n 1..16] [context]\n");
		return 2;
	}
	setup(&c);
	printf("n = %d, context %d; us per launch in a graph, PDL off / on; GB/s of weights "
	       "(on)\n", n, c.ctxlen);
	const struct gemv_case gemvs[] = {
		{"gemv qkv 2048->6144", c.qkv, c.xn, c.wqkv, 1, H, 3 * H, 0, (size_t)3 * H * H * 2},
		{"gemv o 2048->2048 +x", c.x, c.att, c.wo, 1, H, H, 1, (size_t)H * H * 2},
		{"gemv 2048->4096 (warps)", c.qkv, c.xn, c.wqkv, 1, H, 2 * H, 0,
		 (size_t)3 * H * H * 2},
		{"gemv router f32 ->64", c.rlog, c.xn, c.router, 0, H, E, 0, (size_t)E * H * f},
		{"gemv lm_head ->50304", c.logits, c.xn, c.wlm, 1, H, V, 0, 0},
	};
	for (size_t i = 0; i < sizeof(gemvs) / sizeof(gemvs[0]); i++) {
		c.gc = &gemvs[i];
		timeit(gemvs[i].name, f_gemv, &c,
		       (double)gemvs[i].out * gemvs[i].in * (gemvs[i].bf16 ? 2 : 4));
	}
	timeit("route + group", f_route, &c, 0);
	timeit("router + route + group", f_router_route, &c, (double)E * H * f);
	timeit("rmsnorm + router + route", f_norm_router_route, &c, (double)E * H * f);
	int nj = experts_used(&c);
	timeit("moe gate/up (all experts)", f_gu, &c, (double)nj * 2 * I * H * 2);
	timeit("moe down + combine", f_down, &c, (double)nj * I * H * 2);
	timeit("moe combine (expert-cache path)", f_combine, &c, 0);
	timeit("rmsnorm 2048", f_norm, &c, 0);
	timeit("q/k norms, rope, kv store", f_prep, &c, 0);
	timeit("attention", f_attn, &c, 0);
	timeit("attention with q/k prep", f_attn_prep, &c, 0);
	timeit("gemv qkv with rmsnorm", f_qkv_norm, &c, (double)3 * H * H * 2);
	timeit("gemv qkv with rmsnorm, one launch", f_qkv_fused, &c, (double)3 * H * H * 2);
	timeit("gemv lm_head with rmsnorm", f_head, &c, (double)V * H * 2);
	timeit("decoder layer", f_layer, &c, 0);
	timeit("decoder layer, norm/router apart", f_layer2, &c, 0);
	c.norm_apart = 1;
	timeit("decoder layer, qkv norm apart", f_layer, &c, 0);
	c.norm_apart = 0;
	/* Each launch's cost in place: the layer without it (PDL overlaps
	 * make this differ from its time alone). */
	static const char *const sk[SK_N] = {"rmsnorm", "qkv", "attention", "o", "router",
					      "gate/up", "down"};
	for (int b = SK_QKV; b < SK_N; b++) {
		char name[64];

		snprintf(name, sizeof(name), "layer without %s", sk[b]);
		c.skip = 1u << b;
		timeit(name, f_layer, &c, 0);
	}
	c.skip = 0;
	if (n > 1) {
		nj = spread(&c);
		timeit("moe gate/up, rows spread", f_gu, &c, (double)nj * 2 * I * H * 2);
		timeit("moe down + combine, spread", f_down, &c, (double)nj * I * H * 2);
		timeit("moe in two launches, spread", f_moe_two, &c, (double)nj * 3 * I * H * 2);
		timeit("moe by row count, spread", f_moe_parts, &c, (double)nj * 3 * I * H * 2);
	}
	return 0;
}
