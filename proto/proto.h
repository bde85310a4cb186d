/* moed's wire messages (carried over nng between the front, the predictor and
 * the workers): a fixed 24-byte header {magic, version, type, batch id,
 * payload length, flags} and one of five payloads.  Little-endian, every
 * count checked against the bytes left before anything is read or allocated.
 * No I/O here: encoders return a malloc'd buffer, the decoder takes one.
 * The byte layout is in proto/PROTOCOL.md. */
#ifndef PROTO_PROTO_H
#define PROTO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0x44454f4du          /* the bytes "MOED" read as LE u32 */
#define PROTO_VERSION_MAJOR 1
#define PROTO_VERSION_MINOR 0
#define PROTO_VERSION ((PROTO_VERSION_MAJOR << 8) | PROTO_VERSION_MINOR)
#define PROTO_HEADER_SIZE 24

enum proto_type {
	PROTO_BATCH = 1,    /* front -> predictor, worker */
	PROTO_TABLE = 2,    /* predictor -> worker */
	PROTO_TRACE = 3,    /* worker -> predictor (and front when routes asked) */
	PROTO_RESULT = 4,   /* worker -> front */
	PROTO_ERROR = 5,    /* anyone -> sender of batch_id */
	PROTO_CANCEL = 6,   /* front -> worker: stop these sequences, answer nothing */
};

/* Header flags; a bit is defined only for the type named. */
#define PROTO_F_TABLE_TOKENS 0x1u   /* TABLE: per-token top-k section present */
#define PROTO_F_TRACE_WEIGHTS 0x1u  /* TRACE: router weights present */
#define PROTO_F_RESULT_MORE 0x1u    /* RESULT: a stream chunk, more follow */

/* Limits the decoder enforces (and the encoders, so what one side sends the
 * other accepts). */
#define PROTO_MAX_PAYLOAD (256u << 20)   /* bytes after the header */
#define PROTO_MAX_SEQS 4096u             /* per BATCH / RESULT */
#define PROTO_MAX_TOKENS (1u << 22)      /* token ids (or TABLE/TRACE tokens) per message */
#define PROTO_MAX_STOP 64u               /* stop token ids per sequence */
#define PROTO_MAX_LAYERS 256u            /* MoE layers */
#define PROTO_MAX_EXPERTS 65535u         /* experts per layer; ids 0..n-1 */
#define PROTO_MAX_K 64u                  /* experts per token per layer */
#define PROTO_MAX_LOGITS (1u << 21)      /* logits per sequence (vocabulary) */
#define PROTO_MAX_ERRMSG 4096u           /* ERROR message bytes */

struct proto_header {
	uint32_t magic;
	uint16_t version;    /* major << 8 | minor */
	uint16_t type;       /* enum proto_type */
	uint64_t batch_id;
	uint32_t length;     /* payload bytes after the header */
	uint32_t flags;      /* PROTO_F_* of this type */
};

/* ---- BATCH ---- */

enum proto_kind {
	PROTO_KIND_GENERATE = 0,   /* prefill, then decode up to max_tokens */
	PROTO_KIND_FORWARD = 1,    /* one forward pass (SiDA's job, /v1/forward) */
};

#define PROTO_SEQ_STREAM 0x1u        /* send RESULT chunks as tokens come */
#define PROTO_SEQ_WANT_ROUTES 0x2u   /* send the TRACE back to the front too */
#define PROTO_SEQ_WANT_LOGITS 0x4u   /* RESULT carries last-position logits */
#define PROTO_SEQ_FLAGS_ALL 0x7u

struct proto_seq {
	uint64_t id;               /* unique within the batch */
	uint32_t start_pos;        /* position of tokens[0]; > 0 continues the
				    * KV cache the worker holds for id */
	uint32_t max_tokens;       /* tokens to generate */
	float temperature;         /* finite, >= 0; 0 is greedy */
	float top_p;               /* finite, in [0, 1] */
	uint64_t seed;
	uint32_t flags;            /* PROTO_SEQ_* */
	uint32_t n_tokens;         /* >= 1 */
	const uint32_t *tokens;
	uint16_t n_stop;           /* stop token ids, <= PROTO_MAX_STOP */
	const uint32_t *stop;
};

struct proto_batch {
	uint16_t kind;             /* enum proto_kind */
	uint32_t n_seqs;
	const struct proto_seq *seqs;
};

/* ---- TABLE: the predictor's expert table for one batch ---- */

struct proto_table {
	uint16_t n_layers;         /* MoE layers, <= PROTO_MAX_LAYERS */
	uint16_t n_experts;        /* per layer, >= 1 */
	/* Layer l's predicted experts are experts[layer_start[l] ..
	 * layer_start[l + 1]), best first by the sender's choice, each with a
	 * finite score; no expert twice in a layer.  n_layers + 1 entries,
	 * layer_start[0] == 0. */
	const uint32_t *layer_start;
	const uint16_t *experts;
	const float *scores;
	/* Optional per-token top-k, present iff k > 0 (1..PROTO_MAX_K): tokens
	 * in batch order (seq by seq, token by token), [n_tokens][n_layers][k]. */
	uint16_t k;
	uint32_t n_tokens;
	const uint16_t *tok_experts;
	const float *tok_weights;
};

/* ---- TRACE: the routing a batch really took ---- */

struct proto_trace {
	uint16_t n_layers;         /* 1..PROTO_MAX_LAYERS */
	uint16_t n_experts;        /* >= 1 */
	uint16_t k;                /* 1..PROTO_MAX_K, <= n_experts */
	uint32_t n_tokens;
	const uint64_t *seq_ids;   /* [n_tokens] */
	const uint32_t *positions; /* [n_tokens] */
	const uint32_t *tokens;    /* [n_tokens] */
	const uint16_t *experts;   /* [n_tokens][n_layers][k], distinct per (token, layer) */
	const float *weights;      /* same shape, finite; NULL: not sent */
};

/* ---- RESULT ---- */

enum proto_finish {
	PROTO_FINISH_NONE = 0,     /* not finished (stream chunk) */
	PROTO_FINISH_LENGTH = 1,
	PROTO_FINISH_STOP = 2,
	PROTO_FINISH_ERROR = 3,
	PROTO_FINISH_CANCELLED = 4,
};

enum proto_table_status {
	PROTO_TABLE_USED = 0,      /* the predictor's table drove prefetch */
	PROTO_TABLE_LATE = 1,      /* it came too late: loaded on demand */
	PROTO_TABLE_NONE = 2,      /* no predictor */
};

/* Expert-cache counters for the batch (distinct (layer, expert) pairs for
 * the experts_* fields). */
struct proto_moe_counts {
	uint64_t hits;
	uint64_t misses;
	uint64_t prefetched_used;
	uint64_t prefetched_unused;
	uint64_t bytes_loaded;
	uint64_t stall_ns;
	uint64_t experts_used;
	uint64_t experts_predicted;
	uint64_t experts_predicted_used;
};

struct proto_seq_result {
	uint64_t id;
	int32_t status;            /* 0 or a negative errno */
	uint8_t finish;            /* enum proto_finish */
	uint32_t n_prompt;         /* prompt tokens processed */
	uint32_t n_tokens;         /* generated tokens in this message */
	const uint32_t *tokens;
	uint32_t n_logits;         /* 0, or the vocabulary: last-position logits */
	const float *logits;       /* any float, -inf included */
};

struct proto_result {
	uint32_t table_status;     /* enum proto_table_status */
	struct proto_moe_counts moe;
	uint32_t n_seqs;
	const struct proto_seq_result *seqs;
	int more;                  /* PROTO_F_RESULT_MORE */
};

/* ---- CANCEL: sequences the front no longer wants (client gone, stop
 * string reached); the worker drops them without a RESULT. ---- */

struct proto_cancel {
	uint32_t n_seqs;           /* <= PROTO_MAX_SEQS */
	const uint64_t *seq_ids;
};

/* ---- ERROR ---- */

struct proto_error {
	int32_t code;              /* negative errno */
	const char *msg;           /* NUL-terminated, <= PROTO_MAX_ERRMSG bytes */
};

/* A decoded message; owns all the memory its pointers reach. */
struct proto_msg {
	struct proto_header hdr;
	union {
		struct proto_batch batch;
		struct proto_table table;
		struct proto_trace trace;
		struct proto_result result;
		struct proto_error error;
		struct proto_cancel cancel;
	};
	void *own_[5];             /* private */
};

/* Reads and checks the header only (magic, major version, type, flags,
 * length <= PROTO_MAX_PAYLOAD); len may be shorter than the whole message
 * but not than the header.  0, -EMSGSIZE or -EPROTO. */
int proto_header_peek(const void *buf, size_t len, struct proto_header *h);

/* Decodes one whole message (len == PROTO_HEADER_SIZE + header length).
 * Never reads outside buf.  *out is set only on success; free it with
 * proto_msg_free.  Errors: -EMSGSIZE (lengths: short, trailing bytes, a
 * count the bytes cannot hold, a limit), -EPROTO (content: magic, version,
 * type, flags, a value out of range), -EINVAL (arguments), -ENOMEM. */
int proto_decode(const void *buf, size_t len, struct proto_msg **out);
/* The same, writing one line naming the field and value into err. */
int proto_decode_err(const void *buf, size_t len, struct proto_msg **out,
		     char *err, size_t errlen);
void proto_msg_free(struct proto_msg *m);

/* Encoders: check the body with the decoder's rules, then write a malloc'd
 * buffer (free it with free()).  -EINVAL (invalid content), -EMSGSIZE (over
 * a limit), -ENOMEM. */
int proto_encode_batch(const struct proto_batch *b, uint64_t batch_id,
		       void **buf, size_t *len);
int proto_encode_table(const struct proto_table *t, uint64_t batch_id,
		       void **buf, size_t *len);
int proto_encode_trace(const struct proto_trace *t, uint64_t batch_id,
		       void **buf, size_t *len);
int proto_encode_result(const struct proto_result *r, uint64_t batch_id,
			void **buf, size_t *len);
int proto_encode_error(int32_t code, const char *msg, uint64_t batch_id,
		       void **buf, size_t *len);
int proto_encode_cancel(const uint64_t *seq_ids, uint32_t n, void **buf, size_t *len);
/* Encodes m's body by m->hdr.type with m->hdr.batch_id (version and flags
 * are derived, not copied): re-encodes a decoded message byte for byte. */
int proto_encode(const struct proto_msg *m, void **buf, size_t *len);
/* Why an encode would fail: the check alone, with a message. */
int proto_check(const struct proto_msg *m, char *err, size_t errlen);

const char *proto_type_name(uint16_t type);

#endif
