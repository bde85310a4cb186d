/* The proto tests' sample messages and byte-writing helpers
 * (tests/proto_fx.c), shared by test_proto.c and test_proto_bad.c. */
#ifndef TESTS_PROTO_FX_H
#define TESTS_PROTO_FX_H

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

/* Samples: a 2-sequence batch, tables with and without token weights, traces
 * with and without weights, a result, an error, a cancel. */
extern const uint32_t toks_a[], toks_b[], stop_a[];
extern const struct proto_seq seqs2[];
extern const struct proto_batch batch2, batch0;
extern const uint32_t tab_start[];
extern const uint16_t tab_ex[], tab_tex[12];
extern const float tab_sc[], tab_tw[12];
extern const struct proto_table table_tok, table_plain;
extern const uint64_t tr_ids[];
extern const uint32_t tr_pos[], tr_tok[];
extern const uint16_t tr_ex[12];
extern const float tr_w[12];
extern const struct proto_trace trace_w, trace_now;
extern const uint32_t res_tok[];
extern float res_logits[4];
extern const struct proto_seq_result rseqs[];
extern const struct proto_result result2;
extern const uint64_t cancel_ids[3];
#define N_SAMPLES 9
#define MEM_EQ(a, b, n) ck_assert((n) == 0 || memcmp((a), (b), (n) * sizeof *(a)) == 0)

/* The checked fixture: the non-finite logits. */
void setup(void);
/* Encodes sample i (0 .. N_SAMPLES - 1) into *buf. */
void sample(int i, void **buf, size_t *len);
/* Decodes, expecting code; returns the message on success. */
struct proto_msg *dec(const void *buf, size_t len, int code);
/* Writes v's n low bytes little-endian at p + off. */
void patch(uint8_t *p, size_t off, uint64_t v, int n);
/* Decode, re-encode: the same bytes. */
struct proto_msg *round_trip(const void *buf, size_t len);

/* A message written byte by byte, as PROTOCOL.md lays it out. */
struct raw {
	uint8_t *p;
	size_t n;
};

void rput(struct raw *r, uint64_t v, int n);
void rputf(struct raw *r, float f);
void rhdr(struct raw *r, uint16_t type, uint64_t id, uint32_t flags);
void rend(struct raw *r);
void raw_seq(struct raw *r, uint64_t id, uint32_t tok);

#endif
