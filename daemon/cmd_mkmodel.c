/* moed mkmodel: write a synthetic HF-layout MoE model directory. */
#include <errno.h>
#include <jansson.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/cmds.h"
#include "daemon/mkmodel.h"
#include "tokenizer/tok.h"

enum otype { O_INT, O_U64, O_MIB, O_THETA, O_STR, O_FLAG, O_FAMILY, O_DTYPE, O_LAYERS };

struct opt {
	const char *name;
	enum otype type;
	size_t off;
	const char *help;
};

#define OFF(f) offsetof(struct mkmodel_opts, f)

static const struct opt opts[] = {
	{"--out", O_STR, OFF(out_dir), "DIR  model directory to write (required)"},
	{"--family", O_FAMILY, OFF(family), "mixtral|qwen3_moe|olmoe (olmoe)"},
	{"--layers", O_INT, OFF(n_layers), "N  decoder layers (4)"},
	{"--experts", O_INT, OFF(n_experts), "E  experts per MoE layer (16)"},
	{"--top-k", O_INT, OFF(top_k), "K  experts per token (2)"},
	{"--hidden", O_INT, OFF(hidden), "H  hidden size (128)"},
	{"--heads", O_INT, OFF(n_heads), "N  attention heads (4)"},
	{"--kv-heads", O_INT, OFF(n_kv_heads), "N  key/value heads (= heads)"},
	{"--head-dim", O_INT, OFF(head_dim), "D  head dim (hidden / heads)"},
	{"--intermediate", O_INT, OFF(intermediate), "I  expert FFN size (256)"},
	{"--dense-intermediate", O_INT, OFF(dense_intermediate),
	 "I  qwen3_moe dense-layer FFN size (2 x intermediate)"},
	{"--mlp-only-layers", O_LAYERS, OFF(dense_layer), "L,L  qwen3_moe dense layers (none)"},
	{"--vocab", O_INT, OFF(vocab), "V  vocabulary size (512)"},
	{"--dtype", O_DTYPE, OFF(dtype), "f32|bf16|f16 (f32)"},
	{"--seed", O_U64, OFF(seed), "S  PRNG seed (1)"},
	{"--shard-mib", O_MIB, OFF(shard_bytes), "M  shard size in MiB (4096)"},
	{"--skewed", O_FLAG, OFF(skewed), "   routing with a few hot experts, predictable from the token"},
	{"--rope-theta", O_THETA, OFF(rope_theta), "T  RoPE base (1e6; olmoe 1e4)"},
	{"--max-pos", O_INT, OFF(max_position), "N  max_position_embeddings (4096)"},
	{"--tokenizer-corpus", O_STR, OFF(tokenizer_corpus),
	 "FILE  also train a byte-level BPE tokenizer (vocab = --vocab) on FILE"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: moed mkmodel --out DIR [options]\n\n"
		"Writes config.json and model.safetensors (or shards and an index) that HF\n"
		"transformers loads; same options and seed give identical files.\n\n");
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		fprintf(f, "  %-21s %s\n", opts[i].name, opts[i].help);
}

static int bad(const char *name, const char *what, const char *val)
{
	fprintf(stderr, "moed mkmodel: %s: %s (got '%s')\n", name, what, val);
	return -EINVAL;
}

static int parse_layers(const char *name, const char *val, bool *dense)
{
	const char *p = val;

	memset(dense, 0, LD_MAX_LAYERS * sizeof(*dense));
	while (*p) {
		char *end;
		long l;

		errno = 0;
		l = strtol(p, &end, 10);
		if (end == p || errno || l < 0 || l >= LD_MAX_LAYERS || (*end && *end != ','))
			return bad(name, "expected a comma-separated list of layer indices", val);
		dense[l] = true;
		p = *end ? end + 1 : end;
	}
	return 0;
}

static int parse_choice(const struct opt *o, const char *val, const char *const names[3],
			const char *what, int *out)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(val, names[i])) {
			*out = i;
			return 0;
		}
	return bad(o->name, what, val);
}

static int parse_value(const struct opt *o, const char *val, struct mkmodel_opts *m)
{
	char *p = (char *)m + o->off, *end;
	double d;

	errno = 0;
	switch (o->type) {
	case O_INT: {
		long v = strtol(val, &end, 10);
		if (!*val || *end || errno || v < 1 || v > INT_MAX)
			return bad(o->name, "expected a positive integer", val);
		*(int *)p = (int)v;
		return 0;
	}
	case O_U64: {
		unsigned long long v = strtoull(val, &end, 0);
		if (!*val || *end || errno || *val == '-')
			return bad(o->name, "expected an unsigned 64-bit integer", val);
		*(uint64_t *)p = v;
		return 0;
	}
	case O_MIB:
		d = strtod(val, &end);
		if (!*val || *end || errno || !(d * 1048576.0 >= 1.0) || d > 1e12)
			return bad(o->name, "expected a positive size in MiB", val);
		*(uint64_t *)p = (uint64_t)(d * 1048576.0);
		return 0;
	case O_THETA:
		d = strtod(val, &end);
		if (!*val || *end || errno || !(d > 0) || isinf(d))
			return bad(o->name, "expected a positive number", val);
		*(double *)p = d;
		return 0;
	case O_STR:
		if (!*val)
			return bad(o->name, "expected a non-empty value", val);
		*(const char **)p = val;
		return 0;
	case O_FAMILY: /* indices are the enum ld_family values */
		return parse_choice(o, val, (const char *const[]){"mixtral", "qwen3_moe", "olmoe"},
				    "expected mixtral, qwen3_moe or olmoe", (int *)&m->family);
	case O_DTYPE:  /* indices are the enum ld_dtype values */
		return parse_choice(o, val, (const char *const[]){"f32", "f16", "bf16"},
				    "expected f32, bf16 or f16", (int *)&m->dtype);
	case O_LAYERS:
		return parse_layers(o->name, val, m->dense_layer);
	case O_FLAG:
		break;
	}
	return -EINVAL;
}

/* Accepts "--name value" and "--name=value"; 1 for --help. */
static int parse_args(int argc, char **argv, struct mkmodel_opts *m)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq = strchr(arg, '='), *val = NULL;
		size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		const struct opt *o = NULL;

		if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
			return 1;
		for (size_t j = 0; j < sizeof(opts) / sizeof(opts[0]) && !o; j++)
			if (strlen(opts[j].name) == nlen && !strncmp(opts[j].name, arg, nlen))
				o = &opts[j];
		if (!o) {
			fprintf(stderr, "moed mkmodel: unknown option '%s' (see moed mkmodel --help)\n",
				arg);
			return -EINVAL;
		}
		if (o->type == O_FLAG) {
			if (eq) {
				fprintf(stderr, "moed mkmodel: %s: takes no value\n", o->name);
				return -EINVAL;
			}
			*(bool *)((char *)m + o->off) = true;
			continue;
		}
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "moed mkmodel: %s: missing value\n", o->name);
			return -EINVAL;
		}
		if (parse_value(o, val, m) < 0)
			return -EINVAL;
	}
	return 0;
}

/* tokenizer.json trained on the corpus (ChatML specials last) and a
 * tokenizer_config.json with the ChatML template, so the model takes text. */
static int write_tokenizer(const struct mkmodel_opts *m, char *err, size_t n)
{
	static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
	char path[4200], *corpus = NULL;
	size_t len = 0;
	FILE *f = fopen(m->tokenizer_corpus, "rb");
	json_t *cfg;
	int rc;

	if (!f) {
		snprintf(err, n, "--tokenizer-corpus %s: %s", m->tokenizer_corpus, strerror(errno));
		return -errno;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (len = (size_t)ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (corpus = malloc(len)) && fread(corpus, 1, len, f) != len)
		len = 0;
	fclose(f);
	snprintf(path, sizeof(path), "%s/tokenizer.json", m->out_dir);
	rc = corpus && len ? tok_train_bytelevel_ex(corpus, len, m->vocab, specials, 3, path, err, n)
			   : (snprintf(err, n, "--tokenizer-corpus %s: empty or unreadable",
				       m->tokenizer_corpus), -EINVAL);
	free(corpus);
	if (rc < 0)
		return rc;
	cfg = json_pack("{s:s, s:n, s:s, s:b, s:s, s:i}", "eos_token", "<|endoftext|>",
			"bos_token", "pad_token", "<|endoftext|>", "add_bos_token", 0,
			"chat_template", tok_chat_template(TOK_CHAT_CHATML),
			"model_max_length", m->max_position);
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", m->out_dir);
	rc = cfg && json_dump_file(cfg, path, JSON_INDENT(2)) == 0 ? 0 : -EIO;
	if (rc < 0)
		snprintf(err, n, "%s: cannot write", path);
	json_decref(cfg);
	return rc;
}

int cmd_mkmodel(int argc, char **argv)
{
	static const char *const fam[] = { "mixtral", "qwen3_moe", "olmoe" };
	struct mkmodel_opts m;
	struct mkmodel_info info;
	char err[512];
	int rc;

	mkmodel_defaults(&m);
	if ((rc = parse_args(argc, argv, &m)) != 0) {
		if (rc == 1)
			usage(stdout);
		return rc == 1 ? 0 : 2;
	}
	if (mkmodel_check(&m, err, sizeof(err)) < 0) {
		fprintf(stderr, "moed mkmodel: %s\n", err);
		return 2;
	}
	m.progress = isatty(2);
	if (mkmodel_write(&m, &info, err, sizeof(err)) < 0 ||
	    (m.tokenizer_corpus && write_tokenizer(&m, err, sizeof(err)) < 0)) {
		fprintf(stderr, "moed mkmodel: %s\n", err);
		return 1;
	}
	printf("%s: %s, %d layers, %d experts (top-%d), %" PRIu64 " parameters, %.1f MiB in %d file%s\n",
	       m.out_dir, fam[m.family], m.n_layers, m.n_experts, m.top_k, info.n_params,
	       (double)info.data_bytes / 1048576.0, info.n_shards, info.n_shards > 1 ? "s" : "");
	return 0;
}
