/* MOED_CUDA_PROFILE: where the CUDA engine's time goes (engine_cuda_int.h
 * says what each call records), printed when the engine closes. */
#include <stdio.h>

#include "engine/engine_cuda_int.h"

void eng_cuda_gap_event(struct eng_cuda *g, int ml, int which)
{
	g->gml[ml & 1][which] = ml;
	cudaEventRecord(g->gev[ml & 1][which], which == GEV_QUEUED ? g->pst : g->st);
}

/* With layer ml's routes on the host (so layer ml - 1's events and layer
 * ml - 2's experts done are past), for layer ml - 1: from the layer before's
 * experts done to its attention done and router done (GPU work no load
 * overlaps without prediction), from that router done to its loads queued
 * (the host's turn), and on to its experts done; apart for layers with and
 * without an expert loading when acquired. */
void eng_cuda_gap_note(struct eng_cuda *g, int ml)
{
	int p = ml & 1, q = p ^ 1;
	float t[4] = {0};

	if (ml < 2 || g->gml[p][GEV_DONE] != ml - 2 || g->gml[q][GEV_ATTN] != ml - 1 ||
	    g->gml[q][GEV_ROUTE] != ml - 1 || g->gml[q][GEV_QUEUED] != ml - 1 ||
	    g->gml[q][GEV_DONE] != ml - 1 ||
	    cudaEventElapsedTime(&t[0], g->gev[p][GEV_DONE], g->gev[q][GEV_ATTN]) ||
	    cudaEventElapsedTime(&t[1], g->gev[q][GEV_ATTN], g->gev[q][GEV_ROUTE]) ||
	    cudaEventElapsedTime(&t[2], g->gev[q][GEV_ROUTE], g->gev[q][GEV_QUEUED]) ||
	    cudaEventElapsedTime(&t[3], g->gev[q][GEV_QUEUED], g->gev[q][GEV_DONE]))
		return;
	int c = g->gloading[q];
	for (int i = 0; i < 4; i++)
		g->pg[c][i] += t[i] * 1e-3;
	g->pg_n[c]++;
}

/* MOED_CUDA_PROFILE: host time before the launch, GPU time of the graph,
 * the wait for it, host time after, and the caller's time between steps. */
void eng_cuda_prof_step(struct eng_cuda *g, const double t[4])
{
	float ms = 0;

	cudaEventElapsedTime(&ms, g->pev[0], g->pev[1]);
	g->p_pre += t[1] - t[0];
	g->p_gpu += ms * 1e-3;
	g->p_wait += t[2] - t[1];
	g->p_post += t[3] - t[2];
	g->p_n++;
	if (g->p_last > 0)
		g->p_between += t[0] - g->p_last;
	g->p_last = t[3];
}

void eng_cuda_prof_moe(struct eng_cuda *g, int ml, double t0, double t1, double t2)
{
	int c = g->t_first > 0;

	/* The host's time since the previous layer, when within one step. */
	if (g->pm_last > 0 && t0 - g->pm_last < 1e-3)
		g->pm_between += t0 - g->pm_last;
	g->pm_route += t1 - t0;
	g->pm_q[c] += t2 - t1;
	g->pm_nq[c]++;
	if (c)
		g->pm_first += g->t_first - t1;
	g->gloading[ml & 1] = c;
	g->pm_last = t2;
}

/* Microseconds on average of sum seconds over n. */
static double per(double sum, uint64_t n)
{
	return n ? sum / (double)n * 1e6 : 0;
}

void eng_cuda_prof_print(const struct eng_cuda *g)
{
	double n = g->p_n ? (double)g->p_n : 1;
	uint64_t nm = g->pm_nq[0] + g->pm_nq[1];

	if (g->prof && nm)
		fprintf(stderr, "moed: cuda profile: %llu one-row MoE layers through the expert "
			"source, per layer (us): router launch to routes on host %.1f, grouping, "
			"acquiring and queueing the experts %.1f, host between layers %.1f\n",
			(unsigned long long)nm, per(g->pm_route, nm),
			per(g->pm_q[0] + g->pm_q[1], nm), per(g->pm_between, nm));
	if (g->prof && g->pm_nq[1])
		fprintf(stderr, "moed: cuda profile: %llu of them with an expert loading when "
			"acquired: routes on host to the first such acquired %.1f us\n",
			(unsigned long long)g->pm_nq[1], per(g->pm_first, g->pm_nq[1]));
	for (int c = 0; c < 2 && g->prof; c++)
		if (g->pg_n[c] || g->pm_nq[c])
			fprintf(stderr, "moed: cuda profile: %llu of them after another %s, on the "
				"GPU's clock (us): the previous layer's experts done to this layer's "
				"attention done %.1f, to its router done %.1f, to its loads queued "
				"%.1f, to its experts done %.1f; on the host, routes to experts "
				"queued %.1f (%llu)\n", (unsigned long long)g->pg_n[c],
				c ? "with loads" : "without loads", per(g->pg[c][0], g->pg_n[c]),
				per(g->pg[c][1], g->pg_n[c]), per(g->pg[c][2], g->pg_n[c]),
				per(g->pg[c][3], g->pg_n[c]), per(g->pm_q[c], g->pm_nq[c]),
				(unsigned long long)g->pm_nq[c]);

	if (g->prof && g->fast_steps)
		fprintf(stderr, "moed: cuda profile: %llu fast steps, %llu of them one at a time, "
			"per such step (us): host before launch %.1f, graph on GPU %.1f, launch to "
			"logits on host %.1f, host after %.1f, caller between steps %.1f (chained "
			"steps, eng_greedy's, are not timed)\n",
			(unsigned long long)g->fast_steps, (unsigned long long)g->p_n,
			g->p_pre / n * 1e6, g->p_gpu / n * 1e6, g->p_wait / n * 1e6,
			g->p_post / n * 1e6, g->p_between / n * 1e6);
}
