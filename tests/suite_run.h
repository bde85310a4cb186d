/* Every unit test's main(): runs its Check suite (tests/suite_run.c). */
#ifndef TESTS_SUITE_RUN_H
#define TESTS_SUITE_RUN_H

#include <check.h>

/* Runs s (CK_NORMAL output); EXIT_SUCCESS when no test failed. */
int suite_run(Suite *s);

#endif
