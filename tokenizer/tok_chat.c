/* Chat templates.  moed runs no Jinja: it knows a few templates by their
 * exact text and renders those in C, byte for byte what transformers'
 * apply_chat_template gives; any other template is refused. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/tok_internal.h"

#define CHATML_BODY                                                                        \
	"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "  \
	"'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"  \
	"{% endif %}"

/* The template strings as tokenizer_config.json holds them (after JSON
 * unescaping: the \n are Jinja escapes, two characters). */
static const struct known {
	enum tok_chat kind;
	const char *text;
} known[] = {
	{ TOK_CHAT_CHATML, "{% for message in messages %}" CHATML_BODY },
	{ TOK_CHAT_CHATML_QWEN,
	  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
	  "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
	  CHATML_BODY },
	{ TOK_CHAT_INST,
	  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
	  "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
	  "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
	  "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
	  "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
	  "user and assistant roles are supported!') }}{% endif %}{% endfor %}" },
};

const char *tok_chat_template(enum tok_chat kind)
{
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].kind == kind)
			return known[i].text;
	return NULL;
}

static const char *token_text(json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "content");
	return json_string_value(v);
}

/* chat_template: a string, or a list of {name, template} ("default"); or
 * else chat_template.jinja beside the config (newer transformers). */
static char *template_of(json_t *cfg, const char *cfg_path)
{
	json_t *ct = json_object_get(cfg, "chat_template"), *e;
	const char *slash = strrchr(cfg_path, '/');
	char path[4096];
	size_t i;
	FILE *f;
	char *buf;
	long len;

	if (json_is_string(ct))
		return strdup(json_string_value(ct));
	json_array_foreach(ct, i, e) {
		if (!strcmp(json_string_value(json_object_get(e, "name")) ?: "", "default") &&
		    json_is_string(json_object_get(e, "template")))
			return strdup(json_string_value(json_object_get(e, "template")));
	}
	snprintf(path, sizeof(path), "%.*s%schat_template.jinja",
		 slash ? (int)(slash - cfg_path) : 0, cfg_path, slash ? "/" : "");
	if (!(f = fopen(path, "rb")))
		return NULL;
	buf = fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ? NULL : malloc((size_t)len + 1);
	if (buf) {
		rewind(f);
		buf[fread(buf, 1, (size_t)len, f)] = '\0';
	}
	fclose(f);
	return buf;
}

/* Exact match, give or take surrounding whitespace. */
static int same_template(const char *tpl, const char *known_text)
{
	size_t a = 0, e = strlen(tpl), k = strlen(known_text);

	while (a < e && strchr(" \t\r\n", tpl[a]))
		a++;
	while (e > a && strchr(" \t\r\n", tpl[e - 1]))
		e--;
	return e - a == k && !memcmp(tpl + a, known_text, k);
}

int tok_chat_detect(const char *cfg_path, enum tok_chat *kind, char *err, size_t n)
{
	json_error_t je;
	json_t *cfg = json_load_file(cfg_path, 0, &je);
	char *tpl;
	int rc = -ENOTSUP;

	if (!cfg) {
		TOK_ERR(err, n, "%s: %s", cfg_path, je.text);
		return access(cfg_path, F_OK) ? -ENOENT : -EINVAL;
	}
	if (!(tpl = template_of(cfg, cfg_path))) {
		TOK_ERR(err, n, "%s: no chat_template", cfg_path);
		json_decref(cfg);
		return -ENOENT;
	}
	TOK_ERR(err, n, "%s: chat_template \"%.40s...\" is not one moed renders "
		"(ChatML, Qwen2 ChatML, Mistral [INST])", cfg_path, tpl);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (!same_template(tpl, known[i].text))
			continue;
		*kind = known[i].kind;
		rc = 0;
		/* rendered with <s> and </s>: anything else would be wrong */
		if (*kind == TOK_CHAT_INST &&
		    (strcmp(token_text(json_object_get(cfg, "bos_token")) ?: "", "<s>") ||
		     strcmp(token_text(json_object_get(cfg, "eos_token")) ?: "", "</s>"))) {
			TOK_ERR(err, n, "%s: [INST] template with bos/eos other than <s> </s>",
				cfg_path);
			rc = -ENOTSUP;
		}
		break;
	}
	if (!rc && n)
		err[0] = '\0';
	free(tpl);
	json_decref(cfg);
	return rc;
}

static int put_s(struct tbuf *b, const char *s)
{
	return tbuf_put(b, s, strlen(s));
}

static int render_chatml(int qwen, const struct tok_msg *m, size_t n, int agp, struct tbuf *b)
{
	int rc = put_s(b, "");

	for (size_t i = 0; i < n && !rc; i++) {
		if (qwen && i == 0 && strcmp(m[0].role, "system"))
			rc = put_s(b, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
		if (!rc && !(rc = put_s(b, "<|im_start|>")) && !(rc = put_s(b, m[i].role)) &&
		    !(rc = put_s(b, "\n")) && !(rc = put_s(b, m[i].content)))
			rc = put_s(b, "<|im_end|>\n");
	}
	if (!rc && agp)
		rc = put_s(b, "<|im_start|>assistant\n");
	return rc;
}

static int render_inst(const struct tok_msg *m, size_t n, struct tbuf *b, char *err, size_t errn)
{
	int rc = put_s(b, "<s>");

	for (size_t i = 0; i < n && !rc; i++) {
		int user = !strcmp(m[i].role, "user");

		if (user != (i % 2 == 0)) {
			TOK_ERR(err, errn, "Conversation roles must alternate "
				"user/assistant/user/assistant/...");
			return -EINVAL;
		}
		if (user) {
			if (!(rc = put_s(b, "[INST] ")) && !(rc = put_s(b, m[i].content)))
				rc = put_s(b, " [/INST]");
		} else if (!strcmp(m[i].role, "assistant")) {
			if (!(rc = put_s(b, m[i].content)))
				rc = put_s(b, "</s>");
		} else {
			TOK_ERR(err, errn, "Only user and assistant roles are supported!");
			return -EINVAL;
		}
	}
	return rc;
}

int tok_chat_render(enum tok_chat kind, const struct tok_msg *msgs, size_t n,
		    int add_generation_prompt, char **out, char *err, size_t errn)
{
	struct tbuf b = { 0 };
	int rc;

	*out = NULL;
	if (errn)
		err[0] = '\0';
	if (!n) { /* transformers 5 refuses these too */
		TOK_ERR(err, errn, "Cannot apply chat template to an empty conversation. "
			"Provide at least one message.");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].role || !msgs[i].content) {
			TOK_ERR(err, errn, "message %zu: role and content are required", i);
			return -EINVAL;
		}
	}
	switch (kind) {
	case TOK_CHAT_CHATML:
	case TOK_CHAT_CHATML_QWEN:
		rc = render_chatml(kind == TOK_CHAT_CHATML_QWEN, msgs, n, add_generation_prompt, &b);
		break;
	case TOK_CHAT_INST:
		rc = render_inst(msgs, n, &b, err, errn);
		break;
	default:
		TOK_ERR(err, errn, "unknown chat template kind %d", (int)kind);
		rc = -EINVAL;
	}
	if (rc) {
		if (rc == -ENOMEM)
			TOK_ERR(err, errn, "out of memory");
		tbuf_free(&b);
		return rc;
	}
	*out = b.p;
	return 0;
}
