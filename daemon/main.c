/* moed: one binary, subcommands by role. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cmds.h"
#include "daemon/config.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{"serve", cmd_serve, "serve a model over HTTP (front + supervisor)"},
	{"run", cmd_run, "one-shot inference on token ids or text"},
	{"mkmodel", cmd_mkmodel, "write a synthetic HF-layout MoE model"},
	{"pack", cmd_pack, "pack a model's experts into a store file"},
	{"worker", cmd_worker, "inference worker (started by serve)"},
	{"predictor", cmd_predictor, "expert-table predictor (started by serve)"},
	{"eval-predictor", cmd_eval_predictor, "replay a routing trace through a predictor and the cache"},
};

int cmd_help_flag(void *usage, int argc, char **argv)
{
	(void)argc;
	if (strcmp(argv[0], "--help") && strcmp(argv[0], "-h"))
		return -1;
	fputs(usage, stdout);
	printf("\nflags (each sets a configuration key; see conf/README.md):\n");
	cfg_print_flags(stdout);
	exit(0);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: moed COMMAND [options]   (moed COMMAND --help)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "moed: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
