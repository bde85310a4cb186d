/* Tokenizer: reads a Hugging Face tokenizer.json (BPE model, byte-level or
 * SentencePiece-style with byte fallback), encodes and decodes exactly as HF
 * tokenizers does, streams decoded text without ever splitting a UTF-8
 * character, renders the chat templates we recognise, and trains a tiny
 * byte-level BPE for synthetic models.
 *
 * Input text that is not valid UTF-8 is first repaired the way Python's
 * bytes.decode('utf-8', 'replace') does it: each maximal ill-formed subpart
 * becomes one U+FFFD.  Encoding then proceeds on the repaired string.
 *
 * Functions return 0 or a negative errno; error text goes to err[n]. */
#ifndef TOKENIZER_TOK_H
#define TOKENIZER_TOK_H

#include <stddef.h>
#include <stdint.h>

struct tok;

/* Loads tokenizer.json; also reads tokenizer_config.json beside it when
 * present (bos_token, eos_token, add_bos_token).  An unsupported model,
 * normalizer, pre-tokenizer, post-processor or decoder is refused with a
 * message naming it (-ENOTSUP). */
int tok_open(const char *tokenizer_json_path, struct tok **out, char *err, size_t n);
void tok_close(struct tok *t);

/* Text -> ids.  add_special applies the post-processor (e.g. Llama's <s>).
 * Added/special tokens written in the text are always matched.  *ids is
 * malloc'd (free it); an empty text gives *n == 0 and *ids may be NULL. */
int tok_encode(const struct tok *t, const char *text, size_t len, int add_special,
	       int32_t **ids, size_t *n);
/* Ids -> text (malloc'd, NUL-terminated, *len excludes the NUL).  Unknown ids
 * are skipped, as HF does; skip_special drops special added tokens. */
int tok_decode(const struct tok *t, const int32_t *ids, size_t n, int skip_special,
	       char **text, size_t *len);

/* 1 + the largest id of the model or of an added token. */
int tok_vocab_size(const struct tok *t);
/* Id of a piece (added tokens first, then the model vocabulary), or -1. */
int tok_token_id(const struct tok *t, const char *piece);
/* Raw piece of an id as stored in tokenizer.json ("Ġthe", "▁the", "<s>"),
 * NULL if the id has none. */
const char *tok_piece(const struct tok *t, int32_t id);
int tok_is_special(const struct tok *t, int32_t id);
/* From tokenizer_config.json; without one, eos falls back to the special
 * token "</s>" or "<|endoftext|>" if present.  -1 when unknown. */
int tok_bos_id(const struct tok *t);
int tok_eos_id(const struct tok *t);
int tok_add_bos(const struct tok *t); /* add_bos_token, 0 if absent */

/* Streaming decode, HF DecodeStream semantics: a push returns the new text
 * that the ids so far settle (possibly empty), never a partial character; a
 * flush returns whatever is still held back.  *piece points into the stream
 * and stays valid until the next call on it.  Where HF raises InvalidPrefix
 * (invalid byte-fallback bytes swallowing text already sent), moed drops as
 * many characters as it had sent and goes on.  Fields are private. */
struct tok_stream {
	int skip_special;
	int32_t *ids;
	size_t n_ids, cap_ids, prefix_index;
	char *prefix, *chunk;
	size_t prefix_len, prefix_cap, chunk_cap;
	void *scratch; /* decode buffers, reused between pushes */
};
void tok_stream_init(struct tok_stream *st, int skip_special);
int tok_stream_push(const struct tok *t, struct tok_stream *st, int32_t id,
		    const char **piece, size_t *len);
int tok_stream_flush(const struct tok *t, struct tok_stream *st,
		     const char **piece, size_t *len);
/* Forgets the ids but keeps the buffers, for the next request. */
void tok_stream_reset(struct tok_stream *st);
void tok_stream_free(struct tok_stream *st);

/* Chat templates.  Only templates we render byte-exactly are recognised;
 * any other template gives -ENOTSUP (the API answers 400). */
enum tok_chat {
	TOK_CHAT_CHATML = 1,      /* <|im_start|>role\ncontent<|im_end|>\n */
	TOK_CHAT_CHATML_QWEN = 2, /* ChatML + default system prompt (Qwen2) */
	TOK_CHAT_INST = 3,        /* <s>[INST] u [/INST]a</s> (Mistral/Mixtral) */
};
struct tok_msg {
	const char *role;
	const char *content;
};
/* Reads chat_template from tokenizer_config.json (or chat_template.jinja
 * beside it).  -ENOENT: no config or no template; -EINVAL: config not
 * JSON; -ENOTSUP: a template we do not render. */
int tok_chat_detect(const char *tokenizer_config_json_path, enum tok_chat *kind,
		    char *err, size_t n);
/* Renders like transformers' apply_chat_template(tokenize=False).  Inputs
 * it would reject (roles out of order, no messages) give -EINVAL with its
 * message in err. */
int tok_chat_render(enum tok_chat kind, const struct tok_msg *msgs, size_t n,
		    int add_generation_prompt, char **out, char *err, size_t errn);

/* Trains a byte-level BPE (GPT-2 regex, ByteLevel decoder) of vocab_size
 * tokens, the last being <|endoftext|>, and writes an HF tokenizer.json. */
int tok_train_bytelevel(const char *corpus, size_t len, int vocab_size,
			const char *out_json_path, char *err, size_t n);
/* The same with these special tokens (added tokens, never split) as the
 * last ids, in order, instead of <|endoftext|> alone. */
int tok_train_bytelevel_ex(const char *corpus, size_t len, int vocab_size,
			   const char *const *specials, int n_specials,
			   const char *out_json_path, char *err, size_t n);
/* The template text moed recognises for kind (for writing a
 * tokenizer_config.json). */
const char *tok_chat_template(enum tok_chat kind);

#endif
