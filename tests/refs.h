/* Reading the reference.json files that tools/make_fixtures.py wrote. */
#ifndef TESTS_REFS_H
#define TESTS_REFS_H

struct ref_case {
	int *prompt, n_prompt;
	float *logits;
	int n_logits;
	int *greedy, n_greedy;
	int *routes;           /* [n_layers][n_prompt][k], ids ascending */
	int n_layers, k;
};

struct ref_fixture {
	char dir[512];
	struct ref_case *cases;
	int n_cases;
};

/* Names of the fixture models under $MOED_FIXTURES. */
extern const char *const ref_fixture_names[];
extern const int ref_n_fixtures;

/* Loads $MOED_FIXTURES/NAME/reference.json; aborts the test on error. */
void ref_load(const char *name, struct ref_fixture *f);
void ref_free(struct ref_fixture *f);
/* Whether the fixture's checkpoint is bf16 (looser tolerance). */
int ref_is_bf16(const char *name);

#endif
