/* moed pack: write a model's experts into a pack store file (or check one). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cmds.h"
#include "loader/model.h"
#include "loader/store.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moed pack --model DIR [--out FILE] [--verify] [--check] [--quiet]\n\n"
		"Writes every expert of the model in f32, 4096-aligned, with a header,\n"
		"a layout table and checksums (loader/PACK_FORMAT.md).  The write is\n"
		"atomic: a temp file beside FILE, fsync, rename.\n\n"
		"  --model DIR   HF checkpoint directory (config.json + safetensors)\n"
		"  --out FILE    pack path (default DIR/moed.pack, as model.pack)\n"
		"  --verify      after packing, read the pack back and check every checksum\n"
		"  --check       do not write: check that FILE is valid and matches DIR\n"
		"  --quiet       no progress line\n");
}

/* Opens path against the model's hash; with full, checks every expert. */
static int check_pack(const char *dir, const char *path, bool full)
{
	struct ld_store *s = NULL;
	char err[1024];
	uint64_t h;
	int rc;

	if ((rc = ld_store_model_hash(dir, &h, err, sizeof(err))) ||
	    (rc = ld_store_open(path, h, &s, err, sizeof(err))) ||
	    (full && (rc = ld_store_verify_all(s, err, sizeof(err))))) {
		fprintf(stderr, "moed pack: %s\n", err);
		ld_store_close(s);
		return rc;
	}
	const struct ld_store_info *in = ld_store_info(s);
	printf("%s: %d layers x %d experts, %zu bytes each, %zu MiB, model hash %016"
	       PRIx64 "%s\n", path, in->n_layers, in->n_experts, in->expert_bytes,
	       in->file_bytes >> 20, in->model_hash, full ? ", all checksums good" : "");
	ld_store_close(s);
	return 0;
}

int cmd_pack(int argc, char **argv)
{
	static const struct option opts[] = {
		{"model", required_argument, NULL, 'm'}, {"out", required_argument, NULL, 'o'},
		{"verify", no_argument, NULL, 'v'}, {"check", no_argument, NULL, 'c'},
		{"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *out = NULL;
	bool verify = false, check = false, quiet = false;
	char err[1024], def[4096];
	struct ld_model *m = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, "m:o:vcqh", opts, NULL)) != -1) {
		switch (c) {
		case 'm': dir = optarg; break;
		case 'o': out = optarg; break;
		case 'v': verify = true; break;
		case 'c': check = true; break;
		case 'q': quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dir || optind < argc) {
		usage(stderr);
		return 2;
	}
	if (!out) {
		snprintf(def, sizeof(def), "%s/moed.pack", dir);
		out = def;
	}
	if (check)
		return check_pack(dir, out, true) ? 1 : 0;
	if ((rc = ld_model_open(dir, &m, err, sizeof(err)))) {
		fprintf(stderr, "moed pack: %s\n", err);
		return 1;
	}
	rc = ld_store_pack(m, out, !quiet, err, sizeof(err));
	ld_model_close(m);
	if (rc) {
		fprintf(stderr, "moed pack: %s\n", err);
		return 1;
	}
	return check_pack(dir, out, verify) ? 1 : 0;
}
