/* Greedy decode with the steps chained on the GPU (eng_greedy's CUDA way):
 * each fast step's graph is queued behind the one before, with a launch
 * between them that makes that step's argmax the next token
 * (eng_cu_advance), so the host's turn between steps (the hooks, the next
 * launch) overlaps the GPU's next step instead of following it.  Two sets
 * of zero-copy outputs (routes, logits, argmax) alternate: the host reads
 * step s's while step s + 1 writes the other, and step s + 2 (which
 * writes s's set again) is queued only after that. */
#include <errno.h>
#include <string.h>

#include "engine/engine_cuda_int.h"

/* The second output set in the first's place (and back): what a graph
 * captured meanwhile writes. */
static void swap_outputs(struct eng_cuda *g)
{
	int *id = g->hfr_id, *best = g->hbest;
	float *w = g->hfr_w, *lg = g->hlog;

	g->hfr_id = g->hfr_id2, g->hfr_w = g->hfr_w2, g->hlog = g->hlog2, g->hbest = g->hbest2;
	g->hfr_id2 = id, g->hfr_w2 = w, g->hlog2 = lg, g->hbest2 = best;
}

/* The graphs of n rows for both sets, captured once; whether their lm_head
 * gives each row's argmax (the chain's next tokens). */
static int graphs(struct eng_cuda *g, int n, bool *ok)
{
	int rc;

	if (!g->gx[1][n] && (rc = eng_cuda_capture(g, n, 1, &g->gx[1][n])))
		return rc;
	*ok = g->best_in[n];
	if (!*ok || g->gx2[n])
		return 0;
	if ((rc = eng_cuda_chain_alloc(g)))
		return rc;
	swap_outputs(g);
	rc = eng_cuda_capture(g, n, 1, &g->gx2[n]);
	swap_outputs(g);
	return rc;
}

/* Step s (set s & 1): behind the step before, its argmax as the tokens. */
static int queue(struct eng_cuda *g, int n, int s)
{
	if (s > 0)
		KR(eng_cu_advance(g->drow->tok, g->drow->pos, (s & 1) ? g->hbest : g->hbest2, n,
				  g->st));
	CU(cudaGraphLaunch((s & 1) ? g->gx2[n] : g->gx[1][n], g->st));
	CU(cudaEventRecord(g->cev[s & 1], g->st));
	return 0;
}

/* Step s done: its tokens out, its routes to the hooks (before_moe too,
 * now that its tokens are known: the fast way's experts are all resident,
 * so there is nothing for them to load ahead). */
static int take(struct eng_cuda *g, const struct eng_hooks *h, const struct eng_cuda_row *rows,
		int n, int s, int *out)
{
	struct eng_cuda_row r[GMAX];
	int tok[GMAX], p = s & 1;
	const int *best = p ? g->hbest2 : g->hbest;

	CU(cudaEventSynchronize(g->cev[p]));
	for (int t = 0; t < n; t++) {
		tok[t] = s ? out[(size_t)(s - 1) * n + t] : rows[t].tok;
		r[t] = rows[t];
		r[t].pos += s, r[t].tok = tok[t];
		out[(size_t)s * n + t] = best[t];
	}
	for (int ml = 0; ml < g->m->cfg.n_moe_layers && h->before_moe; ml++)
		h->before_moe(h->ctx, ml, tok, n);
	eng_cuda_fast_routes(g, h, r, n, p ? g->hfr_id2 : g->hfr_id, p ? g->hfr_w2 : g->hfr_w);
	return 0;
}

int eng_cuda_greedy(struct eng_cuda *g, const struct eng_hooks *h,
		    const struct eng_cuda_row *rows, int n, int steps, int *out,
		    void (*step_done)(void *ctx, int step, const int *next), void *ctx)
{
	bool ok = false;
	int rc = 0;

	if (n < 1 || steps < 1)
		return -EINVAL;
	if (n > GMAX)   /* more rows than a fast step takes: one at a time */
		return -ENOTSUP;
	for (int t = 0; t < n; t++)
		if (rows[t].out != t || rows[t].pos + steps > rows[t].cap)
			return -EINVAL;
	CU(cudaSetDevice(g->dev));
	g->best_n = 0;
	/* The fast way with zero-copy outputs and the GPU's argmax, else none. */
	if (!g->chain || eng_cuda_rows_in(g, rows, n) != n || !g->zout || !g->argmax ||
	    !eng_cu_route_fast(n, g->E) || !eng_cuda_fast_ok(g, h, n, n))
		return -ENOTSUP;
	if ((rc = graphs(g, n, &ok)) || !ok)
		return rc ? rc : -ENOTSUP;
	CU(cudaMemcpyAsync(g->drow, g->hrow, sizeof(*g->hrow), cudaMemcpyHostToDevice, g->st));
	for (int s = 0; s < steps && s < 2 && !rc; s++)
		rc = queue(g, n, s);
	for (int s = 0; s < steps && !rc; s++) {
		if ((rc = take(g, h, rows, n, s, out)))
			break;
		if (s + 2 < steps)
			rc = queue(g, n, s + 2);
		if (step_done)
			step_done(ctx, s, out + (size_t)s * n);
	}
	if (cudaStreamSynchronize(g->st) != cudaSuccess && !rc)
		rc = eng_cuda_fail("cudaStreamSynchronize", cudaGetErrorString(cudaGetLastError()));
	return rc;
}
