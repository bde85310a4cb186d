/* Prometheus metrics: registration rules, thread-safe updates, and the text
 * format 0.0.4 (every rendered line is parsed back). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics.h"
#include "tests/suite_run.h"

static char *render(struct metrics *m)
{
	char *buf;
	size_t len;

	ck_assert_int_eq(metrics_render(m, &buf, &len), 0);
	ck_assert_uint_eq(len, strlen(buf));
	return buf;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* Every line is a HELP, a TYPE, or a sample of the metric last TYPEd. */
static void check_format(const char *text)
{
	regex_t help, type, sample;
	char *copy = strdup(text), *save, *line;
	char current[128] = "";

	ck_assert_int_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$", REG_EXTENDED), 0);
	ck_assert_int_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) "
				 "(counter|gauge|histogram)$", REG_EXTENDED), 0);
	ck_assert_int_eq(regcomp(&sample, "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
				 "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
				 "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})? "
				 "(-?[0-9.eE+-]+|\\+Inf|-Inf|NaN)$", REG_EXTENDED), 0);
	ck_assert(text[0] == '\0' || text[strlen(text) - 1] == '\n');
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		regmatch_t mt[2];

		if (!regexec(&help, line, 0, NULL, 0))
			continue;
		if (!regexec(&type, line, 2, mt, 0)) {
			snprintf(current, sizeof(current), "%.*s", (int)(mt[1].rm_eo - mt[1].rm_so),
				 line + mt[1].rm_so);
			continue;
		}
		ck_assert_msg(!regexec(&sample, line, 2, mt, 0), "bad line: %s", line);
		ck_assert_msg(!strncmp(line + mt[1].rm_so, current, strlen(current)),
			      "sample %s outside its family %s", line, current);
	}
	regfree(&help);
	regfree(&type);
	regfree(&sample);
	free(copy);
}

START_TEST(render_all_kinds)
{
	static const double b[] = { 0.1, 0.5, 1 };
	struct metrics *m = metrics_new();
	struct metric *req = metrics_counter(m, "moed_http_requests_total", "HTTP requests.",
					     (const char *[]){ "method", "status", NULL });
	struct metric *up = metrics_gauge(m, "moed_up", "1 when serving.", NULL);
	struct metric *lat = metrics_histogram(m, "moed_request_duration_seconds",
					       "Request latency.",
					       (const char *[]){ "route", NULL }, b, 3);
	char *text;

	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_nonnull(up);
	ck_assert_ptr_nonnull(lat);
	metric_inc(req, (const char *[]){ "GET", "200" });
	metric_add(req, (const char *[]){ "GET", "200" }, 2);
	metric_inc(req, (const char *[]){ "POST", "400" });
	metric_add(req, (const char *[]){ "POST", "400" }, -5);   /* ignored */
	metric_set(up, NULL, 1);
	metric_observe(lat, (const char *[]){ "/v1/completions" }, 0.05);
	metric_observe(lat, (const char *[]){ "/v1/completions" }, 0.5);
	metric_observe(lat, (const char *[]){ "/v1/completions" }, 7);
	text = render(m);
	check_format(text);
	ck_assert(has_line(text, "# HELP moed_http_requests_total HTTP requests."));
	ck_assert(has_line(text, "# TYPE moed_http_requests_total counter"));
	ck_assert(has_line(text, "moed_http_requests_total{method=\"GET\",status=\"200\"} 3"));
	ck_assert(has_line(text, "moed_http_requests_total{method=\"POST\",status=\"400\"} 1"));
	ck_assert(has_line(text, "# TYPE moed_up gauge"));
	ck_assert(has_line(text, "moed_up 1"));
	ck_assert(has_line(text, "# TYPE moed_request_duration_seconds histogram"));
	ck_assert(has_line(text, "moed_request_duration_seconds_bucket"
			   "{route=\"/v1/completions\",le=\"0.1\"} 1"));
	ck_assert(has_line(text, "moed_request_duration_seconds_bucket"
			   "{route=\"/v1/completions\",le=\"0.5\"} 2"));
	ck_assert(has_line(text, "moed_request_duration_seconds_bucket"
			   "{route=\"/v1/completions\",le=\"1\"} 2"));
	ck_assert(has_line(text, "moed_request_duration_seconds_bucket"
			   "{route=\"/v1/completions\",le=\"+Inf\"} 3"));
	ck_assert(has_line(text, "moed_request_duration_seconds_sum"
			   "{route=\"/v1/completions\"} 7.55"));
	ck_assert(has_line(text, "moed_request_duration_seconds_count"
			   "{route=\"/v1/completions\"} 3"));
	ck_assert(metric_value(req, (const char *[]){ "GET", "200" }) == 3);
	ck_assert(metric_value(lat, (const char *[]){ "/v1/completions" }) == 3);
	ck_assert(metric_value(lat, (const char *[]){ "/nope" }) == 0);
	free(text);
	metrics_free(m);
}
END_TEST

START_TEST(escaping_and_numbers)
{
	struct metrics *m = metrics_new();
	struct metric *g = metrics_gauge(m, "moed_x_bytes", "Line one\nback\\slash",
					 (const char *[]){ "v", NULL });
	struct metric *z = metrics_counter(m, "moed_zero_total", "Never touched.", NULL);
	char *text;

	ck_assert_ptr_nonnull(z);
	metric_set(g, (const char *[]){ "a\"b\\c\nd" }, 0.1);
	metric_set(g, (const char *[]){ "small" }, 1e-7);
	metric_set(g, (const char *[]){ "inf" }, INFINITY);
	metric_set(g, (const char *[]){ "neg" }, -2.5);
	metric_set(g, (const char *[]){ "big" }, 123456789012.0);
	text = render(m);
	check_format(text);
	ck_assert(has_line(text, "# HELP moed_x_bytes Line one\\nback\\\\slash"));
	ck_assert(has_line(text, "moed_x_bytes{v=\"a\\\"b\\\\c\\nd\"} 0.1"));
	ck_assert(has_line(text, "moed_x_bytes{v=\"small\"} 1e-07"));
	ck_assert(has_line(text, "moed_x_bytes{v=\"inf\"} +Inf"));
	ck_assert(has_line(text, "moed_x_bytes{v=\"neg\"} -2.5"));
	ck_assert(has_line(text, "moed_x_bytes{v=\"big\"} 123456789012"));
	ck_assert(has_line(text, "moed_zero_total 0"));
	free(text);
	metrics_free(m);
}
END_TEST

START_TEST(registration_rules)
{
	static const double ok_b[] = { 1, 2 }, bad_b[] = { 2, 1 };
	struct metrics *m = metrics_new();
	struct metric *c = metrics_counter(m, "moed_a_total", "a", (const char *[]){ "x", NULL });

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_eq(metrics_counter(m, "moed_a_total", "a", (const char *[]){ "x", NULL }), c);
	ck_assert_ptr_null(metrics_gauge(m, "moed_a_total", "a", (const char *[]){ "x", NULL }));
	ck_assert_ptr_null(metrics_counter(m, "moed_a_total", "a", NULL));
	ck_assert_ptr_null(metrics_counter(m, "moed_no_suffix", "a", NULL));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(metrics_gauge(m, "1bad", "a", NULL));
	ck_assert_ptr_null(metrics_gauge(m, "moed-dash", "a", NULL));
	ck_assert_ptr_null(metrics_gauge(m, "moed_g", "a", (const char *[]){ "__x", NULL }));
	ck_assert_ptr_null(metrics_gauge(m, "moed_g", "a",
					 (const char *[]){ "a", "b", "c", "d", NULL }));
	ck_assert_ptr_nonnull(metrics_gauge(m, "moed_g", "a",
					    (const char *[]){ "a", "b", "c", NULL }));
	ck_assert_ptr_null(metrics_histogram(m, "moed_h_seconds", "h",
					     (const char *[]){ "le", NULL }, ok_b, 2));
	ck_assert_ptr_null(metrics_histogram(m, "moed_h_seconds", "h", NULL, bad_b, 2));
	ck_assert_ptr_nonnull(metrics_histogram(m, "moed_h_seconds", "h", NULL, ok_b, 2));
	metric_inc(c, NULL);             /* labels missing: ignored, no crash */
	ck_assert(metric_value(c, (const char *[]){ "v" }) == 0);
	metrics_free(m);
}
END_TEST

struct worker_arg {
	struct metric *c, *h;
};

static void *hammer(void *p)
{
	struct worker_arg *a = p;

	for (int i = 0; i < 20000; i++) {
		metric_inc(a->c, (const char *[]){ i % 2 ? "odd" : "even" });
		metric_observe(a->h, NULL, 1.0);
	}
	return NULL;
}

START_TEST(concurrent_updates)
{
	static const double b[] = { 0.5, 2 };
	struct metrics *m = metrics_new();
	struct worker_arg a = {
		metrics_counter(m, "moed_ops_total", "ops", (const char *[]){ "kind", NULL }),
		metrics_histogram(m, "moed_op_seconds", "op", NULL, b, 2),
	};
	pthread_t th[4];
	char *text;

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &a), 0);
	for (int i = 0; i < 4; i++) {
		char *t = render(m);     /* rendering while others write */

		check_format(t);
		free(t);
		pthread_join(th[i], NULL);
	}
	ck_assert(metric_value(a.c, (const char *[]){ "odd" }) == 40000);
	ck_assert(metric_value(a.c, (const char *[]){ "even" }) == 40000);
	text = render(m);
	ck_assert(has_line(text, "moed_op_seconds_bucket{le=\"0.5\"} 0"));
	ck_assert(has_line(text, "moed_op_seconds_bucket{le=\"2\"} 80000"));
	ck_assert(has_line(text, "moed_op_seconds_count 80000"));
	ck_assert(has_line(text, "moed_op_seconds_sum 80000"));
	free(text);
	metrics_free(m);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, render_all_kinds);
	tcase_add_test(tc, escaping_and_numbers);
	tcase_add_test(tc, registration_rules);
	tcase_add_test(tc, concurrent_updates);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return suite_run(metrics_suite());
}
