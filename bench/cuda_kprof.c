/* Time of each CUDA engine kernel at the OLMoE shape (hidden 2048,
 * 16 heads of 128, 64 experts, top-8, expert width 1024, vocab 50304), one
 * decode row (or n rows): mean of 50 launches after 5, CUDA events, weights
 * bf16 with arbitrary values.  Prints microseconds per launch and, for the
 * weight-streaming kernels, GB/s of weight bytes.
 *   cuda_kprof [n] [context]
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

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

typedef int (*launch_fn)(void *ctx);

static void timeit(const char *name, launch_fn f, void *ctx, double wbytes)
{
	cudaEvent_t a, b;
	float ms = 0;

	cudaEventCreate(&a);
	cudaEventCreate(&b);
	for (int i = 0; i < 5; i++)
		if (f(ctx)) {
			printf("%-28s launch failed: %s\n", name, cudaGetErrorString(cudaGetLastError()));
			return;
		}
	cudaEventRecord(a, 0);
	for (int i = 0; i < REPS; i++)
		f(ctx);
	cudaEventRecord(b, 0);
	cudaEventSynchronize(b);
	cudaEventElapsedTime(&ms, a, b);
	double us = ms * 1000.0 / REPS;
	if (wbytes > 0)
		printf("%-28s %9.2f us  %8.1f GB/s\n", name, us, wbytes / (us * 1e3));
	else
		printf("%-28s %9.2f us\n", name, us);
	cudaEventDestroy(a);
	cudaEventDestroy(b);
}

struct ctx {
	int n, ctxlen;
	float *x, *xn, *y, *qkv, *att, *rlog, *rw, *hb, *eo, *scores, *logits, *norm, *inv;
	int *rid;
	void *wqkv, *wo, *wlm, *experts, *grpb;
	float *router;
	const void **tab;
	struct eng_cu_grp g;
	struct eng_cu_rows rows;
	const struct gemv_case *gc;   /* f_gemv's */
};

/* One GEMV shape of the model (the launch f_gemv times). */
struct gemv_case {
	const char *name;
	float *y;
	const float *x;
	const void *w;
	int bf16, in, out, add;
};

static int f_gemv(void *p)
{
	struct ctx *c = p;
	const struct gemv_case *k = c->gc;

	return eng_cu_gemv(k->y, k->out, k->x, k->in, k->w, k->bf16, c->n, k->in, k->out, k->add,
			   0);
}

static int f_route(void *p)
{
	struct ctx *c = p;
	return eng_cu_route(c->rlog, c->rid, c->rw, c->n, E, K, 0, c->g, 1, 0);
}

static int f_gu(void *p)
{
	struct ctx *c = p;
	int nj = c->n * K < E ? c->n * K : E;
	return eng_cu_moe_gu(c->hb, c->xn, H, I, c->g, c->tab, NULL, 1, 0, nj, c->n, 0);
}

static int f_down(void *p)
{
	struct ctx *c = p;
	return eng_cu_moe_down_add(c->x, c->hb, H, I, c->g, c->tab, 1, c->n, K, 0);
}

static int f_norm(void *p)
{
	struct ctx *c = p;
	return eng_cu_rmsnorm(c->xn, c->x, c->norm, c->n, H, 1e-5f, 0);
}

static int f_prep(void *p)
{
	struct ctx *c = p;
	return eng_cu_qk_prep(c->att, c->qkv, 3 * H, HEADS, HEADS, HD, 1, c->norm, c->norm, 1e-5f,
			      0, c->inv, &c->rows, 0, c->n, 0);
}

static int f_attn(void *p)
{
	struct ctx *c = p;
	return eng_cu_attention(c->y, c->att, H, &c->rows, 0, c->n, HEADS, HEADS, HD,
				c->scores, c->ctxlen + 1, 0);
}

int main(int argc, char **argv)
{
	struct ctx c = {.n = argc > 1 ? atoi(argv[1]) : 1, .ctxlen = argc > 2 ? atoi(argv[2]) : 128};
	size_t eb = (size_t)3 * I * H * 2, f = sizeof(float);
	int n = c.n;

	if (n < 1 || n > ENG_CU_GEMV_MAX || c.ctxlen < 1) {
		fprintf(stderr, "usage: cuda_kprof [n 1..16] [context]\n");
		return 2;
	}
	c.x = dev(n * H * f), c.y = dev(n * H * f), c.xn = dev(n * H * f), c.qkv = dev(n * 3 * H * f);
	c.att = dev(n * H * f), c.rlog = dev(n * E * f), c.rw = dev(n * K * f);
	c.rid = dev(n * K * sizeof(int)), c.hb = dev((size_t)n * K * I * f);
	c.eo = dev((size_t)n * K * H * f), c.logits = dev((size_t)n * V * f);
	c.scores = dev((size_t)n * HEADS * (c.ctxlen + 1) * f), c.norm = dev(H * f);
	c.inv = dev(HD / 2 * f);
	c.wqkv = dev((size_t)3 * H * H * 2), c.wo = dev((size_t)H * H * 2);
	c.wlm = dev((size_t)V * H * 2), c.router = dev((size_t)E * H * f);
	c.experts = dev(E * eb);
	c.grpb = dev(eng_cu_grp_bytes(E, n * K));
	c.g = eng_cu_grp_at(c.grpb, E, n * K);
	const void *htab[E];
	for (int x = 0; x < E; x++)
		htab[x] = (const char *)c.experts + x * eb;
	c.tab = dev(sizeof(htab));
	cudaMemcpy(c.tab, htab, sizeof(htab), cudaMemcpyHostToDevice);
	/* Rows: position ctxlen in caches of ctxlen + 1, one per row. */
	int *dpos = dev(n * sizeof(int)), *dcap = dev(n * sizeof(int)), *dtok = dev(n * sizeof(int));
	float **dkc = dev(n * sizeof(float *)), **dvc = dev(n * sizeof(float *));
	int hpos[16], hcap[16];
	float *hkc[16], *hvc[16];
	for (int t = 0; t < n; t++) {
		hpos[t] = c.ctxlen, hcap[t] = c.ctxlen + 1;
		hkc[t] = dev((size_t)(c.ctxlen + 1) * H * f);
		hvc[t] = dev((size_t)(c.ctxlen + 1) * H * f);
	}
	cudaMemcpy(dpos, hpos, n * sizeof(int), cudaMemcpyHostToDevice);
	cudaMemcpy(dcap, hcap, n * sizeof(int), cudaMemcpyHostToDevice);
	cudaMemcpy(dkc, hkc, n * sizeof(float *), cudaMemcpyHostToDevice);
	cudaMemcpy(dvc, hvc, n * sizeof(float *), cudaMemcpyHostToDevice);
	c.rows = (struct eng_cu_rows){.tok = dtok, .pos = dpos, .cap = dcap, .kc = dkc, .vc = dvc};
	cudaMemset(c.rlog, 0, n * E * f);   /* ties: the route takes experts 0..7 */
	f_route(&c);
	cudaDeviceSynchronize();
	printf("n = %d, context %d\n", n, c.ctxlen);
	const struct gemv_case gemvs[] = {
		{"gemv qkv 2048->6144", c.qkv, c.xn, c.wqkv, 1, H, 3 * H, 0},
		{"gemv o 2048->2048 +x", c.x, c.att, c.wo, 1, H, H, 1},
		{"gemv 2048->4096 (warps)", c.qkv, c.xn, c.wqkv, 1, H, 2 * H, 0},
		{"gemv router f32 ->64", c.rlog, c.xn, c.router, 0, H, E, 0},
		{"gemv lm_head ->50304", c.logits, c.xn, c.wlm, 1, H, V, 0},
	};
	for (size_t i = 0; i < sizeof(gemvs) / sizeof(gemvs[0]); i++) {
		c.gc = &gemvs[i];
		timeit(gemvs[i].name, f_gemv, &c,
		       (double)gemvs[i].out * gemvs[i].in * (gemvs[i].bf16 ? 2 : 4));
	}
	timeit("route + group", f_route, &c, 0);
	int nj = n * K < E ? n * K : E;
	timeit("moe gate/up (all experts)", f_gu, &c, (double)nj * 2 * I * H * 2);
	timeit("moe down + combine", f_down, &c, (double)nj * I * H * 2);
	timeit("rmsnorm 2048", f_norm, &c, 0);
	timeit("q/k norms, rope, kv store", f_prep, &c, 0);
	timeit("attention", f_attn, &c, 0);
	return 0;
}
