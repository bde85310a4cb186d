/* The JSONL routing traces of /work/shared/traces: one decode token a line,
 * each a JSON array of [layer, expert] pairs.  Shapes come from the data:
 * the distinct layer ids in ascending order become layers 0..L-1, experts =
 * the largest id + 1, top_k = the pairs per layer (the same everywhere).
 * The lines carry no token ids (token -1) and no batch (batch = pos = the
 * token's index, one sequence). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loader/errfmt.h"
#include "predictor/trace.h"

#define MAX_LAYER_ID 65535

struct pairs {
	int *v;                    /* layer, expert, layer, expert, ... */
	size_t n, cap;             /* ints */
	size_t *line_off;          /* [tokens + 1]: offset of each token's pairs */
	size_t *line_no;           /* [tokens]: 1-based line number */
	size_t n_tok, cap_tok;
};

static int push_pair(struct pairs *p, int layer, int expert)
{
	if (p->n + 2 > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4096;
		int *v = realloc(p->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = layer;
	p->v[p->n++] = expert;
	return 0;
}

static int push_token(struct pairs *p, size_t line_no)
{
	if (p->n_tok + 2 > p->cap_tok) {
		size_t cap = p->cap_tok ? p->cap_tok * 2 : 1024;
		size_t *o = realloc(p->line_off, cap * sizeof(*o));

		if (!o)
			return -ENOMEM;
		p->line_off = o;
		o = realloc(p->line_no, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		p->line_no = o;
		p->cap_tok = cap;
	}
	p->line_no[p->n_tok++] = line_no;
	p->line_off[p->n_tok] = p->n;
	return 0;
}

/* One line -> pairs appended; *seen marks layer ids, *max_e the largest expert. */
static int parse_line(const char *line, size_t len, size_t no, const char *path,
		      struct pairs *p, unsigned char *seen, int *max_e, char *err, size_t n)
{
	json_error_t je;
	json_t *a = json_loadb(line, len, 0, &je), *pair;
	size_t i;
	int rv = -EINVAL;

	if (!a) {
		ld_errf(err, n, "%s: line %zu: %s (column %d)", path, no, je.text, je.column);
		return -EINVAL;
	}
	if (!json_is_array(a) || json_array_size(a) == 0) {
		ld_errf(err, n, "%s: line %zu: expected a non-empty array of [layer, expert] pairs",
		        path, no);
		goto out;
	}
	json_array_foreach(a, i, pair) {
		json_t *jl = json_array_get(pair, 0), *je2 = json_array_get(pair, 1);
		json_int_t l, e;

		if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_integer(jl) ||
		    !json_is_integer(je2)) {
			ld_errf(err, n, "%s: line %zu: item %zu is not a [layer, expert] integer pair",
			        path, no, i);
			goto out;
		}
		l = json_integer_value(jl);
		e = json_integer_value(je2);
		if (l < 0 || l > MAX_LAYER_ID || e < 0 || e >= PRED_TRACE_MAX_EXPERTS) {
			ld_errf(err, n, "%s: line %zu: item %zu: layer %lld / expert %lld out of range",
			        path, no, i, (long long)l, (long long)e);
			goto out;
		}
		seen[l] = 1;
		if (e > *max_e)
			*max_e = (int)e;
		if ((rv = push_pair(p, (int)l, (int)e)) < 0)
			goto out;
		rv = -EINVAL;
	}
	rv = 0;
out:
	json_decref(a);
	return rv;
}

static int read_lines(FILE *f, const char *path, struct pairs *p, unsigned char *seen,
		      int *max_e, char *err, size_t n)
{
	char *line = NULL;
	size_t cap = 0, no = 0;
	ssize_t len;
	int rv = 0;

	p->line_off = malloc(1024 * sizeof(size_t));
	p->line_no = malloc(1024 * sizeof(size_t));
	if (!p->line_off || !p->line_no)
		return -ENOMEM;
	p->cap_tok = 1024;
	p->line_off[0] = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		no++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
				   line[len - 1] == ' '))
			len--;
		if (len == 0)
			continue;
		if ((rv = parse_line(line, len, no, path, p, seen, max_e, err, n)) < 0 ||
		    (rv = push_token(p, no)) < 0)
			break;
	}
	free(line);
	if (!rv && ferror(f))
		rv = -EIO;
	if (!rv && p->n_tok == 0) {
		ld_errf(err, n, "%s: no tokens", path);
		rv = -EINVAL;
	}
	return rv;
}

/* Places token t's pairs into the trace, checking that every layer has
 * exactly top_k distinct experts. */
static int place_token(struct pred_trace *t, const struct pairs *p, size_t ti,
		       const int *layer_of, int *fill, const char *path, char *err, size_t n)
{
	int k = t->top_k, *ex = t->experts + ti * (size_t)t->n_layers * k;

	memset(fill, 0, t->n_layers * sizeof(int));
	for (size_t j = p->line_off[ti]; j < p->line_off[ti + 1]; j += 2) {
		int l = layer_of[p->v[j]], e = p->v[j + 1], *dst = ex + (size_t)l * k;

		if (fill[l] == k) {
			ld_errf(err, n, "%s: line %zu: layer %d has more than %d experts", path,
			        p->line_no[ti], p->v[j], k);
			return -EINVAL;
		}
		for (int i = 0; i < fill[l]; i++)
			if (dst[i] == e) {
				ld_errf(err, n, "%s: line %zu: layer %d lists expert %d twice", path,
				        p->line_no[ti], p->v[j], e);
				return -EINVAL;
			}
		dst[fill[l]++] = e;
	}
	for (int l = 0; l < t->n_layers; l++)
		if (fill[l] != k) {
			ld_errf(err, n, "%s: line %zu: layer %d has %d experts, expected %d (from line %zu)",
			        path, p->line_no[ti], t->layer_ids[l], fill[l], k, p->line_no[0]);
			return -EINVAL;
		}
	return 0;
}

/* top_k = the pairs of the first line's first layer. */
static int first_k(const struct pairs *p)
{
	int k = 0;

	for (size_t j = 0; j < p->line_off[1]; j += 2)
		k += p->v[j] == p->v[0];
	return k;
}

static int build(struct pred_trace *t, const struct pairs *p, const unsigned char *seen,
		 const char *path, char *err, size_t n)
{
	int *layer_of = calloc(MAX_LAYER_ID + 1, sizeof(int)), *fill = NULL, l = 0, rv = -ENOMEM;

	if (!layer_of)
		return -ENOMEM;
	for (int id = 0; id <= MAX_LAYER_ID; id++)
		if (seen[id]) {
			t->layer_ids[l] = id;
			layer_of[id] = l++;
		}
	t->toks = malloc(p->n_tok * sizeof(*t->toks));
	t->experts = malloc(p->n_tok * (size_t)t->n_layers * t->top_k * sizeof(int));
	fill = malloc(t->n_layers * sizeof(int));
	if (!t->toks || !t->experts || !fill)
		goto out;
	t->n_tokens = p->n_tok;
	for (size_t i = 0; i < p->n_tok; i++) {
		t->toks[i] = (struct pred_trace_tok){ i, 0, (int32_t)i, -1, (int64_t)i - 1 };
		if ((rv = place_token(t, p, i, layer_of, fill, path, err, n)) < 0)
			goto out;
	}
	rv = 0;
out:
	free(layer_of);
	free(fill);
	return rv;
}

int pred_trace_load_jsonl(FILE *f, const char *path, struct pred_trace **out,
			  char *err, size_t errlen)
{
	unsigned char *seen = calloc(MAX_LAYER_ID + 1, 1);
	struct pairs p = {0};
	struct pred_trace *t = NULL;
	int max_e = -1, n_layers = 0, rv = -ENOMEM;

	if (!seen)
		goto fail;
	if ((rv = read_lines(f, path, &p, seen, &max_e, err, errlen)) < 0)
		goto fail;
	for (int id = 0; id <= MAX_LAYER_ID; id++)
		n_layers += seen[id];
	rv = -ENOMEM;
	if (!(t = calloc(1, sizeof(*t))) || !(t->layer_ids = malloc(n_layers * sizeof(int))))
		goto fail;
	t->n_layers = n_layers;
	t->n_experts = max_e + 1;
	t->top_k = first_k(&p);
	t->format = PRED_TRACE_JSONL;
	if ((rv = build(t, &p, seen, path, err, errlen)) < 0)
		goto fail;
	free(seen);
	free(p.v);
	free(p.line_off);
	free(p.line_no);
	*out = t;
	return 0;
fail:
	if (rv == -ENOMEM)
		ld_errf(err, errlen, "%s: out of memory", path);
	else if (rv == -EIO)
		ld_errf(err, errlen, "%s: read error", path);
	free(seen);
	free(p.v);
	free(p.line_off);
	free(p.line_no);
	pred_trace_free(t);
	return rv;
}
