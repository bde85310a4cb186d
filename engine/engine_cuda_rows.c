/* A call's rows in the kernels' tables: the pinned row table filled from
 * the caller's rows (uploaded by the caller), and for a call of several
 * chunks, each chunk's table and residual rows, swapped in as the chunks
 * take their turns at a layer (engine_cuda_run.c's chunks()). */
#include "engine/engine_cuda_int.h"

/* Whether every row is a sequence of its own (its one new position). */
static bool one_each(const struct eng_cuda_row *rows, int n)
{
	for (int t = 1; t < n; t++)
		for (int u = 0; u < t; u++)
			if (rows[t].kc == rows[u].kc)
				return false;
	return true;
}

/* Runs of consecutive rows of one sequence. */
static int runs(const struct eng_cuda_row *rows, int n)
{
	int k = 1;

	for (int t = 1; t < n; t++)
		k += rows[t].kc != rows[t - 1].kc;
	return k;
}

int eng_cuda_rows_in(struct eng_cuda *g, const struct eng_cuda_row *rows, int n)
{
	struct rowtab *r = g->hrow;
	int m = 0;

	/* The previous chunk ended with a synchronize: r is free to refill. */
	for (int t = 0; t < n; t++) {
		r->kc[t] = rows[t].kc;
		r->vc[t] = rows[t].vc;
		r->tok[t] = rows[t].tok;
		r->pos[t] = rows[t].pos;
		r->cap[t] = rows[t].cap;
		r->out[t] = rows[t].out;
		if (rows[t].out >= 0)
			r->sel[m++] = t;
	}
	g->one_each = one_each(rows, n);
	g->att_tiles = g->tiles && !g->one_each && n > GMAX &&
		       eng_cu_att_tiles_ok(g->m->cfg.head_dim) && 8 * runs(rows, n) <= n;
	return m;
}

int eng_cuda_chunks_alloc(struct eng_cuda *g, int nc)
{
	size_t xb = C * (size_t)g->H * sizeof(float);

	for (int k = 1; k < nc; k++) {   /* each once, also after a failed call */
		if (!g->cx[k])
			CU(cudaMalloc((void **)&g->cx[k], xb));
		if (!g->cdrow[k])
			CU(cudaMalloc((void **)&g->cdrow[k], sizeof(struct rowtab)));
		if (!g->chrow[k])
			CU(cudaMallocHost((void **)&g->chrow[k], sizeof(struct rowtab)));
	}
	return 0;
}

void eng_cuda_use_chunk(struct eng_cuda *g, int k)
{
	g->x = g->cx[k], g->hrow = g->chrow[k], g->drow = g->cdrow[k];
	g->rows = (struct eng_cu_rows){.tok = g->drow->tok, .pos = g->drow->pos,
				       .cap = g->drow->cap, .kc = g->drow->kc,
				       .vc = g->drow->vc};
	g->one_each = g->c_one[k], g->att_tiles = g->c_tiles[k];
}

int eng_cuda_call_rows(const struct eng_cuda *g)
{
	return g->call_chunks * C;
}
