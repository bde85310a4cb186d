/* Prometheus metrics: counters, gauges and histograms with up to three
 * labels, rendered in the text exposition format 0.0.4.
 *
 * Names follow Prometheus conventions and carry their unit: counters must
 * end in "_total"; use _seconds, _bytes elsewhere.  Every function is
 * thread-safe (one mutex per registry).  Label values are given as an array
 * with as many entries as the metric has label names (NULL when it has
 * none); a series is created on first use, up to METRICS_MAX_SERIES per
 * metric (later new label combinations are dropped). */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stddef.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_MAX_LABELS 3
#define METRICS_MAX_SERIES 1000

struct metrics;
struct metric;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* labels: NULL-terminated list of label names (or NULL).  Registering the
 * same name again with the same kind and labels returns the same metric.
 * NULL with errno EINVAL (bad name, label, kind clash, buckets) or ENOMEM. */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
			       const char *const *labels);
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
			     const char *const *labels);
/* buckets: strictly increasing upper bounds; +Inf is added. */
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
				 const char *const *labels, const double *buckets,
				 size_t n_buckets);

/* Counters: v >= 0 (negative is ignored).  Gauges: any v. */
void metric_add(struct metric *mt, const char *const *values, double v);
void metric_inc(struct metric *mt, const char *const *values);
void metric_set(struct metric *mt, const char *const *values, double v);
void metric_observe(struct metric *mt, const char *const *values, double v);
/* Current value (counter/gauge) or observation count (histogram); 0 if the
 * series does not exist. */
double metric_value(struct metric *mt, const char *const *values);

/* The whole registry as text (malloc'd, caller frees).  0 or -ENOMEM. */
int metrics_render(struct metrics *m, char **buf, size_t *len);

#endif
