/* Helpers of the loader tests (tests/loader_fx.c). */
#ifndef TESTS_LOADER_FX_H
#define TESTS_LOADER_FX_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/model.h"

typedef void (*edit_fn)(json_t *root, void *arg);

/* Paths and files: a fixture's directory (MOED_FIXTURES), a file's bytes,
 * writing a + b to a file, a fixture copied into a new temp dir (removed
 * with rm_tree), and dir/file (static storage, 4 in turn). */
const char *fixture(const char *name);
void *slurp(const char *path, size_t *len);
void spill(const char *path, const void *a, size_t na, const void *b, size_t nb);
const char *copy_fixture(const char *name);
void rm_tree(const char *dir);
char *path_in(const char *dir, const char *file);
/* Rewrites a safetensors header or config.json through fn. */
void edit_header(const char *path, edit_fn fn, void *arg);
void edit_config(const char *dir, edit_fn fn, void *arg);
/* ld_model_open must fail naming s1 (and s2), or succeed. */
void expect_fail(const char *dir, const char *s1, const char *s2);
struct ld_model *open_ok(const char *dir);
/* The last ld_model_open error. */
extern char err[1024];

#endif
