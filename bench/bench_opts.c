/* cuda_bench's command line (bench/bench_opts.h). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_opts.h"

const char bo_usage[] =
	"usage: cuda_bench [--backend cuda|host] [--policy lru,fifo,lfu] [--fracs 1,0.5,...]\n"
	"                  [--prefetch none,all,freq,cepr,oracle] [--routing synthetic|trace:PATH]\n"
	"                  [--json FILE] [--deadline SECONDS] [--prefill SxP] [--steps1 W,S]\n"
	"                  [--steps16 W,S] [--train-steps N] [--prefetch-k K] [--f32-pack]\n"
	"                  [--scan 0|1] [--prefill-calls N] [--host-threads N] MODEL_DIR PACK\n"
	"none, all and oracle run with lru only; freq and cepr with every --policy listed.\n"
	"--steps1/--steps16: warm-up and timed decode steps at batch 1 (8,64) and 16 (4,32).\n"
	"--prefetch-k: freq and cepr decode's experts predicted for a token's next layer\n"
	"(the worker's predictor.prefetch_k; default top_k).\n"
	"--scan: the cache's scan_resistant (the daemon's cache.scan_resistant; default 1).\n"
	"--prefill-calls N: N prefills of different prompts, the last timed (default 1).\n"
	"--host-threads N: the daemon's device.host_threads, 0..256 (default 0, none; the\n"
	"daemon's default, -1, takes 12 on a 16-CPU host: rt_host_threads).\n";

static int parse_fracs(char *s, struct bench_opts *o)
{
	for (char *t = strtok(s, ","); t; t = strtok(NULL, ",")) {
		char *end;
		double f = strtod(t, &end);

		if (o->n_fracs == BO_MAXFRAC || *end || !(f > 0 && f <= 1))
			return -EINVAL;
		o->fracs[o->n_fracs++] = f;
	}
	return 0;
}

static int parse_modes(char *s, struct bench_opts *o)
{
	for (char *t = strtok(s, ","); t; t = strtok(NULL, ",")) {
		int m = 0;

		while (m < BR_N && strcmp(t, br_mode_name[m]))
			m++;
		if (m == BR_N)
			return -EINVAL;
		if (!o->modes[m])
			o->order[o->n_modes++] = (enum br_mode)m;
		o->modes[m] = 1;
	}
	return 0;
}

static int parse_pols(char *s, struct bench_opts *o)
{
	o->n_pols = 0;
	for (char *t = strtok(s, ","); t; t = strtok(NULL, ",")) {
		enum cache_policy p;

		/* belady needs the future (eval-predictor only). */
		if (o->n_pols == BO_MAXPOL || cache_policy_parse(t, &p) || p == CACHE_BELADY)
			return -EINVAL;
		o->pols[o->n_pols++] = p;
	}
	return o->n_pols ? 0 : -EINVAL;
}

static int parse_routing(const char *s, struct bench_opts *o)
{
	if (!strcmp(s, "synthetic")) {
		o->trace = NULL;
		return 0;
	}
	if (strncmp(s, "trace:", 6) || !s[6])
		return -EINVAL;
	o->trace = s + 6;
	return 0;
}

static int pair(const char *s, int *a, int *b)
{
	return sscanf(s, "%d,%d", a, b) == 2 && *a >= 0 && *b >= 1 ? 0 : -EINVAL;
}

static int one(int ch, const char *v, struct bench_opts *o)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", v ? v : "");
	switch (ch) {
	case 'b': o->backend = v; return 0;
	case 'p': return parse_pols(buf, o);
	case 'f': return parse_fracs(buf, o);
	case 'x': return parse_modes(buf, o);
	case 'r': return parse_routing(v, o);
	case 'j': o->json = v; return 0;
	case 'd': o->deadline = atof(v); return 0;
	case 'F': o->f32_pack = true; return 0;
	case '1': return pair(v, &o->w1, &o->s1);
	case '6': return pair(v, &o->w16, &o->s16);
	case 't': o->tsteps = atoi(v); return o->tsteps >= 1 ? 0 : -EINVAL;
	case 'k': o->prefetch_k = atoi(v); return o->prefetch_k >= 1 ? 0 : -EINVAL;
	case 's': o->scan = atoi(v); return !strcmp(v, "0") || !strcmp(v, "1") ? 0 : -EINVAL;
	case 'c': o->pre_calls = atoi(v); return o->pre_calls >= 1 ? 0 : -EINVAL;
	case 'h': {
		char *end;
		long t = strtol(v, &end, 10);

		o->host_threads = (int)t;
		return end != v && !*end && t >= 0 && t <= 256 ? 0 : -EINVAL;
	}
	case 'P':
		return sscanf(v, "%dx%d", &o->pre_seqs, &o->pre_len) != 2 || o->pre_seqs < 1 ||
			o->pre_seqs > 8 || o->pre_len < 1 ? -EINVAL : 0;
	default: return -EINVAL;
	}
}

int bo_parse(int argc, char **argv, struct bench_opts *o)
{
	static const struct option lo[] = {
		{"backend", 1, 0, 'b'}, {"policy", 1, 0, 'p'}, {"fracs", 1, 0, 'f'},
		{"prefetch", 1, 0, 'x'}, {"routing", 1, 0, 'r'}, {"json", 1, 0, 'j'},
		{"deadline", 1, 0, 'd'}, {"prefill", 1, 0, 'P'}, {"f32-pack", 0, 0, 'F'},
		{"steps1", 1, 0, '1'}, {"steps16", 1, 0, '6'}, {"train-steps", 1, 0, 't'},
		{"prefetch-k", 1, 0, 'k'}, {"scan", 1, 0, 's'}, {"prefill-calls", 1, 0, 'c'},
		{"host-threads", 1, 0, 'h'}, {0, 0, 0, 0}};
	int ch;

	*o = (struct bench_opts){.backend = "cuda", .pols = {CACHE_LRU}, .n_pols = 1,
				 .pre_seqs = 4, .pre_len = 512, .w1 = 8, .s1 = 64, .w16 = 4,
				 .s16 = 32, .tsteps = 48, .scan = true, .pre_calls = 1};
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1)
		if (one(ch, optarg, o))
			return -EINVAL;
	if (argc - optind != 2 || BO_PROMPT + o->w1 + o->s1 > BO_MAXPOS ||
	    BO_BPROMPT + o->w16 + o->s16 > BO_MAXPOS)
		return -EINVAL;
	o->model = argv[optind];
	o->pack = argv[optind + 1];
	if (!o->n_fracs)
		o->fracs[o->n_fracs++] = 1;
	if (!o->n_modes)
		o->modes[BR_NONE] = o->n_modes = 1;  /* order[0] is BR_NONE */
	return 0;
}

int bo_plan_trace(const struct bench_opts *o, size_t n_tokens, const char *path,
		  size_t part[BO_NPART][2], int *tsteps, char *err, size_t errlen)
{
	size_t n1 = (size_t)(BO_PROMPT + o->w1 + o->s1);
	size_t n16 = (size_t)(BO_BPROMPT + o->w16 + o->s16);
	size_t used = n1 + BO_BATCH * n16, left = n_tokens > used ? n_tokens - used : 0;
	long per = (long)(left * 3 / 4 / BO_BATCH) - BO_BPROMPT;

	*tsteps = per < o->tsteps ? (int)per : o->tsteps;
	if (*tsteps < 1) {
		snprintf(err, errlen, "%s: %zu tokens; b1 takes %zu and b16 %d x %zu, leaving %zu: "
			 "too few for %d training prompts of %d + 1 tokens and the prefill "
			 "(lower --steps1/--steps16)", path, n_tokens, n1, BO_BATCH, n16, left,
			 BO_BATCH, BO_BPROMPT);
		return -ERANGE;
	}
	part[BO_B1][0] = 0;
	part[BO_B1][1] = n1;
	part[BO_B16][0] = n1;
	part[BO_B16][1] = n16;
	part[BO_TRAIN][0] = used;
	part[BO_TRAIN][1] = (size_t)(BO_BPROMPT + *tsteps);
	part[BO_PRE][0] = used + BO_BATCH * part[BO_TRAIN][1];
	part[BO_PRE][1] = n_tokens - part[BO_PRE][0];
	return 0;
}

void bo_set_part(const size_t (*part)[2], int pre_len, struct br_seq *s, enum bo_part p, int i)
{
	s->tlen = 0;
	if (!part)
		return;
	s->tbase = part[p][0];
	s->tlen = part[p][1];
	s->toff = p == BO_PRE ? (size_t)i * (size_t)pre_len : 0;
	if (p != BO_PRE)
		s->tbase += (size_t)i * s->tlen;
}
