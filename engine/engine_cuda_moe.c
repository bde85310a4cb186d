/* The CUDA engine's MoE layer through the expert source (hooks, the cache):
 * the routes come to the host, the rows are grouped per expert, a layer's
 * experts are acquired before any runs (their loads queue back to back
 * while earlier ones compute), each expert runs over all its rows (GEMVs for
 * a few rows, else cuBLAS), then one kernel sums each row's experts in
 * ascending order.  A row or two of a decode step take the router's own
 * grouping on the GPU and, their experts all loaded, the fast step's
 * gate/up and down-and-sum launches.  The fast way (every expert resident,
 * one CUDA graph) is engine_cuda_run.c's. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "engine/engine_cuda_int.h"
#include "loader/clock.h"

/* Whether an expert's m rows of an n-row chunk run as GEMVs (the
 * grouped-expert kernels).  A decode step's rows always do (the fast step's
 * way: the same bits at every budget); in a prefill chunk only an expert's
 * one or two rows, as more took longer than cuBLAS (16 rows: 46 us for
 * gate/up alone, one expert). */
static bool expert_gemv(const struct eng_cuda *g, int n, int m)
{
	return eng_cuda_gemv_rows(m, g->H) && eng_cu_gemv_ok(g->m->cfg.moe_intermediate_size) &&
	       (n <= GMAX || m <= 2);
}

/* The others: bf16 experts on tensor cores (gemm_split's arithmetic, the
 * layer's inputs split once by group(), outputs added up after the last). */
static bool expert_split(const struct eng_cuda *g, int n, int m)
{
	return eng_cuda_split_experts(g) && !expert_gemv(g, n, m);
}

/* From the groups hg: each row's entries, ascending (hent, for the combine),
 * and each entry's expert index where the expert runs expert_split's way
 * (hej; any_split: some does). */
static void entry_lists(struct eng_cuda *g, int n, int total)
{
	struct eng_cu_grp hg = g->hg;
	int fill[C] = {0}, K = g->K;

	g->any_split = false;
	for (int x = 0; x < *hg.nact; x++) {
		bool sp = expert_split(g, n, hg.cnt[x]);

		for (int e = hg.start[x]; e < hg.start[x] + hg.cnt[x]; e++)
			g->hej[e] = sp ? x : -1;
		g->any_split |= sp;
	}
	for (int e = 0; e < total; e++) {
		int t = hg.row[e];

		g->hent[t * K + fill[t]++] = e;
	}
}

/* Host side of routing: override_route, then the rows grouped per expert
 * (ascending expert id, rows ascending within one; the layout eng_cu_route's
 * grouping writes on the GPU, laid out for n rows by eng_cuda_moe), uploaded
 * once.  *mmax: the most rows of one expert. */
static int group(struct eng_cuda *g, const struct eng_hooks *h, const struct eng_cuda_row *rows,
		 int ml, int n, int *mmax)
{
	int E = g->E, K = g->K, total = n * K, j = 0;
	struct eng_cu_grp hg = g->hg;

	for (int t = 0; t < n && h->override_route; t++)
		h->override_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok,
				  g->hid + (size_t)t * K, g->hw + (size_t)t * K, K,
				  g->hp + (size_t)t * E, E);
	memset(g->cnt, 0, (size_t)(E + 1) * sizeof(int));
	for (int i = 0; i < total; i++) {
		if (g->hid[i] < 0 || g->hid[i] >= E)
			return -EINVAL;
		g->cnt[g->hid[i] + 1]++;
	}
	*mmax = 0;
	for (int x = 0; x < E; x++) {
		int c = g->cnt[x + 1];

		if (c) {
			hg.xid[j] = x, hg.start[j] = g->cnt[x], hg.cnt[j] = c;
			*mmax = c > *mmax ? c : *mmax;
			j++;
		}
		g->cnt[x + 1] += g->cnt[x];
	}
	*hg.nact = j;
	/* cnt[x] is now expert x's first entry; filling advances it. */
	for (int i = 0; i < total; i++) {
		int at = g->cnt[g->hid[i]]++;

		hg.row[at] = i / K;
		hg.wt[at] = g->hw[i];
	}
	entry_lists(g, n, total);
	return 0;
}

/* The groups with each row's entries, and ej when it is used, to the GPU:
 * after the first experts are acquired, so that a miss's copy is queued
 * without waiting for this call. */
static int upload(struct eng_cuda *g, int total)
{
	if (g->gg)   /* the router wrote them */
		return 0;
	size_t up = eng_cu_grp_bytes(g->E, total) +
		    ((g->any_split ? total : 0) + total) * sizeof(int);

	CU(cudaMemcpyAsync(g->dgrpb, g->hgrpb, up, cudaMemcpyHostToDevice, g->st));
	if (g->any_split)
		KR(eng_cu_split3_entries(g->xbe, g->xn, g->H, g->dg, g->dej, total, g->st));
	return 0;
}

/* Expert j of the groups (weights w, m rows from entry at) into eo
 * (expert_split's: a wave of one, weights xw[j]). */
static int expert_ffn(struct eng_cuda *g, int n, int j, const void *w, int at, int m)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, I = c->moe_intermediate_size, b = g->src.bf16, rc;
	const void *down = (const char *)w + (size_t)2 * I * H * (b ? 2 : 4);

	if (expert_gemv(g, n, m)) {
		KR(eng_cu_moe_gu(g->hb, g->xn, H, I, g->dg, NULL, w, b, j, 1, m, ENG_CU_ALL,
				 g->st));
		KR(eng_cu_moe_down(g->eo, g->hb, H, I, g->dg, NULL, w, b, j, 1, m, ENG_CU_ALL,
				   g->st));
		return 0;
	}
	if (expert_split(g, n, m))
		return eng_cuda_run_split(g, &j, 1);
	float *hj = g->hb + (size_t)at * I;
	if ((rc = eng_cuda_gemm_big(g, g->gu, g->xn, g->dg.row + at, w, b, m, H, 2 * I, 0)))
		return rc;
	KR(eng_cu_silu_mul(hj, g->gu, m, I, g->st));
	return eng_cuda_gemm_big(g, g->eo + (size_t)at * H, hj, NULL, down, b, m, I, H, 0);
}

/* Acquires the layer's experts [*acq, nx) ahead of their compute, so that all
 * their loads queue back to back: through acquire_ahead where the source has
 * it (no waiting, no taking prefetched experts' slots; xpend marks those
 * still loading, so the loaded ones run first even when the first expert is
 * loading); stops early (0) when a slot is not to be had that way or the
 * slots are all held, while acquired experts are still to run; the first
 * not yet run then takes acquire's way (the same slot choice, plus waiting
 * or taking a prefetched expert's slot). */
static int acquire_ahead(struct eng_cuda *g, int ml, int nx, int first, int *acq)
{
	int rc;

	for (; *acq < nx; ++*acq) {
		int x = g->hg.xid[*acq];

		if (g->xran[*acq])   /* the host's (eng_cuda_host_pick) */
			continue;

		rc = g->src.acquire_ahead ? g->src.acquire_ahead(g->src.ctx, ml, x, &g->xw[*acq])
					  : -EAGAIN;
		if (rc == -ENOSPC || rc == -EAGAIN) {
			if (*acq > first)
				return 0;
			rc = g->src.acquire(g->src.ctx, ml, x, &g->xw[*acq]);
		}
		if (rc < 0)
			return rc;
		g->xpend[*acq] = rc == 1;
		if (rc == 1 && g->prof && !g->t_first)
			g->t_first = ld_now();
		if (!g->xw[*acq]) {
			if (g->src.release)
				g->src.release(g->src.ctx, ml, x);
			return eng_cuda_fail("expert source", "no device pointer for an expert");
		}
	}
	return 0;
}

/* Experts js[0 .. nj) of the groups have their kernels queued: released
 * and marked run. */
static void ran(struct eng_cuda *g, int ml, const int *js, int nj)
{
	for (int k = 0; k < nj; k++) {
		if (g->src.release)
			g->src.release(g->src.ctx, ml, g->hg.xid[js[k]]);
		g->xran[js[k]] = 1;
	}
}

/* Which acquired expert (of [0, acq)) runs next: the first one not loading,
 * so that its compute overlaps the others' loads, else the first to run. */
static int next_expert(const struct eng_cuda *g, int acq)
{
	int j = -1;

	for (int i = 0; i < acq; i++)
		if (!g->xran[i]) {
			if (!g->xpend[i])
				return i;
			j = j < 0 ? i : j;
		}
	return j;
}

/* The experts among [0, acq) already loaded, when at least two and each
 * has at most GMAX rows (mmax): one gate/up and one down launch for all of
 * them (a table by expert id, NULL for the others, which those kernels
 * skip) instead of two each, so the host queues a decode layer's hits
 * quickly; all of a layer grouped on the GPU (gg): the fast step's
 * gate/up and down-and-combine launches (added).  Same bits. */
static int run_loaded(struct eng_cuda *g, int ml, int n, int acq, int mmax)
{
	const struct ld_config *c = &g->m->cfg;
	struct eng_cu_grp hg = g->hg;
	int H = g->H, I = c->moe_intermediate_size, b = g->src.bf16, nx = *hg.nact, k = 0;
	const void *const *tab = (const void *const *)g->dxtab;

	if (!expert_gemv(g, n, mmax))
		return 0;
	memset(g->hxtab, 0, (size_t)g->E * sizeof(void *));
	for (int j = 0; j < acq; j++)
		if (!g->xpend[j] && !g->xran[j]) {   /* loaded, not the host's */
			g->hxtab[hg.xid[j]] = g->xw[j];
			g->wj[k++] = j;
		}
	if (k < 2)
		return 0;
	/* The previous layer's copy of hxtab ran before this layer's routes
	 * came.  (Kernels reading it from pinned memory instead lost 2.1-2.3%
	 * of batch 1's tok/s, bench/results/cuda_bench_s22.md.) */
	CU(cudaMemcpyAsync(g->dxtab, g->hxtab, (size_t)g->E * sizeof(void *),
			   cudaMemcpyHostToDevice, g->st));
	if (g->gg && k == nx) {
		KR(eng_cu_moe_gu(g->hb, g->xn, H, I, g->dg, tab, NULL, b, 0, nx, mmax, ENG_CU_ALL,
				 g->st));
		KR(eng_cu_moe_down_add(g->x, g->hb, H, I, g->dg, tab, b, n, g->K, g->st));
		g->added = true;
	} else {
		KR(eng_cu_moe_experts(g->hb, g->eo, g->xn, H, I, g->dg, tab, b, nx, mmax, g->st));
	}
	ran(g, ml, g->wj, k);
	return 0;
}

/* The split experts among [0, acq) already loaded, as eng_cuda_run_split's waves
 * (the rest run one at a time as their loads land). */
static int run_split_loaded(struct eng_cuda *g, int ml, int n, int acq)
{
	int *js = g->wj, nj = 0, rc;

	for (int j = 0; j < acq; j++)
		if (!g->xpend[j] && !g->xran[j] && expert_split(g, n, g->hg.cnt[j]))
			js[nj++] = j;
	if (!nj)
		return 0;
	if ((rc = eng_cuda_run_split(g, js, nj)))
		return rc;
	ran(g, ml, js, nj);
	return 0;
}

/* Rows [0, n)'s routes of layer ml (K ids and weights a row) to on_route. */
static void routes_to_hooks(const struct eng_hooks *h, const struct eng_cuda_row *rows, int ml,
			    int n, const int *ids, const float *w, int K)
{
	for (int t = 0; t < n && h->on_route; t++)
		h->on_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok,
			    ids + (size_t)t * K, w + (size_t)t * K, K);
}

/* Runs the grouped experts, the loaded ones first, acquiring ahead as far
 * as the slots allow; each is released once its kernels are queued (the
 * release records them as the slot's last use: a reload waits for them).
 * The order does not change the result: each entry has its own rows and
 * the combine adds them in entry order. */
static int experts(struct eng_cuda *g, const struct eng_hooks *h,
		   const struct eng_cuda_row *rows, int ml, int n, int mmax)
{
	struct eng_cu_grp hg = g->hg;
	int nx = *hg.nact, acq = 0, first = 0, K = g->K, rc;

	memset(g->xran, 0, (size_t)nx);
	g->plan_at = 0;
	eng_cuda_host_pick(g, ml);
	rc = acquire_ahead(g, ml, nx, 0, &acq);
	if (g->prof && n == 1)
		eng_cuda_gap_event(g, ml, GEV_QUEUED);
	if (!rc && !(rc = upload(g, n * K)) && !(rc = run_loaded(g, ml, n, acq, mmax)) &&
	    g->any_split)
		rc = run_split_loaded(g, ml, n, acq);
	/* The routes to the hooks only now: the prefetches they start for
	 * later layers are issued after this layer's loads (which the backend
	 * copies first) and take slots only after this layer's experts have
	 * theirs.  A decode step's later still (eng_cuda_routes_out). */
	if (h->on_route && !rc && g->defer && n <= GMAX) {
		memcpy(g->pid, g->hid, (size_t)n * K * sizeof(int));
		memcpy(g->pw, g->hw, (size_t)n * K * sizeof(float));
		g->pml = ml, g->pn = n, g->prows = rows;
	} else if (!rc) {
		routes_to_hooks(h, rows, ml, n, g->hid, g->hw, K);
	}
	while (!rc) {
		while (first < nx && g->xran[first])
			first++;
		if (first == nx || (rc = acquire_ahead(g, ml, nx, first, &acq)))
			break;
		int j = next_expert(g, acq);
		g->xran[j] = 1;
		if (g->xpend[j] && (rc = g->src.order(g->src.ctx, ml, hg.xid[j])))
			break;   /* released by order() */
		rc = expert_ffn(g, n, j, g->xw[j], hg.start[j], hg.cnt[j]);
		if (g->src.release)
			g->src.release(g->src.ctx, ml, hg.xid[j]);
	}
	for (int i = first; i < acq; i++)   /* after a failure: the ones still held */
		if (!g->xran[i] && g->src.release)
			g->src.release(g->src.ctx, ml, hg.xid[i]);
	/* A decode step's: a prefill chunk's next chunk may want the rest. */
	if (!rc && n <= GMAX && g->src.layer_done)
		g->src.layer_done(g->src.ctx, ml);
	return rc ? rc : eng_cuda_host_done(g);
}

void eng_cuda_routes_out(struct eng_cuda *g, const struct eng_hooks *h)
{
	int n = g->pn;

	g->pn = 0;
	if (h)
		routes_to_hooks(h, g->prows, g->pml, n, g->pid, g->pw, g->K);
}

/* Sentinels the router's zero-copy routes overwrite: an id below 0 and a
 * NaN no arithmetic yields. */
#define NO_ID (-1)
#define NO_W 0x7fc0dead

/* How many of the router's nk zero-copy routes, then np probabilities,
 * have landed (in order). */
static size_t routes_landed(const struct eng_cuda *g, size_t nk, size_t np)
{
	const volatile int *id = g->hid;
	const volatile uint32_t *w = (const volatile uint32_t *)g->hw;
	const volatile uint32_t *p = (const volatile uint32_t *)g->hp;
	size_t k = 0;

	while (k < nk && id[k] != NO_ID && w[k] != NO_W)
		k++;
	if (k < nk)
		return k;
	while (k < nk + np && p[k - nk] != NO_W)
		k++;
	return k;
}

/* Waits for the router's nk zero-copy routes and np probabilities by
 * watching them arrive in pinned memory instead of for the stream's end
 * (which comes later, after the kernel retires).  Should the stream end
 * without them (a failed launch), its status says why. */
static int wait_routes(struct eng_cuda *g, size_t nk, size_t np)
{
	for (unsigned spin = 1; routes_landed(g, nk, np) < nk + np; spin++)
		if (spin % 4096 == 0 && cudaStreamQuery(g->st) != cudaErrorNotReady) {
			CU(cudaStreamSynchronize(g->st));
			if (routes_landed(g, nk, np) < nk + np)
				return eng_cuda_fail("router", "the stream ended without its routes");
			break;
		}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return 0;
}

int eng_cuda_moe(struct eng_cuda *g, const struct eng_hooks *h, const struct dlayer *d,
		 const struct eng_cuda_row *rows, int ml, int n)
{
	int H = g->H, E = g->E, K = g->K, rc, mmax;
	size_t nk = (size_t)n * K;
	bool prof = g->prof && n == 1;
	double t0 = prof ? ld_now() : 0, t1 = 0;

	/* Zero-copy routes where the router's fast way writes them (it never
	 * reads them back): no copies between the router and the wait, and
	 * the host watches them land (spin).  The probabilities override_route
	 * takes come the same way from the one-launch router (zp), else by a
	 * copy after it, and the host waits for the stream. */
	bool zc = g->zout && eng_cu_route_fast(n, E);
	size_t np = h->override_route ? (size_t)n * E : 0;
	bool zp = zc && g->spin && np && eng_cuda_gemv_rows(n, H);
	bool spin = zc && g->spin && (!np || zp);

	/* A row or two of GEMV experts, routes as the router gave them (no
	 * override_route): the router groups them on the GPU as group() does on
	 * the host, so the groups need no copy (batch 1 +0.3 to +1.0% at 50%;
	 * at 16 rows the grouped combine cost more than the copy saved, and
	 * with routes overridden, kernels reading the host's groups from
	 * pinned memory lost 16-35% of batch 1's tok/s:
	 * bench/results/cuda_bench_s22.md). */
	g->gg = spin && !np && n <= ENG_CU_FEW_ROWS && expert_gemv(g, n, n);
	/* (Not when every expert is resident: nothing to compute on the host.) */
	g->hx = g->hf && spin && eng_cuda_gemv_rows(n, H) && expert_gemv(g, n, 1) &&
		!g->have_tab && !(g->src.resident_all && g->src.resident_all(g->src.ctx));
	g->added = false;
	eng_cuda_grp_layout(g, (int)nk);
	if (prof)
		eng_cuda_gap_event(g, ml, GEV_ATTN);
	if (spin) {
		for (size_t k = 0; k < nk; k++)
			g->hid[k] = NO_ID, memcpy(&g->hw[k], &(uint32_t){NO_W}, sizeof(float));
		for (size_t k = 0; k < np; k++)
			memcpy(&g->hp[k], &(uint32_t){NO_W}, sizeof(float));
	}
	if ((rc = eng_cuda_route(g, d, n, zc ? g->hid : g->rid, zc ? g->hw : g->rw, g->gg,
				 NULL, zp ? g->hp : NULL, g->hx ? g->hxn : NULL)))
		return rc;
	if (!zc) {
		CU(cudaMemcpyAsync(g->hid, g->rid, nk * sizeof(int), cudaMemcpyDeviceToHost, g->st));
		CU(cudaMemcpyAsync(g->hw, g->rw, nk * sizeof(float), cudaMemcpyDeviceToHost,
				   g->st));
	}
	if (np && !zp)
		CU(cudaMemcpyAsync(g->hp, g->rlog, np * sizeof(float), cudaMemcpyDeviceToHost,
				   g->st));
	if (prof)
		eng_cuda_gap_event(g, ml, GEV_ROUTE);
	if (spin && (rc = wait_routes(g, nk, np)))   /* spin and np: zp */
		return rc;
	if (!spin)
		CU(cudaStreamSynchronize(g->st));
	if (prof) {
		t1 = ld_now();
		g->t_first = 0;
		eng_cuda_gap_note(g, ml);
	}
	if ((rc = group(g, h, rows, ml, n, &mmax)) || (rc = experts(g, h, rows, ml, n, mmax)))
		return rc;
	if (prof) {
		eng_cuda_gap_event(g, ml, GEV_DONE);
		eng_cuda_prof_moe(g, ml, t0, t1, ld_now());
	}
	if (!g->added)   /* else gg's down launch summed them into x */
		KR(g->gg ? eng_cu_moe_combine_grp(g->x, g->eo, H, g->dg, n, (int)nk, g->st)
			 : eng_cu_moe_combine(g->x, g->eo, H, g->dg.wt, g->dent, K, n, g->st));
	return 0;
}
