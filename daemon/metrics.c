/* Prometheus metrics registry and text exposition (see metrics.h). */
#include "daemon/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

static const char *const kind_name[] = { "counter", "gauge", "histogram" };

struct series {
	char *values[METRICS_MAX_LABELS];
	double v;                        /* counter/gauge value, histogram sum */
	uint64_t count;                  /* histogram observations */
	uint64_t *buckets;               /* per bucket, not cumulative */
};

struct metric {
	struct metrics *reg;
	enum kind kind;
	char *name;
	char *help;
	char *labels[METRICS_MAX_LABELS];
	int n_labels;
	double *bounds;
	size_t n_bounds;
	struct series *series;
	size_t n_series, cap;
	struct metric *next;
};

struct metrics {
	pthread_mutex_t lock;
	struct metric *head, *tail;
};

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (m)
		pthread_mutex_init(&m->lock, NULL);
	return m;
}

static void metric_free(struct metric *mt)
{
	for (size_t i = 0; i < mt->n_series; i++) {
		for (int j = 0; j < mt->n_labels; j++)
			free(mt->series[i].values[j]);
		free(mt->series[i].buckets);
	}
	for (int j = 0; j < mt->n_labels; j++)
		free(mt->labels[j]);
	free(mt->series);
	free(mt->bounds);
	free(mt->name);
	free(mt->help);
	free(mt);
}

void metrics_free(struct metrics *m)
{
	struct metric *mt, *next;

	if (!m)
		return;
	for (mt = m->head; mt; mt = next) {
		next = mt->next;
		metric_free(mt);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static bool name_ok(const char *s, bool label)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	if (label && s[0] == '_' && s[1] == '_')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (*s == ':' && !label)))
			return false;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && !strcmp(s + n - k, suffix);
}

static int count_labels(const char *const *labels, enum kind kind)
{
	int n = 0;

	for (; labels && labels[n]; n++)
		if (n == METRICS_MAX_LABELS || !name_ok(labels[n], true) ||
		    (kind == K_HISTOGRAM && !strcmp(labels[n], "le")))
			return -1;
	return n;
}

static bool same_shape(const struct metric *mt, enum kind kind,
		       const char *const *labels, int n)
{
	if (mt->kind != kind || mt->n_labels != n)
		return false;
	for (int i = 0; i < n; i++)
		if (strcmp(mt->labels[i], labels[i]))
			return false;
	return true;
}

static struct series *find_series(struct metric *mt, const char *const *values);

static struct metric *create(struct metrics *m, enum kind kind, const char *name,
			     const char *help, const char *const *labels)
{
	struct metric *mt;
	int n = count_labels(labels, kind);

	if (n < 0 || !name_ok(name, false) || (kind == K_COUNTER && !ends_with(name, "_total"))) {
		errno = EINVAL;
		return NULL;
	}
	for (mt = m->head; mt; mt = mt->next)
		if (!strcmp(mt->name, name)) {
			if (same_shape(mt, kind, labels, n))
				return mt;
			errno = EINVAL;
			return NULL;
		}
	if (!(mt = calloc(1, sizeof(*mt))))
		goto nomem;
	mt->reg = m;
	mt->kind = kind;
	mt->n_labels = n;
	mt->name = strdup(name);
	mt->help = strdup(help ? help : "");
	for (int i = 0; i < n; i++)
		if (!(mt->labels[i] = strdup(labels[i])))
			goto nomem;
	if (!mt->name || !mt->help)
		goto nomem;
	return mt;
nomem:
	if (mt)
		metric_free(mt);
	errno = ENOMEM;
	return NULL;
}

static struct metric *add(struct metrics *m, struct metric *mt)
{
	if (!mt || mt->next || m->tail == mt)
		return mt;               /* NULL, or already registered */
	if (m->tail)
		m->tail->next = mt;
	else
		m->head = mt;
	m->tail = mt;
	if (mt->n_labels == 0)
		find_series(mt, NULL);   /* unlabelled metrics show 0 from the start */
	return mt;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
			       const char *const *labels)
{
	struct metric *mt;

	pthread_mutex_lock(&m->lock);
	mt = add(m, create(m, K_COUNTER, name, help, labels));
	pthread_mutex_unlock(&m->lock);
	return mt;
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
			     const char *const *labels)
{
	struct metric *mt;

	pthread_mutex_lock(&m->lock);
	mt = add(m, create(m, K_GAUGE, name, help, labels));
	pthread_mutex_unlock(&m->lock);
	return mt;
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
				 const char *const *labels, const double *buckets,
				 size_t n_buckets)
{
	struct metric *mt = NULL;

	for (size_t i = 0; i < n_buckets; i++)
		if (!isfinite(buckets[i]) || (i && !(buckets[i] > buckets[i - 1]))) {
			errno = EINVAL;
			return NULL;
		}
	pthread_mutex_lock(&m->lock);
	mt = create(m, K_HISTOGRAM, name, help, labels);
	/* A new one gets the buckets; an existing one keeps its own. */
	if (mt && !mt->next && m->tail != mt && n_buckets) {
		if (!(mt->bounds = malloc(n_buckets * sizeof(double)))) {
			metric_free(mt);
			mt = NULL;
			errno = ENOMEM;
		} else {
			memcpy(mt->bounds, buckets, n_buckets * sizeof(double));
			mt->n_bounds = n_buckets;
		}
	}
	mt = add(m, mt);
	pthread_mutex_unlock(&m->lock);
	return mt;
}

static struct series *find_series(struct metric *mt, const char *const *values)
{
	struct series *s;
	size_t i;

	for (i = 0; i < mt->n_series; i++) {
		int j = 0;

		while (j < mt->n_labels && !strcmp(mt->series[i].values[j],
						   values[j] ? values[j] : ""))
			j++;
		if (j == mt->n_labels)
			return &mt->series[i];
	}
	if (mt->n_series >= METRICS_MAX_SERIES)
		return NULL;
	if (mt->n_series == mt->cap) {
		size_t c = mt->cap ? 2 * mt->cap : 4;
		struct series *ns = realloc(mt->series, c * sizeof(*ns));

		if (!ns)
			return NULL;
		mt->series = ns;
		mt->cap = c;
	}
	s = &mt->series[mt->n_series];
	memset(s, 0, sizeof(*s));
	for (int j = 0; j < mt->n_labels; j++)
		if (!(s->values[j] = strdup(values[j] ? values[j] : "")))
			goto fail;
	if (mt->kind == K_HISTOGRAM && mt->n_bounds &&
	    !(s->buckets = calloc(mt->n_bounds, sizeof(uint64_t))))
		goto fail;
	mt->n_series++;
	return s;
fail:
	for (int j = 0; j < mt->n_labels; j++)
		free(s->values[j]);
	return NULL;
}

static void update(struct metric *mt, const char *const *values, double v, int op)
{
	struct series *s;

	if (!mt || (mt->n_labels && !values))
		return;
	pthread_mutex_lock(&mt->reg->lock);
	s = find_series(mt, values);
	if (s && op == 0 && mt->kind != K_HISTOGRAM && (mt->kind == K_GAUGE || v >= 0))
		s->v += v;
	else if (s && op == 1 && mt->kind == K_GAUGE)
		s->v = v;
	else if (s && op == 2 && mt->kind == K_HISTOGRAM) {
		size_t b = 0;

		while (b < mt->n_bounds && v > mt->bounds[b])
			b++;
		if (b < mt->n_bounds)
			s->buckets[b]++;
		s->count++;
		s->v += v;
	}
	pthread_mutex_unlock(&mt->reg->lock);
}

void metric_add(struct metric *mt, const char *const *values, double v)
{
	update(mt, values, v, 0);
}

void metric_inc(struct metric *mt, const char *const *values)
{
	update(mt, values, 1.0, 0);
}

void metric_set(struct metric *mt, const char *const *values, double v)
{
	update(mt, values, v, 1);
}

void metric_observe(struct metric *mt, const char *const *values, double v)
{
	update(mt, values, v, 2);
}

double metric_value(struct metric *mt, const char *const *values)
{
	double v = 0;

	if (!mt || (mt->n_labels && !values))
		return 0;
	pthread_mutex_lock(&mt->reg->lock);
	for (size_t i = 0; i < mt->n_series; i++) {
		int j = 0;

		while (j < mt->n_labels && !strcmp(mt->series[i].values[j],
						   values[j] ? values[j] : ""))
			j++;
		if (j == mt->n_labels) {
			v = mt->kind == K_HISTOGRAM ? (double)mt->series[i].count : mt->series[i].v;
			break;
		}
	}
	pthread_mutex_unlock(&mt->reg->lock);
	return v;
}

/* Shortest text that reads back as the same double. */
static void put_num(FILE *f, double v)
{
	char b[40];

	if (isnan(v)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	if (v == floor(v) && fabs(v) < 1e15) {
		fprintf(f, "%.0f", v);
		return;
	}
	for (int p = 1; p <= 17; p++) {
		snprintf(b, sizeof(b), "%.*g", p, v);
		if (strtod(b, NULL) == v)
			break;
	}
	fputs(b, f);
}

static void put_escaped(FILE *f, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '"' && quote)
			fputs("\\\"", f);
		else
			fputc(*s, f);
	}
}

/* {a="x",b="y"} plus an optional le label; nothing when there are none. */
static void put_labels(FILE *f, const struct metric *mt, const struct series *s,
		       const double *le, bool le_inf)
{
	bool any = mt->n_labels > 0 || le || le_inf;

	if (!any)
		return;
	fputc('{', f);
	for (int j = 0; j < mt->n_labels; j++) {
		fprintf(f, "%s%s=\"", j ? "," : "", mt->labels[j]);
		put_escaped(f, s->values[j], true);
		fputc('"', f);
	}
	if (le || le_inf) {
		fprintf(f, "%sle=\"", mt->n_labels ? "," : "");
		if (le)
			put_num(f, *le);
		else
			fputs("+Inf", f);
		fputc('"', f);
	}
	fputc('}', f);
}

static void render_series(FILE *f, const struct metric *mt, const struct series *s)
{
	uint64_t cum = 0;

	if (mt->kind != K_HISTOGRAM) {
		fputs(mt->name, f);
		put_labels(f, mt, s, NULL, false);
		fputc(' ', f);
		put_num(f, s->v);
		fputc('\n', f);
		return;
	}
	for (size_t b = 0; b < mt->n_bounds; b++) {
		cum += s->buckets[b];
		fprintf(f, "%s_bucket", mt->name);
		put_labels(f, mt, s, &mt->bounds[b], false);
		fprintf(f, " %llu\n", (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket", mt->name);
	put_labels(f, mt, s, NULL, true);
	fprintf(f, " %llu\n%s_sum", (unsigned long long)s->count, mt->name);
	put_labels(f, mt, s, NULL, false);
	fputc(' ', f);
	put_num(f, s->v);
	fprintf(f, "\n%s_count", mt->name);
	put_labels(f, mt, s, NULL, false);
	fprintf(f, " %llu\n", (unsigned long long)s->count);
}

int metrics_render(struct metrics *m, char **buf, size_t *len)
{
	FILE *f;
	int bad;

	*buf = NULL;
	*len = 0;
	f = open_memstream(buf, len);
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	for (const struct metric *mt = m->head; mt; mt = mt->next) {
		fprintf(f, "# HELP %s ", mt->name);
		put_escaped(f, mt->help, false);
		fprintf(f, "\n# TYPE %s %s\n", mt->name, kind_name[mt->kind]);
		for (size_t i = 0; i < mt->n_series; i++)
			render_series(f, mt, &mt->series[i]);
	}
	pthread_mutex_unlock(&m->lock);
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		free(*buf);
		*buf = NULL;
		*len = 0;
		return -ENOMEM;
	}
	return 0;
}
