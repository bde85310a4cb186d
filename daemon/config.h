/* moed's configuration: one schema of dotted keys shared by every subcommand.
 *
 * Sources, in order: defaults, the JSON file (--config FILE; nested objects,
 * {"model": {"path": "..."}}), then --set key=value and the shorthand flags
 * (--model DIR = --set model.path=DIR) in command-line order.  Validation is
 * strict: an unknown key, a wrong type or an out-of-range value is an error
 * whose message names the key.  conf/README.md documents every key.
 *
 * Strings are stored inline (fixed capacity), so a struct moed_config can be
 * copied by assignment and needs no freeing. */
#ifndef DAEMON_CONFIG_H
#define DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CFG_PATH_MAX 4096          /* capacity of path keys, NUL included */
#define CFG_NAME_MAX 256           /* capacity of other string keys */

enum cfg_backend { CFG_BACKEND_HOST = 0, CFG_BACKEND_CUDA = 1, CFG_BACKEND_XRT = 2 };
/* Same numbers as enum cache_policy in loader/cache.h. */
enum cfg_policy {
	CFG_POLICY_FIFO = 0, CFG_POLICY_LRU = 1, CFG_POLICY_LFU = 2, CFG_POLICY_LFUDA = 3,
};
enum cfg_predictor {
	CFG_PRED_NONE = 0, CFG_PRED_ORACLE = 1, CFG_PRED_FREQ = 2, CFG_PRED_CEPR = 3,
};
enum cfg_mode { CFG_MODE_EXACT = 0, CFG_MODE_TRUST = 1 };
enum cfg_log_level {
	CFG_LOG_DEBUG = 0, CFG_LOG_INFO = 1, CFG_LOG_WARNING = 2, CFG_LOG_ERROR = 3,
};

/* Field names mirror the keys: model.path is c->model.path. */
struct moed_config {
	struct {
		char path[CFG_PATH_MAX];
		char pack[CFG_PATH_MAX];          /* "": <model.path>/moed.pack */
		int max_ctx;
	} model;
	struct {
		char listen[CFG_NAME_MAX];        /* host:port, [v6]:port */
		int max_body_bytes;
		int max_header_bytes;
		int max_headers;
		double request_timeout_s;
		double idle_timeout_s;
	} http;
	struct {
		char token_file[CFG_PATH_MAX];
	} auth;
	struct {
		enum cfg_backend backend;
		int index;
		char xclbin[CFG_PATH_MAX];
		char kernel[CFG_NAME_MAX];
		int host_threads;                 /* 0: every miss loads; -1: rt_host_threads */
	} device;
	struct {
		double budget_mib;                /* 0: every expert resident */
		int slots;                        /* 0: derive from budget_mib */
		enum cfg_policy policy;
		bool scan_resistant;
	} cache;
	struct {
		enum cfg_predictor kind;
		enum cfg_mode mode;
		int wait_ms;
		char state_file[CFG_PATH_MAX];
		int cepr_m;
		int prefetch_k;
		char trace_file[CFG_PATH_MAX];
		bool learn;
	} predictor;
	struct {
		int max_tokens;
		int max_wait_us;
		int max_queue;
		int prefill_chunks;               /* 0: a batch's prefill in one call; -1: auto */
	} batch;
	struct {
		double drain_s;
	} shutdown;
	struct {
		int max_restarts;
		double window_s;
	} supervisor;
	struct {
		char dir[CFG_PATH_MAX];           /* "": $RUNTIME_DIRECTORY or /tmp/moed-<uid> */
	} runtime;
	struct {
		enum cfg_log_level level;
	} log;
};

/* Every error below returns a negative errno (-EINVAL for bad input, -ENOENT
 * etc. for files) and writes one line, naming the source and the key, to err
 * (err may be NULL).  On error c may be partly updated. */

void cfg_defaults(struct moed_config *c);
/* Applies the JSON file at path on top of c.  Errors: "config PATH: ...";
 * malformed JSON gives "config PATH:LINE:COLUMN: <parser message>". */
int cfg_load_file(struct moed_config *c, const char *path, char *err, size_t n);
/* "key=value"; the value is parsed per the key's type. */
int cfg_set(struct moed_config *c, const char *key_eq_value, char *err, size_t n);
int cfg_set_kv(struct moed_config *c, const char *key, const char *value,
	       char *err, size_t n);

/* Parses a command line (argv[0] is not skipped: pass argc-1, argv+1 for a
 * subcommand's own options).  Every --config FILE (or --config=FILE) is
 * applied first, in order, wherever it appears; then --set k=v and the
 * shorthand flags (--model, --listen, --backend, --device, --budget-mib,
 * --slots, --policy, --predictor, --mode, --max-ctx; also --flag=value) in
 * order.  Any other argument goes to other(ctx, argc_left, argv_at), which
 * returns how many entries it consumed (>= 1) or a negative value for an
 * unknown or bad flag (cfg_parse_args then fails naming it).  other may be
 * NULL: every other argument is then an error.  other is called in argument
 * order, before the --set values are applied. */
int cfg_parse_args(struct moed_config *c, int argc, char **argv,
		   int (*other)(void *ctx, int argc, char **argv), void *ctx,
		   char *err, size_t n);

/* The effective configuration as nested JSON (loadable by cfg_load_file). */
int cfg_dump_json(const struct moed_config *c, FILE *f);
/* Key, type, default, range or values, and a one-line doc, for --help. */
void cfg_print_keys(FILE *f);
/* The shorthand flags and the keys they set, for --help. */
void cfg_print_flags(FILE *f);
/* Nothing to free (strings are inline); kept so callers need not know. */
void cfg_free(struct moed_config *c);

/* The name of an enum key's value ("lru" for cache.policy 1); NULL if key is
 * not an enum key or v is out of range. */
const char *cfg_enum_name(const char *key, int v);
/* Splits http.listen: "127.0.0.1:8080" -> "127.0.0.1", 8080; "[::1]:0" ->
 * "::1", 0.  -EINVAL if malformed, -ENAMETOOLONG if host does not fit. */
int cfg_split_listen(const char *listen, char *host, size_t hn, int *port);
/* model.pack, or <model.path>/moed.pack when it is empty. */
int cfg_pack_path(const struct moed_config *c, char *buf, size_t n);
/* runtime.dir, or $RUNTIME_DIRECTORY, or /tmp/moed-<uid>. */
int cfg_runtime_dir(const struct moed_config *c, char *buf, size_t n);

#endif
