/* Internals shared by the tokenizer's files; not part of the API. */
#ifndef TOKENIZER_TOK_INTERNAL_H
#define TOKENIZER_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tok.h"

/* ---- small containers (tok_util.c) ---- */

/* Growable byte buffer. */
struct tbuf {
	char *p;
	size_t len, cap;
};
int tbuf_reserve(struct tbuf *b, size_t extra);
int tbuf_put(struct tbuf *b, const void *s, size_t n);
void tbuf_free(struct tbuf *b);

/* Bump allocator for strings that live as long as the tokenizer. */
struct arena {
	struct arena_blk *head;
};
void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_free(struct arena *a);

/* Open-addressing map from byte strings to int32 (keys are not copied). */
struct strmap {
	struct strmap_ent *ents;
	size_t cap, n;
};
int strmap_put(struct strmap *m, const char *s, size_t len, int32_t v);
int32_t strmap_get(const struct strmap *m, const char *s, size_t len); /* -1 */
/* Iterates the entries: start with *i = 0; returns 0 at the end. */
int strmap_next(const struct strmap *m, size_t *i, const char **s, size_t *len, int32_t *v);
void strmap_free(struct strmap *m);

/* Map from a pair of ids to a merge (rank, resulting id). */
struct pairmap {
	struct pair_ent *ents;
	size_t cap, n;
};
int pairmap_put(struct pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
int pairmap_get(const struct pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);
void pairmap_free(struct pairmap *m);

/* ---- UTF-8 (tok_utf8.c) ---- */

/* Length of the valid character at s (1..4) or 0 if ill-formed there. */
size_t utf8_valid_len(const unsigned char *s, size_t n);
/* Copies s into out, each maximal ill-formed subpart replaced by U+FFFD
 * (Python's decode('utf-8', 'replace'), Rust's from_utf8_lossy). */
int utf8_lossy(const char *s, size_t n, struct tbuf *out);
/* Decodes one character of valid UTF-8; returns its length. */
size_t utf8_next(const char *s, size_t n, uint32_t *cp);
size_t utf8_put(uint32_t cp, char *out);
int uni_is_whitespace(uint32_t cp); /* Unicode White_Space */
/* Byte-level alphabet: byte -> codepoint and back (-1 when none). */
uint32_t bl_byte_to_cp(unsigned char b);
int bl_cp_to_byte(uint32_t cp);

/* ---- regexes (tok_util.c) ---- */

/* GPT-2's word regex, used by ByteLevel(use_regex) and the trainer. */
#define TOK_GPT2_REGEX                                                               \
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|" \
	"\\s+(?!\\S)|\\s+"

/* Compiles an Oniguruma-flavoured pattern (as tokenizers uses) with PCRE2,
 * rewriting \s \w \d so they mean what Oniguruma means.  literal: match the
 * text as is. */
pcre2_code *rx_compile(const char *pat, size_t len, int literal, char *err, size_t n);
/* Next non-empty-after-previous match at or after *pos; 1 found, 0 none,
 * <0 error.  Empty matches right after the previous one are skipped. */
int rx_find(const pcre2_code *rx, const char *s, size_t len, size_t *pos,
	    size_t *prev_end, pcre2_match_data *md, size_t *ms, size_t *me);

/* ---- pipeline pieces ---- */

/* A run of text (id < 0) or an already-found token (id >= 0).  at_start:
 * the piece begins at offset 0 of the original input (Metaspace "first"). */
struct piece {
	const char *s;
	size_t len;
	int32_t id;
	int at_start;
};
struct pieces {
	struct piece *v;
	size_t n, cap;
};
int pieces_push(struct pieces *p, const char *s, size_t len, int32_t id, int at_start);
void pieces_free(struct pieces *p);

enum norm_kind { N_NFC, N_NFD, N_NFKC, N_NFKD, N_PREPEND, N_REPLACE, N_STRIP };
struct norm {
	enum norm_kind kind;
	char *a, *b; /* prepend text; replace pattern text and content */
	size_t alen, blen;
	pcre2_code *rx;
	int left, right;
};

enum split_beh { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum pre_kind { P_BYTELEVEL, P_SPLIT, P_METASPACE, P_DIGITS };
enum prepend_scheme { PS_ALWAYS, PS_FIRST, PS_NEVER };
struct pretok {
	enum pre_kind kind;
	int add_prefix_space, use_regex;
	pcre2_code *rx;
	enum split_beh beh;
	int invert;
	char repl[5];
	size_t repl_len;
	enum prepend_scheme scheme;
	int split;
};

enum dec_kind { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE };
struct dec {
	enum dec_kind kind;
	char *a, *b;
	size_t alen, blen;
	pcre2_code *rx;
	int literal; /* Replace with a String pattern: no regex needed */
	uint32_t ch; /* Strip content, Metaspace replacement */
	int start, stop;
	enum prepend_scheme scheme;
};

struct added {
	char *s, *norm_s; /* content, and content after the normalizer */
	size_t len, norm_len;
	int32_t id;
	int special, normalized, lstrip, rstrip, single_word;
};
/* Added tokens of one kind (normalized or not), by first byte, longest first. */
struct matcher {
	int32_t *idx;
	size_t n;
	uint32_t first[257];
};

struct bpe {
	struct strmap vocab;
	struct pairmap merges;
	int byte_fallback, fuse_unk, ignore_merges;
	int32_t unk_id;
	int32_t byte_ids[256]; /* <0xXX> tokens, -1 when missing */
	char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix */
	size_t prefix_len, suffix_len;
};

#define TOK_MAX_STAGES 16
/* Ids above this are refused at load: real vocabularies are far smaller,
 * and the id tables are sized by the largest id. */
#define TOK_MAX_ID (1 << 24)

struct tok {
	struct arena mem;
	struct bpe bpe;
	struct added *added;
	size_t n_added;
	struct matcher m_raw, m_norm;
	pcre2_code *rx_word; /* \w, only when a token is single_word */
	struct norm norms[TOK_MAX_STAGES];
	int n_norms;
	struct pretok pres[TOK_MAX_STAGES];
	int n_pres;
	struct dec decs[TOK_MAX_STAGES];
	int n_decs, has_decoder;
	int32_t *tpl; /* post-processor template, -2 marks the sequence */
	size_t n_tpl;
	int32_t n_ids;           /* 1 + largest id */
	const char **id_s;       /* id -> piece (added tokens first) */
	uint32_t *id_len;
	uint8_t *id_special;
	int bos, eos, add_bos;
};

/* tok_load_parts.c: tokenizer.json sections -> the structs above. */
int load_normalizer(struct tok *t, const void *json, char *err, size_t n);
int load_pretokenizer(struct tok *t, const void *json, char *err, size_t n);
int load_decoder(struct tok *t, const void *json, char *err, size_t n);
int load_postprocessor(struct tok *t, const void *json, char *err, size_t n);
int load_bpe(struct tok *t, const void *json, char *err, size_t n);

/* tok_norm.c / tok_pretok.c / tok_bpe.c */
int norm_apply(const struct tok *t, const char *s, size_t len, struct tbuf *out);
/* Runs the pre-tokenizers over the text pieces of *p (replacing it); new
 * text is allocated from mem. */
int pretok_apply(const struct tok *t, struct pieces *p, struct arena *mem);
/* Reused between the words of one encode. */
struct bpe_scratch {
	struct sym *sy;
	size_t n_sy, cap_sy;
	struct mrg *hp;
	size_t n_hp, cap_hp;
};
/* Appends the int32 ids of one word to ids. */
int bpe_word(const struct bpe *b, const char *w, size_t len, struct bpe_scratch *sc,
	     struct tbuf *ids);
void bpe_scratch_free(struct bpe_scratch *sc);
int added_split(const struct tok *t, const struct matcher *m, int normalized,
		const struct piece *in, struct pieces *out);
int matcher_build(struct tok *t, struct matcher *m, int normalized);
int rx_replace(const pcre2_code *rx, const char *s, size_t len, const char *rep,
	       size_t rep_len, struct tbuf *out);
/* The same for a non-empty literal pattern, without a match context. */
int lit_replace(const char *pat, size_t pat_len, const char *s, size_t len, const char *rep,
		size_t rep_len, struct tbuf *out);

/* tok_decode.c */
void *dec_scratch_new(void);
void dec_scratch_free(void *s);
int decode_into(const struct tok *t, const int32_t *ids, size_t n, int skip_special,
		void *scratch, const char **text, size_t *len);

#define TOK_ERR(err, n, ...) (snprintf((err), (n), __VA_ARGS__))

#endif
