/* moed's configuration: the schema table, strict setters, the JSON file and
 * the output; the command line is in config_args.c. */
#include "daemon/config.h"
#include "daemon/config_int.h"
#include "loader/errfmt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

enum ktype { K_STRING, K_INT, K_NUMBER, K_BOOL, K_ENUM };

static const char *const type_names[] = {"string", "int", "number", "bool", "enum"};

struct key {
	const char *name;
	enum ktype type;
	size_t off;
	size_t size;                  /* K_STRING: capacity */
	const char *def;              /* default, as --set would write it */
	double min, max;              /* K_INT, K_NUMBER */
	const char *const *values;    /* K_ENUM: NULL-terminated */
	int (*check)(const char *v);  /* K_STRING: extra syntax check */
	const char *doc;
};

_Static_assert(sizeof(enum cfg_backend) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum cfg_policy) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum cfg_predictor) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum cfg_mode) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum cfg_log_level) == sizeof(int), "enum keys are stored as int");

static const char *const backends[] = {"host", "cuda", "xrt", NULL};
static const char *const policies[] = {"fifo", "lru", "lfu", "lfuda", NULL};
static const char *const predictors[] = {"none", "oracle", "freq", "cepr", NULL};
static const char *const modes[] = {"exact", "trust", NULL};
static const char *const levels[] = {"debug", "info", "warning", "error", NULL};

static int check_listen(const char *v)
{
	char host[CFG_NAME_MAX];
	int port;

	return cfg_split_listen(v, host, sizeof(host), &port);
}

#define OFF(f) offsetof(struct moed_config, f)
#define SZ(f) sizeof(((struct moed_config *)0)->f)
#define STR(k, f, d, doc) {k, K_STRING, OFF(f), SZ(f), d, 0, 0, NULL, NULL, doc}
#define STRC(k, f, d, chk, doc) {k, K_STRING, OFF(f), SZ(f), d, 0, 0, NULL, chk, doc}
#define INT(k, f, d, lo, hi, doc) {k, K_INT, OFF(f), 0, #d, lo, hi, NULL, NULL, doc}
#define NUM(k, f, d, lo, hi, doc) {k, K_NUMBER, OFF(f), 0, #d, lo, hi, NULL, NULL, doc}
#define BOOL(k, f, d, doc) {k, K_BOOL, OFF(f), 0, #d, 0, 0, NULL, NULL, doc}
#define ENUM(k, f, d, vals, doc) {k, K_ENUM, OFF(f), 0, d, 0, 0, vals, NULL, doc}

/* Sections must stay contiguous: cfg_dump_json and the docs follow this order. */
static const struct key keys[] = {
	STR("model.path", model.path, "",
	    "model directory (HF checkpoint: config.json + safetensors)"),
	STR("model.pack", model.pack, "",
	    "expert store built by moed pack; empty: <model.path>/moed.pack"),
	INT("model.max_ctx", model.max_ctx, 4096, 1, 1048576,
	    "most tokens per sequence (prompt + generated); sizes the KV cache"),
	STRC("http.listen", http.listen, "127.0.0.1:8080", check_listen,
	     "HTTP address: host:port or [v6addr]:port; port 0 picks a free port"),
	INT("http.max_body_bytes", http.max_body_bytes, 1048576, 1024, 1073741824,
	    "largest request body; a larger one gets 413"),
	INT("http.max_header_bytes", http.max_header_bytes, 16384, 1024, 1048576,
	    "largest request line + header block; a larger one is rejected"),
	INT("http.max_headers", http.max_headers, 100, 1, 10000,
	    "most header fields in one request; more are rejected"),
	NUM("http.request_timeout_s", http.request_timeout_s, 60, 0.001, 86400,
	    "time to receive a whole request; past it 408"),
	NUM("http.idle_timeout_s", http.idle_timeout_s, 30, 0.001, 86400,
	    "an idle keep-alive connection is closed after this"),
	STR("auth.token_file", auth.token_file, "",
	    "file holding the bearer token clients must send; empty: no auth"),
	ENUM("device.backend", device.backend, "host", backends,
	     "fast tier of the expert cache: host RAM, a CUDA GPU or an XRT FPGA"),
	INT("device.index", device.index, 0, 0, 64,
	    "which GPU or FPGA (cuda, xrt)"),
	STR("device.xclbin", device.xclbin, "",
	    "xrt: the FPGA binary holding the expert kernel"),
	STR("device.kernel", device.kernel, "moe_expert",
	    "xrt: kernel name inside the xclbin"),
	INT("device.host_threads", device.host_threads, -1, -1, 256,
	    "cuda, bf16: CPU threads computing half of a decode step's missed experts; "
	    "0: none; -1: the CPUs less 4, at most 12, and none where that is below 8"),
	NUM("cache.budget_mib", cache.budget_mib, 0, 0, 16777216,
	    "fast-memory budget for experts in MiB; 0: every expert resident"),
	INT("cache.slots", cache.slots, 0, 0, 16777216,
	    "expert slots; > 0 overrides cache.budget_mib; 0: use the budget"),
	ENUM("cache.policy", cache.policy, "lru", policies,
	     "eviction policy of the expert cache"),
	BOOL("cache.scan_resistant", cache.scan_resistant, true,
	     "a prefill chunk's loads are evicted first, so a long prompt keeps decode's experts"),
	ENUM("predictor.kind", predictor.kind, "freq", predictors,
	     "which predictor builds the expert tables"),
	ENUM("predictor.mode", predictor.mode, "exact", modes,
	     "exact: router decides, predictions only prefetch; trust: predictions replace the router"),
	INT("predictor.wait_ms", predictor.wait_ms, 5, 0, 60000,
	    "how long the worker waits for a batch's table before loading on demand"),
	STR("predictor.state_file", predictor.state_file, "",
	    "learned tables are loaded from and saved to this file; empty: in memory only"),
	INT("predictor.cepr_m", predictor.cepr_m, 2, 1, 8,
	    "cepr: how many previous layers an activation path holds"),
	INT("predictor.prefetch_k", predictor.prefetch_k, 0, 0, 65535,
	    "decode: experts prefetched for a token's next layer; 0: the model's top-k"),
	STR("predictor.trace_file", predictor.trace_file, "",
	    "oracle: the routing trace to replay"),
	BOOL("predictor.learn", predictor.learn, true,
	     "learn online from the routing the worker reports"),
	INT("batch.max_tokens", batch.max_tokens, 2048, 1, 1048576,
	    "most tokens in one batch"),
	INT("batch.max_wait_us", batch.max_wait_us, 2000, 0, 10000000,
	    "how long the batcher waits for more requests to fill a batch"),
	INT("batch.prefill_chunks", batch.prefill_chunks, -1, -1, 1024,
	    "while sequences run, a batch's prefill runs this many 512-token chunks a call, a decode step between; 0: one call; -1: 8 on cuda at a budget, else 1"),
	INT("batch.max_queue", batch.max_queue, 256, 1, 1000000,
	    "most requests waiting; beyond it 429"),
	NUM("shutdown.drain_s", shutdown.drain_s, 30, 0, 3600,
	    "on SIGTERM, time given to requests in flight before they are cut"),
	INT("supervisor.max_restarts", supervisor.max_restarts, 5, 0, 1000000,
	    "child restarts allowed within supervisor.window_s before serve exits"),
	NUM("supervisor.window_s", supervisor.window_s, 60, 1, 86400,
	    "the window for supervisor.max_restarts"),
	STR("runtime.dir", runtime.dir, "",
	    "sockets and shared memory; empty: $RUNTIME_DIRECTORY or /tmp/moed-<uid>"),
	ENUM("log.level", log.level, "info", levels,
	     "least severe message logged"),
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Puts pre in front of the message already in err. */
void cfg_err_prefix(char *err, size_t n, const char *pre)
{
	char tmp[1024];

	if (!err || !n)
		return;
	snprintf(tmp, sizeof(tmp), "%s", err);
	snprintf(err, n, "%s%s", pre, tmp);
}

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

/* True if name is a section: some key starts with "name.". */
static bool is_section(const char *name)
{
	size_t l = strlen(name);

	for (size_t i = 0; i < N_KEYS; i++)
		if (!strncmp(keys[i].name, name, l) && keys[i].name[l] == '.')
			return true;
	return false;
}

static void *field(struct moed_config *c, const struct key *k)
{
	return (char *)c + k->off;
}

static const void *cfield(const struct moed_config *c, const struct key *k)
{
	return (const char *)c + k->off;
}

static void enum_list(const struct key *k, char *buf, size_t n)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; k->values[i] && used < n; i++)
		used += snprintf(buf + used, n - used, "%s%s", i ? "|" : "", k->values[i]);
}

/* ---- typed setters: validate, then store; messages name the key ---- */

static int set_string(struct moed_config *c, const struct key *k, const char *v,
		      size_t len, char *err, size_t n)
{
	json_t *utf8;

	if (strlen(v) != len) {
		ld_errf(err, n, "key '%s': value contains a NUL byte", k->name);
		return -EINVAL;
	}
	if (len >= k->size) {
		ld_errf(err, n, "key '%s': value too long (%zu bytes, at most %zu)",
		        k->name, len, k->size - 1);
		return -ENAMETOOLONG;
	}
	utf8 = json_stringn(v, len);   /* NULL if not UTF-8: could not be dumped */
	if (!utf8) {
		ld_errf(err, n, "key '%s': value is not valid UTF-8", k->name);
		return -EINVAL;
	}
	json_decref(utf8);
	if (k->check && k->check(v) < 0) {
		ld_errf(err, n, "key '%s': value '%s' is not host:port", k->name, v);
		return -EINVAL;
	}
	memset(field(c, k), 0, k->size);
	memcpy(field(c, k), v, len);
	return 0;
}

static int set_int(struct moed_config *c, const struct key *k, long long v,
		   char *err, size_t n)
{
	if (v < (long long)k->min || v > (long long)k->max) {
		ld_errf(err, n, "key '%s': value %lld out of range %.0f..%.0f",
		        k->name, v, k->min, k->max);
		return -ERANGE;
	}
	*(int *)field(c, k) = (int)v;
	return 0;
}

static int set_number(struct moed_config *c, const struct key *k, double v,
		      char *err, size_t n)
{
	if (!isfinite(v) || v < k->min || v > k->max) {
		ld_errf(err, n, "key '%s': value %.15g out of range %.15g..%.15g",
		        k->name, v, k->min, k->max);
		return -ERANGE;
	}
	*(double *)field(c, k) = v;
	return 0;
}

static int set_enum(struct moed_config *c, const struct key *k, const char *v,
		    char *err, size_t n)
{
	char list[256];

	for (int i = 0; k->values[i]; i++) {
		if (!strcmp(k->values[i], v)) {
			*(int *)field(c, k) = i;
			return 0;
		}
	}
	enum_list(k, list, sizeof(list));
	ld_errf(err, n, "key '%s': value '%s' is not one of %s", k->name, v, list);
	return -EINVAL;
}

/* ---- text values (--set, defaults) ---- */

/* Only digits, sign, point and exponent: no spaces, hex, inf or nan. */
static bool plain_number(const char *s, bool integer)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++) {
		if (isdigit((unsigned char)*p) || *p == '+' || *p == '-')
			continue;
		if (!integer && (*p == '.' || *p == 'e' || *p == 'E'))
			continue;
		return false;
	}
	return true;
}

static int parse_int(struct moed_config *c, const struct key *k, const char *v,
		     char *err, size_t n)
{
	char *end = (char *)v;
	long long x = 0;

	errno = 0;
	if (plain_number(v, true))
		x = strtoll(v, &end, 10);
	if (end == v || *end) {
		ld_errf(err, n, "key '%s': '%s' is not an int", k->name, v);
		return -EINVAL;
	}
	if (errno == ERANGE) {
		ld_errf(err, n, "key '%s': value %s out of range %.0f..%.0f",
		        k->name, v, k->min, k->max);
		return -ERANGE;
	}
	return set_int(c, k, x, err, n);
}

static int parse_number(struct moed_config *c, const struct key *k, const char *v,
			char *err, size_t n)
{
	char *end = (char *)v;
	double x = 0;

	errno = 0;
	if (plain_number(v, false))
		x = strtod(v, &end);
	if (end == v || *end) {
		ld_errf(err, n, "key '%s': '%s' is not a number", k->name, v);
		return -EINVAL;
	}
	if (errno == ERANGE && isinf(x)) {
		ld_errf(err, n, "key '%s': value %s out of range %.15g..%.15g",
		        k->name, v, k->min, k->max);
		return -ERANGE;
	}
	return set_number(c, k, x, err, n);
}

static int set_text(struct moed_config *c, const struct key *k, const char *v,
		    char *err, size_t n)
{
	switch (k->type) {
	case K_STRING:
		return set_string(c, k, v, strlen(v), err, n);
	case K_INT:
		return parse_int(c, k, v, err, n);
	case K_NUMBER:
		return parse_number(c, k, v, err, n);
	case K_BOOL:
		if (strcmp(v, "true") && strcmp(v, "false")) {
			ld_errf(err, n, "key '%s': '%s' is not a bool (true or false)",
			        k->name, v);
			return -EINVAL;
		}
		*(bool *)field(c, k) = !strcmp(v, "true");
		return 0;
	case K_ENUM:
		return set_enum(c, k, v, err, n);
	}
	return -EINVAL;
}

void cfg_defaults(struct moed_config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < N_KEYS; i++) {
		int rc = set_text(c, &keys[i], keys[i].def, NULL, 0);

		/* Defaults are constants; test_config checks each one passes. */
		if (rc < 0)
			abort();
	}
}

int cfg_set_kv(struct moed_config *c, const char *key, const char *value,
	       char *err, size_t n)
{
	const struct key *k = find_key(key);

	if (!k) {
		ld_errf(err, n, "unknown key '%s'", key);
		return -EINVAL;
	}
	return set_text(c, k, value, err, n);
}

int cfg_set(struct moed_config *c, const char *key_eq_value, char *err, size_t n)
{
	const char *eq = strchr(key_eq_value, '=');
	char key[128];

	if (!eq) {
		ld_errf(err, n, "'%s': expected key=value", key_eq_value);
		return -EINVAL;
	}
	if ((size_t)(eq - key_eq_value) >= sizeof(key)) {
		ld_errf(err, n, "unknown key '%.*s'", (int)(eq - key_eq_value), key_eq_value);
		return -EINVAL;
	}
	memcpy(key, key_eq_value, eq - key_eq_value);
	key[eq - key_eq_value] = '\0';
	return cfg_set_kv(c, key, eq + 1, err, n);
}

/* ---- the JSON file ---- */

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "int";
	case JSON_REAL: return "number";
	case JSON_TRUE: case JSON_FALSE: return "bool";
	case JSON_NULL: return "null";
	}
	return "?";
}

static int set_json(struct moed_config *c, const struct key *k, json_t *v,
		    char *err, size_t n)
{
	bool ok = (k->type == K_STRING && json_is_string(v)) ||
		  (k->type == K_ENUM && json_is_string(v)) ||
		  (k->type == K_INT && json_is_integer(v)) ||
		  (k->type == K_NUMBER && json_is_number(v)) ||
		  (k->type == K_BOOL && json_is_boolean(v));

	if (!ok) {
		ld_errf(err, n, "key '%s': expected %s, got %s", k->name,
		        type_names[k->type], json_type_name(v));
		return -EINVAL;
	}
	switch (k->type) {
	case K_STRING:
		return set_string(c, k, json_string_value(v), json_string_length(v), err, n);
	case K_ENUM:
		return set_enum(c, k, json_string_value(v), err, n);
	case K_INT:
		return set_int(c, k, json_integer_value(v), err, n);
	case K_NUMBER:
		return set_number(c, k, json_number_value(v), err, n);
	case K_BOOL:
		*(bool *)field(c, k) = json_is_true(v);
		return 0;
	}
	return -EINVAL;
}

/* Applies every member of obj; sect is the dotted path of obj ("" at top). */
static int walk(struct moed_config *c, json_t *obj, const char *sect,
		char *err, size_t n)
{
	const char *name;
	json_t *v;
	char path[256];
	const struct key *k;
	int rc;

	json_object_foreach(obj, name, v) {
		snprintf(path, sizeof(path), "%s%s%s", sect, *sect ? "." : "", name);
		if (!*name || strchr(name, '.')) {
			ld_errf(err, n, "unknown key '%s' (keys are nested objects, not dotted names)",
			        path);
			return -EINVAL;
		}
		if ((k = find_key(path))) {
			rc = set_json(c, k, v, err, n);
		} else if (is_section(path)) {
			if (!json_is_object(v)) {
				ld_errf(err, n, "key '%s': expected object, got %s",
				        path, json_type_name(v));
				return -EINVAL;
			}
			rc = walk(c, v, path, err, n);
		} else {
			ld_errf(err, n, "unknown key '%s'", path);
			return -EINVAL;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

int cfg_load_file(struct moed_config *c, const char *path, char *err, size_t n)
{
	json_error_t je;
	json_t *root;
	char pre[CFG_PATH_MAX + 16];
	FILE *f;
	int rc;

	f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		ld_errf(err, n, "config %s: %s", path, strerror(-rc));
		return rc;
	}
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	fclose(f);
	if (!root) {
		ld_errf(err, n, "config %s:%d:%d: %s", path, je.line, je.column, je.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		ld_errf(err, n, "config %s: top level must be an object, got %s",
		        path, json_type_name(root));
		json_decref(root);
		return -EINVAL;
	}
	rc = walk(c, root, "", err, n);
	json_decref(root);
	if (rc < 0) {
		snprintf(pre, sizeof(pre), "config %s: ", path);
		cfg_err_prefix(err, n, pre);
	}
	return rc;
}

/* ---- output ---- */

static json_t *value_json(const struct moed_config *c, const struct key *k)
{
	const void *p = cfield(c, k);
	int e;

	switch (k->type) {
	case K_STRING:
		return json_string(p);
	case K_INT:
		return json_integer(*(const int *)p);
	case K_NUMBER:
		return json_real(*(const double *)p);
	case K_BOOL:
		return json_boolean(*(const bool *)p);
	case K_ENUM:
		e = *(const int *)p;
		return cfg_enum_name(k->name, e) ? json_string(k->values[e]) : NULL;
	}
	return NULL;
}

/* Keys are section.name, two levels. */
int cfg_dump_json(const struct moed_config *c, FILE *f)
{
	json_t *root = json_object(), *sect, *v;
	char name[64];
	const char *dot;
	int rc = -ENOMEM;

	if (!root)
		return -ENOMEM;
	for (size_t i = 0; i < N_KEYS; i++) {
		dot = strchr(keys[i].name, '.');
		snprintf(name, sizeof(name), "%.*s", (int)(dot - keys[i].name), keys[i].name);
		sect = json_object_get(root, name);
		if (!sect && json_object_set_new(root, name, sect = json_object()) < 0)
			goto fail;
		if (!(v = value_json(c, &keys[i]))) {
			rc = -EINVAL;
			goto fail;
		}
		if (json_object_set_new(sect, dot + 1, v) < 0)
			goto fail;
	}
	rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
			JSON_REAL_PRECISION(15)) < 0 || fputc('\n', f) == EOF ? -EIO : 0;
fail:
	json_decref(root);
	return rc;
}

static void range_text(const struct key *k, char *buf, size_t n)
{
	buf[0] = '\0';
	if (k->type == K_INT)
		snprintf(buf, n, "%.0f..%.0f", k->min, k->max);
	else if (k->type == K_NUMBER)
		snprintf(buf, n, "%.15g..%.15g", k->min, k->max);
	else if (k->type == K_BOOL)
		snprintf(buf, n, "true|false");
	else if (k->type == K_ENUM)
		enum_list(k, buf, n);
	else if (k->check)
		snprintf(buf, n, "host:port");
}

void cfg_print_keys(FILE *f)
{
	char def[CFG_NAME_MAX + 2], range[256];

	fprintf(f, "  %-26s %-7s %-17s %s\n", "KEY", "TYPE", "DEFAULT", "RANGE");
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];

		if (k->type == K_STRING)
			snprintf(def, sizeof(def), "\"%s\"", k->def);
		else
			snprintf(def, sizeof(def), "%s", k->def);
		range_text(k, range, sizeof(range));
		if (range[0])
			fprintf(f, "  %-26s %-7s %-17s %s\n", k->name, type_names[k->type],
				def, range);
		else
			fprintf(f, "  %-26s %-7s %s\n", k->name, type_names[k->type], def);
		fprintf(f, "      %s\n", k->doc);
	}
}


void cfg_free(struct moed_config *c)
{
	(void)c;
}

/* ---- helpers for the modules that read the config ---- */

const char *cfg_enum_name(const char *key, int v)
{
	const struct key *k = find_key(key);

	if (!k || k->type != K_ENUM || v < 0)
		return NULL;
	for (int i = 0; k->values[i]; i++)
		if (i == v)
			return k->values[i];
	return NULL;
}
