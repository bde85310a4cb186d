/* Worker sequences. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/wseq.h"

int wseq_new(struct eng *e, const struct proto_seq *ps, uint64_t batch, int kind,
	     int n_layers, int n_experts, int k, struct wseq **out)
{
	struct wseq *w = calloc(1, sizeof(*w));
	size_t route = (size_t)n_layers * (size_t)k;
	long cap = (long)ps->n_tokens + (long)ps->max_tokens;
	int rv = -ENOMEM;

	if (!w)
		return -ENOMEM;
	w->id = ps->id;
	w->batch = batch;
	w->flags = ps->flags;
	w->temperature = ps->temperature;
	w->top_p = ps->top_p;
	w->kind = kind;
	w->n_prompt = (int)ps->n_tokens;
	w->max_tokens = kind == PROTO_KIND_FORWARD ? 0 : (int)ps->max_tokens;
	w->n_stop = ps->n_stop;
	eng_rng_seed(&w->rng, ps->seed);
	if (cap > eng_max_ctx(e)) {
		rv = -ERANGE;
		goto fail;
	}
	w->gen = calloc((size_t)w->max_tokens + 1, sizeof(*w->gen));
	w->stop = calloc((size_t)w->n_stop + 1, sizeof(uint32_t));
	w->cur = malloc((route ? route : 1) * sizeof(int));
	w->prev = malloc((route ? route : 1) * sizeof(int));
	w->pmask = calloc((size_t)n_experts + 1, 1);
	w->charged = calloc((size_t)n_layers * (size_t)n_experts + 1, sizeof(*w->charged));
	w->pmask_layer = -1;
	if (!w->gen || !w->stop || !w->cur || !w->prev || !w->pmask || !w->charged)
		goto fail;
	memcpy(w->stop, ps->stop, (size_t)w->n_stop * sizeof(uint32_t));
	for (size_t i = 0; i < route; i++)
		w->cur[i] = w->prev[i] = -1;
	if ((rv = eng_seq_new_cap(e, (int)(cap > 0 ? cap : 1), &w->s)) < 0)
		goto fail;
	eng_seq_set_user(w->s, w);
	*out = w;
	return 0;
fail:
	wseq_free(w);
	return rv;
}

void wseq_free(struct wseq *w)
{
	if (!w)
		return;
	eng_seq_free(w->s);
	free(w->gen);
	free(w->stop);
	free(w->cur);
	free(w->charged);
	free(w->prev);
	free(w->pmask);
	free(w->logits);
	free(w);
}

void wseq_take(struct wseq *w, const float *logits, int best, int vocab, float *scratch)
{
	int t = eng_sample_best(logits, vocab, best, w->temperature, w->top_p, &w->rng, scratch);

	w->gen[w->n_gen++] = (uint32_t)t;
	w->next = t;
	for (int i = 0; i < w->n_stop; i++)
		if ((uint32_t)t == w->stop[i]) {
			/* As OpenAI does, the stop token is not part of the output. */
			w->n_gen--;
			w->finish = PROTO_FINISH_STOP;
			return;
		}
	if (w->n_gen >= w->max_tokens)
		w->finish = PROTO_FINISH_LENGTH;
}
