/* /metrics (Prometheus text) and /v1/experts (residency and counters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/rt.h"
#include "daemon/serve.h"
#include "daemon/shstats.h"

static const double latency_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					 0.5, 1, 2.5, 5, 10, 30, 60};
static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
static const double token_buckets[] = {1, 8, 32, 128, 512, 2048, 8192, 32768};

void serve_metrics_init(struct server *s)
{
	struct metrics *m = s->metrics;
	const char *const ep_code[] = {"endpoint", "code", NULL};
	const char *const ep[] = {"endpoint", NULL};
	const char *const child[] = {"child", NULL};
	const char *const st[] = {"status", NULL};

	s->m.requests = metrics_counter(m, "moed_http_requests_total",
					"HTTP requests by endpoint and status code", ep_code);
	s->m.latency = metrics_histogram(m, "moed_http_request_duration_seconds",
					 "Time from request to full answer", ep, latency_buckets,
					 sizeof(latency_buckets) / sizeof(latency_buckets[0]));
	s->m.tokens_in = metrics_counter(m, "moed_prompt_tokens_total",
					 "Prompt tokens accepted", NULL);
	s->m.tokens_out = metrics_counter(m, "moed_generated_tokens_total",
					  "Tokens generated", NULL);
	s->m.queue_depth = metrics_gauge(m, "moed_queue_depth",
					 "Sequences waiting to be batched", NULL);
	s->m.inflight = metrics_gauge(m, "moed_inflight_sequences",
				      "Sequences sent to the worker and not finished", NULL);
	s->m.batch_seqs = metrics_histogram(m, "moed_batch_sequences", "Sequences per batch",
					    NULL, batch_buckets,
					    sizeof(batch_buckets) / sizeof(batch_buckets[0]));
	s->m.batch_tokens = metrics_histogram(m, "moed_batch_prompt_tokens",
					      "Prompt tokens per batch", NULL, token_buckets,
					      sizeof(token_buckets) / sizeof(token_buckets[0]));
	s->m.restarts = metrics_counter(m, "moed_child_exits_total",
					"Child process exits (each followed by a restart unless "
					"the supervisor gave up)", child);
	s->m.malformed = metrics_counter(m, "moed_front_malformed_messages_total",
					 "Messages from the worker the front could not decode "
					 "(dropped)", NULL);
	s->m.table_status = metrics_counter(m, "moed_worker_results_total",
					    "Worker result messages by the state of the "
					    "predictor's table for their batch (used, late, none)",
					    st);
}

void serve_metrics_request(struct server *s, const char *endpoint, int status,
			   double seconds)
{
	char code[8];

	snprintf(code, sizeof(code), "%d", status);
	metric_inc(s->m.requests, (const char *[]){endpoint, code});
	if (seconds > 0)
		metric_observe(s->m.latency, (const char *[]){endpoint}, seconds);
}

static void cache_lines(FILE *f, const struct shstats *st)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fields[] = {
		{"moed_cache_hits_total", "Expert uses found resident", offsetof(struct cache_stats, hits)},
		{"moed_cache_misses_total", "Expert uses loaded on demand", offsetof(struct cache_stats, misses)},
		{"moed_cache_prefetched_used_total", "Prefetched experts used before eviction",
		 offsetof(struct cache_stats, prefetched_used)},
		{"moed_cache_prefetched_unused_total", "Prefetched experts evicted unused",
		 offsetof(struct cache_stats, prefetched_unused)},
		{"moed_cache_prefetched_late_total",
		 "Prefetched experts used while their load was still in flight",
		 offsetof(struct cache_stats, prefetched_late)},
		{"moed_cache_prefetch_dropped_total",
		 "Prefetches dropped while still queued (their layer ran without them)",
		 offsetof(struct cache_stats, prefetch_dropped)},
		{"moed_cache_evictions_total", "Experts evicted", offsetof(struct cache_stats, evictions)},
		{"moed_cache_loads_total", "Expert loads (prefetch and demand)", offsetof(struct cache_stats, loads)},
		{"moed_cache_loaded_bytes_total", "Bytes copied into the expert cache",
		 offsetof(struct cache_stats, bytes_loaded)},
		{"moed_cache_host_runs_total",
		 "Missed experts the CPU computed instead of loading them (device.host_threads)",
		 offsetof(struct cache_stats, host_runs)},
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		fprintf(f, "# HELP %s %s, by MoE layer\n# TYPE %s counter\n", fields[i].name,
			fields[i].help, fields[i].name);
		for (uint32_t l = 0; l < st->h.n_layers; l++)
			fprintf(f, "%s{layer=\"%u\"} %llu\n", fields[i].name, l,
				(unsigned long long)*(const uint64_t *)((const char *)&st->layers[l] +
									fields[i].off));
	}
	fprintf(f, "# HELP moed_cache_stall_seconds_total Compute time spent waiting for expert loads, by MoE layer\n"
		   "# TYPE moed_cache_stall_seconds_total counter\n");
	for (uint32_t l = 0; l < st->h.n_layers; l++)
		fprintf(f, "moed_cache_stall_seconds_total{layer=\"%u\"} %.9f\n", l,
			st->layers[l].stall_seconds);
}

static void worker_lines(FILE *f, const struct shstats *st)
{
	const struct shstats_head *h = &st->h;
	size_t resident = 0;

	for (size_t i = 0; i < (size_t)h->n_layers * h->n_experts; i++)
		resident += st->resident[i];
	fprintf(f, "# HELP moed_cache_slots Expert slots in the fast tier\n# TYPE moed_cache_slots gauge\n"
		   "moed_cache_slots %llu\n", (unsigned long long)h->n_slots);
	fprintf(f, "# HELP moed_cache_resident_experts Experts resident now\n"
		   "# TYPE moed_cache_resident_experts gauge\nmoed_cache_resident_experts %zu\n",
		resident);
	fprintf(f, "# HELP moed_predictor_tables_total Batches by predictor table state\n"
		   "# TYPE moed_predictor_tables_total counter\n"
		   "moed_predictor_tables_total{state=\"used\"} %llu\n"
		   "moed_predictor_tables_total{state=\"late\"} %llu\n"
		   "moed_predictor_tables_total{state=\"none\"} %llu\n",
		(unsigned long long)h->tables_used, (unsigned long long)h->tables_late,
		(unsigned long long)h->tables_none);
	fprintf(f, "# HELP moed_predictor_recall Fraction of expert uses that were predicted "
		   "(finished requests since the worker started)\n# TYPE moed_predictor_recall gauge\n"
		   "moed_predictor_recall %.6f\n",
		h->experts_used ? (double)h->experts_predicted_used / (double)h->experts_used : 0.0);
	fprintf(f, "# HELP moed_worker_malformed_messages_total Messages the worker dropped\n"
		   "# TYPE moed_worker_malformed_messages_total counter\n"
		   "moed_worker_malformed_messages_total %llu\n", (unsigned long long)h->malformed);
	fprintf(f, "# HELP moed_decode_steps_total Shared decode steps\n# TYPE moed_decode_steps_total counter\n"
		   "moed_decode_steps_total %llu\n", (unsigned long long)h->steps);
	fprintf(f, "# HELP moed_prefill_yields_total Decode steps run between the calls of a "
		   "prefill (batch.prefill_chunks)\n# TYPE moed_prefill_yields_total counter\n"
		   "moed_prefill_yields_total %llu\n", (unsigned long long)h->prefill_yields);
	fprintf(f, "# HELP moed_prefill_calls_total Engine calls prefills ran in\n"
		   "# TYPE moed_prefill_calls_total counter\nmoed_prefill_calls_total %llu\n",
		   (unsigned long long)h->prefill_calls);
	cache_lines(f, st);
}

void serve_handle_metrics(struct server *s, struct http_req *req)
{
	char *buf = NULL, *reg = NULL;
	size_t len = 0, rlen = 0;
	FILE *f = open_memstream(&buf, &len);
	struct shstats st;

	if (!f) {
		http_respond_error(req, 500, NULL, "out of memory");
		return;
	}
	metric_set(s->m.inflight, NULL, s->n_inflight);
	if (metrics_render(s->metrics, &reg, &rlen) == 0)
		fwrite(reg, 1, rlen, f);
	free(reg);
	fprintf(f, "# HELP moed_up 1 when /health says ok\n# TYPE moed_up gauge\nmoed_up %d\n",
		serve_healthy(s) ? 1 : 0);
	if (shstats_read(s->dir, &st) == 0) {
		worker_lines(f, &st);
		shstats_free(&st);
	}
	fclose(f);
	http_respond(req, 200, METRICS_CONTENT_TYPE, buf, len);
	free(buf);
	serve_metrics_request(s, "/metrics", 200, 0);
}

void serve_handle_experts(struct server *s, struct http_req *req)
{
	struct shstats st;
	json_t *layers, *root;

	if (shstats_read(s->dir, &st) < 0) {
		http_respond_error(req, 503, NULL, "no worker statistics yet");
		serve_metrics_request(s, "/v1/experts", 503, 0);
		return;
	}
	layers = json_array();
	for (uint32_t l = 0; l < st.h.n_layers; l++) {
		json_t *res = json_array(), *o = rt_cache_stats_json(&st.layers[l]);

		for (uint32_t x = 0; x < st.h.n_experts; x++)
			if (st.resident[(size_t)l * st.h.n_experts + x])
				json_array_append_new(res, json_integer(x));
		json_object_set_new(o, "layer", json_integer(l));
		json_object_set_new(o, "resident", res);
		json_array_append_new(layers, o);
	}
	root = json_pack("{s:s, s:I, s:I, s:s, s:b, s:I, s:I, s:o}", "model", s->model_name,
			 "slots", (json_int_t)st.h.n_slots, "expert_bytes",
			 (json_int_t)st.h.expert_bytes, "policy", st.h.policy, "scan_resistant",
			 s->cfg.cache.scan_resistant, "experts_per_layer", (json_int_t)st.h.n_experts,
			 "batches",
			 (json_int_t)st.h.batches, "layers", layers);
	shstats_free(&st);
	http_respond_json(req, 200, root);
	serve_metrics_request(s, "/v1/experts", 200, 0);
}
