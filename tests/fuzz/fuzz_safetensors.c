/* libFuzzer target for the safetensors header parser: the input is a whole
 * .safetensors file, opened through a memfd like any file on disk. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loader/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct ld_st *st = NULL;
	char err[512];
	size_t i;

	if (fd < 0) {
		fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
		if (fd < 0)
			return 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	if (ld_st_open_file(path, &st, err, sizeof(err)) == 0) {
		/* Touch every byte of every tensor: the validated ranges must
		 * lie inside the mapping. */
		float f;
		for (i = 0; i < ld_st_count(st); i++) {
			const struct ld_tensor *t = ld_st_at(st, i);
			size_t es = ld_dtype_size(t->dtype), k;
			for (k = 0; k + es <= t->nbytes; k += es)
				ld_to_f32(&f, (const uint8_t *)t->data + k, t->dtype, 1);
			if (ld_st_find(st, t->name) != t)
				__builtin_trap();
		}
		ld_st_close(st);
	}
	return 0;
}
