/* moed predictor: the hash-building process.  For every BATCH the front
 * sends, it computes the table "MoE layer -> experts" with the configured
 * predictor and pushes it to the worker; it learns online from the TRACEs the
 * worker publishes, and keeps its state in predictor.state_file. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "daemon/cmds.h"
#include "daemon/config.h"
#include "daemon/ipc.h"
#include "daemon/log.h"
#include "daemon/rt.h"
#include "loader/clock.h"
#include "loader/hfconfig.h"
#include "predictor/pred.h"
#include "predictor/trace.h"
#include "proto/proto.h"

#define SAVE_EVERY_S 30.0

struct predictor {
	struct moed_config cfg;
	struct ld_config mc;
	struct pred *p;
	struct pred_trace *oracle;
	nng_socket in, out, traces;
	int want;
	uint64_t tables, observed, dropped;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static enum pred_kind kind_of(int cfg_kind)
{
	switch (cfg_kind) {
	case CFG_PRED_ORACLE: return PRED_ORACLE;
	case CFG_PRED_FREQ: return PRED_FREQ;
	case CFG_PRED_CEPR: return PRED_CEPR;
	default: return PRED_NONE;
	}
}

static struct proto_msg *recv_msg(struct predictor *p, nng_socket s, int timeout)
{
	return ipc_recv_msg(s, timeout, "predictor", &p->dropped);
}

/* The table of one batch: per layer the union of its tokens' predicted
 * experts, ranked by summed probability, as many as the cache can hold. */
static void answer_batch(struct predictor *p, const struct proto_msg *m)
{
	const struct proto_batch *b = &m->batch;
	int L = p->mc.n_moe_layers, want = p->want;
	size_t n = 0;
	struct pred_tok *toks;
	int *table = malloc((size_t)L * want * sizeof(int)), *counts = calloc((size_t)L, sizeof(int));
	uint32_t *start = calloc((size_t)L + 1, sizeof(uint32_t));
	uint16_t *ex = malloc((size_t)L * want * sizeof(uint16_t) + 2);
	float *sc = malloc((size_t)L * want * sizeof(float) + 4);
	void *buf;
	size_t len;

	for (uint32_t i = 0; i < b->n_seqs; i++)
		n += b->seqs[i].n_tokens;
	toks = calloc(n + 1, sizeof(*toks));
	if (!table || !counts || !start || !ex || !sc || !toks)
		goto out;
	n = 0;
	for (uint32_t i = 0; i < b->n_seqs; i++)
		for (uint32_t j = 0; j < b->seqs[i].n_tokens; j++)
			toks[n++] = (struct pred_tok){.token = (int)b->seqs[i].tokens[j], .index = -1};
	if (pred_predict_batch(p->p, toks, n, want, table, counts) < 0)
		goto out;
	for (int l = 0; l < L; l++) {
		start[l + 1] = start[l] + (uint32_t)counts[l];
		for (int j = 0; j < counts[l]; j++) {
			ex[start[l] + j] = (uint16_t)table[l * want + j];
			sc[start[l] + j] = (float)(counts[l] - j);  /* rank as score */
		}
	}
	struct proto_table t = {.n_layers = (uint16_t)L, .n_experts = (uint16_t)p->mc.n_experts,
				.layer_start = start, .experts = ex, .scores = sc};
	if (proto_encode_table(&t, m->hdr.batch_id, &buf, &len) == 0) {
		if (ipc_send(p->out, buf, len, 1) == 0)
			p->tables++;
		free(buf);
	}
out:
	free(toks);
	free(table);
	free(counts);
	free(start);
	free(ex);
	free(sc);
}

static void learn(struct predictor *p, const struct proto_msg *m)
{
	const struct proto_trace *t = &m->trace;

	if (t->n_layers != p->mc.n_moe_layers || t->k != p->mc.top_k) {
		p->dropped++;
		return;
	}
	pred_observe_rows(p->p, t->experts, t->seq_ids, t->tokens, t->n_tokens);
	p->observed += t->n_tokens;
}

static void save_state(struct predictor *p)
{
	char err[512];

	if (!p->cfg.predictor.state_file[0] || !pred_learns(p->p))
		return;
	if (pred_save(p->p, p->cfg.predictor.state_file, err, sizeof(err)) < 0)
		log_msg(LOG_WARNING, "predictor: %s", err);
}

static int setup(struct predictor *p, char *err, size_t n)
{
	char path[CFG_PATH_MAX + 32], dir[CFG_PATH_MAX];
	struct pred_opts po = {.cepr_m = p->cfg.predictor.cepr_m};
	enum pred_kind kind = kind_of((int)p->cfg.predictor.kind);
	int rv;

	snprintf(path, sizeof(path), "%s/config.json", p->cfg.model.path);
	if ((rv = ld_config_read(path, &p->mc, err, n)) < 0)
		return rv;
	if (kind == PRED_ORACLE) {
		if ((rv = pred_trace_load(p->cfg.predictor.trace_file, &p->oracle, err, n)) < 0)
			return rv;
		po.oracle_trace = p->oracle;
	}
	if ((rv = pred_open(kind, p->mc.n_moe_layers, p->mc.n_experts, p->mc.top_k, &po, &p->p)) < 0) {
		snprintf(err, n, "predictor %s: %s", pred_kind_name(kind), strerror(-rv));
		return rv;
	}
	if (p->cfg.predictor.state_file[0] && pred_learns(p->p)) {
		FILE *f = fopen(p->cfg.predictor.state_file, "rb");

		if (f) {
			fclose(f);
			if ((rv = pred_load(p->p, p->cfg.predictor.state_file, err, n)) < 0)
				log_msg(LOG_WARNING, "predictor: starting fresh: %s", err);
			else
				log_msg(LOG_INFO, "predictor: loaded %s", p->cfg.predictor.state_file);
		}
	}
	/* As many experts per layer as the cache holds, at least top-k. */
	p->want = rt_want_per_layer(&p->cfg, &p->mc);
	if ((rv = cfg_runtime_dir(&p->cfg, dir, sizeof(dir))) < 0 ||
	    (rv = ipc_prepare_dir(dir, err, n)) < 0 ||
	    (rv = ipc_open(dir, IPC_PRED, 1, &p->in, err, n)) < 0 ||
	    (rv = ipc_open(dir, IPC_TABLE, 0, &p->out, err, n)) < 0 ||
	    (rv = ipc_open(dir, IPC_TRACE, 1, &p->traces, err, n)) < 0)
		return rv;
	return 0;
}

static const char usage_text[] =
	"usage: moed predictor [--config FILE] [--set key=value]...\n\nThe expert-table predictor; moed serve starts it.\n";

int cmd_predictor(int argc, char **argv)
{
	struct predictor *p = calloc(1, sizeof(*p));
	char err[1024];
	double last_save;
	int rv = 1;

	if (!p)
		return 1;
	cfg_defaults(&p->cfg);
	if (cfg_parse_args(&p->cfg, argc - 1, argv + 1, cmd_help_flag, (void *)usage_text, err,
			   sizeof(err)) < 0) {
		fprintf(stderr, "moed predictor: %s\n", err);
		free(p);
		return 2;
	}
	log_set_level((int)p->cfg.log.level);
	prctl(PR_SET_PDEATHSIG, SIGTERM);  /* go when serve goes */
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (setup(p, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "predictor: %s", err);
		goto out;
	}
	log_msg(LOG_INFO, "predictor: %s ready", pred_kind_name(pred_get_kind(p->p)));
	last_save = ld_now();
	while (!stop_flag) {
		struct proto_msg *m;
		int busy = 0;

		while ((m = recv_msg(p, p->in, busy ? 0 : 20))) {
			busy = 1;
			if (m->hdr.type == PROTO_BATCH)
				answer_batch(p, m);
			proto_msg_free(m);
		}
		while ((m = recv_msg(p, p->traces, 0))) {
			if (m->hdr.type == PROTO_TRACE && p->cfg.predictor.learn)
				learn(p, m);
			proto_msg_free(m);
		}
		if (ld_now() - last_save > SAVE_EVERY_S) {
			save_state(p);
			last_save = ld_now();
		}
	}
	save_state(p);
	log_msg(LOG_INFO, "predictor: %llu tables sent, %llu tokens learned, %llu malformed "
		"messages dropped", (unsigned long long)p->tables, (unsigned long long)p->observed,
		(unsigned long long)p->dropped);
	rv = 0;
out:
	if (p->p) {
		nng_close(p->in);
		nng_close(p->out);
		nng_close(p->traces);
	}
	pred_close(p->p);
	pred_trace_free(p->oracle);
	free(p);
	return rv;
}
