/* libFuzzer target for the wire decoder.  Any bytes must decode or be
 * rejected cleanly; what decodes must pass proto_check and, at our version,
 * re-encode to the very same bytes.
 *
 *   CC=clang meson setup build-fuzz && ninja -C build-fuzz tests/fuzz/fuzz_proto
 *   MOED_FUZZ_PROTO_SEEDS=corpus build-fuzz/tests/fuzz/fuzz_proto -runs=0
 *   build-fuzz/tests/fuzz/fuzz_proto -max_total_time=60 corpus
 *
 * MOED_FUZZ_PROTO_SEEDS=DIR writes one valid message of each kind into DIR
 * (which must exist) before fuzzing. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_seed(const char *dir, int i, void *buf, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof path, "%s/seed_%d", dir, i);
	f = fopen(path, "wb");
	if (f) {
		fwrite(buf, 1, len, f);
		fclose(f);
	}
	free(buf);
}

static void write_seeds(const char *dir)
{
	static const uint32_t tok[] = { 1, 2, 3 }, stop[] = { 2 }, start[] = { 0, 2, 3 };
	static const uint16_t ex[] = { 1, 0, 3, 0, 1, 2, 3, 1, 0, 2, 3, 1, 0 };
	static const float sc[] = { .5f, .25f, 1, .1f, .2f, .3f, .4f, .5f, .6f, .7f, .8f, .9f, 1 };
	static const uint64_t ids[] = { 1, 1 };
	static const uint32_t pos[] = { 0, 1 };
	struct proto_seq s[2] = {
		{ .id = 1, .max_tokens = 4, .temperature = 1, .top_p = .9f, .seed = 5,
		  .flags = PROTO_SEQ_STREAM, .n_tokens = 3, .tokens = tok, .n_stop = 1, .stop = stop },
		{ .id = 2, .start_pos = 9, .top_p = 1, .n_tokens = 1, .tokens = tok },
	};
	struct proto_batch b = { PROTO_KIND_GENERATE, 2, s };
	struct proto_table t = { 2, 4, start, ex, sc, 2, 1, ex + 3, sc + 3 };
	struct proto_trace tr = { 2, 4, 2, 2, ids, pos, tok, ex + 3, sc };
	struct proto_seq_result rs = { .id = 1, .finish = PROTO_FINISH_STOP, .n_prompt = 3,
				       .n_tokens = 2, .tokens = tok, .n_logits = 3, .logits = sc };
	struct proto_result r = { PROTO_TABLE_USED, { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, 1, &rs, 1 };
	void *buf;
	size_t len;
	int n = 0;

	if (proto_encode_batch(&b, 1, &buf, &len) == 0)
		write_seed(dir, n++, buf, len);
	if (proto_encode_table(&t, 1, &buf, &len) == 0)
		write_seed(dir, n++, buf, len);
	t.k = 0;
	t.n_tokens = 0;
	if (proto_encode_table(&t, 1, &buf, &len) == 0)
		write_seed(dir, n++, buf, len);
	if (proto_encode_trace(&tr, 1, &buf, &len) == 0)
		write_seed(dir, n++, buf, len);
	if (proto_encode_result(&r, 1, &buf, &len) == 0)
		write_seed(dir, n++, buf, len);
	if (proto_encode_error(-EIO, "device lost", 1, &buf, &len) == 0)
		write_seed(dir, n++, buf, len);
	if (n != 6)
		fprintf(stderr, "fuzz_proto: only %d of 6 seeds encoded\n", n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("MOED_FUZZ_PROTO_SEEDS");

	(void)argc;
	(void)argv;
	if (dir)
		write_seeds(dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg *m = NULL;
	struct proto_header h;
	void *buf;
	size_t len;
	int rv = proto_decode(data, size, &m);

	if (rv) {
		if (m || (rv != -EMSGSIZE && rv != -EPROTO))
			__builtin_trap();
		return 0;
	}
	if (proto_header_peek(data, size, &h) != 0 || proto_check(m, NULL, 0) != 0)
		__builtin_trap();
	if (proto_encode(m, &buf, &len) != 0)
		__builtin_trap();
	if (m->hdr.version == PROTO_VERSION && (len != size || memcmp(buf, data, size) != 0))
		__builtin_trap();
	free(buf);
	proto_msg_free(m);
	return 0;
}
