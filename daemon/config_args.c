/* moed's configuration from the command line (--config, --set and the
 * shorthand flags; any other argument goes to the subcommand), and the
 * helpers that read values for the other modules. */
#include "daemon/config.h"
#include "daemon/config_int.h"
#include "loader/errfmt.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the command line ---- */

struct flag {
	const char *name;
	const char *key;
	const char *meta;
};

static const struct flag flags[] = {
	{"--model", "model.path", "DIR"},
	{"--listen", "http.listen", "HOST:PORT"},
	{"--backend", "device.backend", "host|cuda|xrt"},
	{"--device", "device.index", "N"},
	{"--budget-mib", "cache.budget_mib", "MIB"},
	{"--slots", "cache.slots", "N"},
	{"--policy", "cache.policy", "fifo|lru|lfu|lfuda"},
	{"--predictor", "predictor.kind", "none|oracle|freq|cepr"},
	{"--mode", "predictor.mode", "exact|trust"},
	{"--max-ctx", "model.max_ctx", "N"},
	{"--set", NULL, "KEY=VALUE"},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

/* a is "NAME" (*val = NULL: value in the next argument) or "NAME=V". */
static bool match(const char *a, const char *name, const char **val)
{
	size_t l = strlen(name);

	if (strncmp(a, name, l) || (a[l] && a[l] != '='))
		return false;
	*val = a[l] ? a + l + 1 : NULL;
	return true;
}

static const struct flag *find_flag(const char *a, const char **val)
{
	for (size_t i = 0; i < N_FLAGS; i++)
		if (match(a, flags[i].name, val))
			return &flags[i];
	return NULL;
}

/* The option's value, inline or next; *used: argv entries it spans. */
static int take(int argc, char **argv, int i, const char *name, const char **val,
		int *used, char *err, size_t n)
{
	*used = 1;
	if (*val)
		return 0;
	if (i + 1 >= argc) {
		ld_errf(err, n, "%s: missing value", name);
		return -EINVAL;
	}
	*val = argv[i + 1];
	*used = 2;
	return 0;
}

/* One argument of the first pass: --config now, --set and flags later. */
static int scan_one(struct moed_config *c, int argc, char **argv, int i,
		    int (*other)(void *, int, char **), void *ctx,
		    int *later, int *n_later, int *used, char *err, size_t n)
{
	const struct flag *fl;
	const char *v;
	int rc;

	if (match(argv[i], "--config", &v)) {
		if ((rc = take(argc, argv, i, "--config", &v, used, err, n)) < 0)
			return rc;
		return cfg_load_file(c, v, err, n);
	}
	if ((fl = find_flag(argv[i], &v))) {
		if ((rc = take(argc, argv, i, fl->name, &v, used, err, n)) < 0)
			return rc;
		later[(*n_later)++] = i;
		return 0;
	}
	if (!other) {
		ld_errf(err, n, "unknown option '%s'", argv[i]);
		return -EINVAL;
	}
	rc = other(ctx, argc - i, argv + i);
	if (rc < 0) {
		ld_errf(err, n, "unknown or bad option '%s'", argv[i]);
		return -EINVAL;
	}
	if (rc == 0 || rc > argc - i) {
		ld_errf(err, n, "option '%s': handler consumed %d arguments", argv[i], rc);
		return -EINVAL;
	}
	*used = rc;
	return 0;
}

static int apply_one(struct moed_config *c, int argc, char **argv, int i,
		     char *err, size_t n)
{
	const char *v;
	const struct flag *fl = find_flag(argv[i], &v);
	char pre[64];
	int used, rc;

	take(argc, argv, i, fl->name, &v, &used, NULL, 0);
	rc = fl->key ? cfg_set_kv(c, fl->key, v, err, n) : cfg_set(c, v, err, n);
	if (rc < 0) {
		snprintf(pre, sizeof(pre), "%s: ", fl->name);
		cfg_err_prefix(err, n, pre);
	}
	return rc;
}

int cfg_parse_args(struct moed_config *c, int argc, char **argv,
		   int (*other)(void *ctx, int argc, char **argv), void *ctx,
		   char *err, size_t n)
{
	int *later, n_later = 0, i = 0, used, rc = 0;

	later = calloc(argc > 0 ? argc : 1, sizeof(*later));
	if (!later) {
		ld_errf(err, n, "out of memory");
		return -ENOMEM;
	}
	while (i < argc) {
		if ((rc = scan_one(c, argc, argv, i, other, ctx, later, &n_later,
				   &used, err, n)) < 0)
			goto fail;
		i += used;
	}
	for (int j = 0; j < n_later; j++)
		if ((rc = apply_one(c, argc, argv, later[j], err, n)) < 0)
			goto fail;
fail:
	free(later);
	return rc;
}

void cfg_print_flags(FILE *f)
{
	char lhs[64];

	fprintf(f, "  %-34s %s\n", "--config FILE", "JSON file, applied before every --set");
	for (size_t i = 0; i < N_FLAGS; i++) {
		snprintf(lhs, sizeof(lhs), "%s %s", flags[i].name, flags[i].meta);
		if (flags[i].key)
			fprintf(f, "  %-34s --set %s=%s\n", lhs, flags[i].key, flags[i].meta);
		else
			fprintf(f, "  %-34s %s\n", lhs, "any key, in command-line order");
	}
}

/* ---- helpers for the modules that read the config ---- */

int cfg_split_listen(const char *listen, char *host, size_t hn, int *port)
{
	const char *h = listen, *colon = strrchr(listen, ':'), *p;
	size_t hl;
	long x = 0;

	if (!colon)
		return -EINVAL;
	hl = colon - listen;
	if (*h == '[') {
		if (hl < 3 || listen[hl - 1] != ']')
			return -EINVAL;
		h++;
		hl -= 2;
	} else if (memchr(h, ':', hl) || memchr(h, ']', hl)) {
		return -EINVAL;           /* bare IPv6 needs brackets */
	}
	if (hl == 0 || memchr(h, '[', hl) || !colon[1] || strlen(colon + 1) > 5)
		return -EINVAL;
	for (p = colon + 1; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		x = x * 10 + (*p - '0');
	}
	if (x > 65535)
		return -EINVAL;
	if (hl >= hn)
		return -ENAMETOOLONG;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)x;
	return 0;
}

int cfg_pack_path(const struct moed_config *c, char *buf, size_t n)
{
	int w;

	if (c->model.pack[0])
		w = snprintf(buf, n, "%s", c->model.pack);
	else if (c->model.path[0])
		w = snprintf(buf, n, "%s/moed.pack", c->model.path);
	else
		return -EINVAL;
	return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

int cfg_runtime_dir(const struct moed_config *c, char *buf, size_t n)
{
	const char *env = getenv("RUNTIME_DIRECTORY");
	int w;

	if (c->runtime.dir[0])
		w = snprintf(buf, n, "%s", c->runtime.dir);
	else if (env && *env)     /* systemd: several are ':'-separated; take the first */
		w = snprintf(buf, n, "%.*s", (int)strcspn(env, ":"), env);
	else
		w = snprintf(buf, n, "/tmp/moed-%u", (unsigned)getuid());
	return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}
