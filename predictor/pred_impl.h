/* Inside the predictors: the common object, the ops table each kind fills,
 * and the little-endian buffers the state files are made of. */
#ifndef PRED_PRED_IMPL_H
#define PRED_PRED_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "predictor/pred.h"

struct pbuf {                  /* growing output buffer */
	unsigned char *p;
	size_t n, cap;
	int oom;
};

struct rbuf {                  /* bounds-checked input */
	const unsigned char *p;
	size_t n, off;
	int bad;                   /* read past the end */
};

void pbuf_u16(struct pbuf *b, uint16_t v);
void pbuf_u32(struct pbuf *b, uint32_t v);
void pbuf_u64(struct pbuf *b, uint64_t v);
uint16_t rbuf_u16(struct rbuf *r);
uint32_t rbuf_u32(struct rbuf *r);
uint64_t rbuf_u64(struct rbuf *r);

struct pred;

struct pred_ops {
	const char *name;
	int backoff;               /* blend in popularity (fills the ranks after the evidence) */
	int learns;
	int (*init)(struct pred *p);
	void (*fini)(struct pred *p);
	void (*observe)(struct pred *p, const struct pred_tok *t);
	/* s[0..n_experts): >= 0, larger = likelier, 0 = no evidence. */
	void (*score)(struct pred *p, const struct pred_tok *t, int layer, double *s);
	void (*save)(const struct pred *p, struct pbuf *b);
	int (*load)(struct pred *p, struct rbuf *r);   /* 0 or -EINVAL */
	uint32_t (*param)(const struct pred *p);       /* checked on load */
};

struct pred {
	enum pred_kind kind;
	const struct pred_ops *ops;
	int L, E, k;               /* MoE layers, experts per layer, top_k */
	struct pred_opts o;
	uint32_t *pop;             /* [L][E] popularity counts */
	uint64_t *pop_total;       /* [L] */
	double *s;                 /* [E] scratch: scores */
	double *sums;              /* [L][E] scratch: batch table sums */
	int *roll;                 /* [L][k] scratch: batch roll-out path */
	int *guess;                /* [E] scratch */
	int *row_cur, *row_prev;   /* [L][k] scratch: pred_observe_rows */
	void *impl;
};

extern const struct pred_ops pred_none_ops, pred_pop_ops, pred_freq_ops, pred_cepr_ops,
	pred_oracle_ops;

/* A layer is known when its first entry is an expert id. */
static inline const int *pred_layer(const int *path, int k, int l)
{
	return path && path[(size_t)l * k] >= 0 ? path + (size_t)l * k : NULL;
}

#endif
