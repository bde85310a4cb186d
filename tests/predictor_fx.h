/* Helpers of the predictor tests (tests/predictor_fx.c). */
#ifndef TESTS_PREDICTOR_FX_H
#define TESTS_PREDICTOR_FX_H

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "predictor/eval.h"
#include "predictor/pred.h"
#include "predictor/trace.h"

/* A fixed-seed random number below n; /tmp/moed_test_pred_PID_name (4 in
 * turn); a text file. */
uint32_t rnd(uint32_t n);
char *tmp_path(const char *name);
void write_text(const char *path, const char *text);
/* Synthetic traces (tests/predictor_fx.c says how each is routed). */
void set_run(struct pred_trace *t, size_t i, int l, int e0);
struct pred_trace *token_trace(size_t n);
struct pred_trace *path_trace(size_t n);
/* A predictor of kind trained on t, and an evaluation of it on t. */
struct pred *open_for(enum pred_kind kind, const struct pred_trace *t);
struct pred_eval_result eval(enum pred_kind kind, const struct pred_trace *t,
			     enum cache_policy pol, size_t slots, int predict_k);
/* The last error message. */
extern char err[1024];

#endif
