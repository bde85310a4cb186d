/* safetensors reader: one file, or a sharded set through
 * model.safetensors.index.json.  Files are mmapped read-only; every header is
 * validated before any tensor data is touched. */
#ifndef LD_SAFETENSORS_H
#define LD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum ld_dtype { LD_F32 = 0, LD_F16 = 1, LD_BF16 = 2 };

#define LD_MAX_DIMS 4

struct ld_tensor {
	const char *name;
	const char *file;   /* path of the file holding it */
	enum ld_dtype dtype;
	int ndim;
	int64_t shape[LD_MAX_DIMS];
	const void *data;   /* inside the mapping */
	size_t nbytes;
};

struct ld_st;

/* Opens DIR/model.safetensors or DIR/model.safetensors.index.json + shards.
 * On error returns a negative errno and writes one line into err
 * ("FILE: problem"). */
int ld_st_open_dir(const char *dir, struct ld_st **out, char *err, size_t errlen);
/* Opens one .safetensors file. */
int ld_st_open_file(const char *path, struct ld_st **out, char *err, size_t errlen);
const struct ld_tensor *ld_st_find(const struct ld_st *st, const char *name);
size_t ld_st_count(const struct ld_st *st);
const struct ld_tensor *ld_st_at(const struct ld_st *st, size_t i);
void ld_st_close(struct ld_st *st);
/* The path opened: the .safetensors file or the index (for error lines). */
const char *ld_st_path(const struct ld_st *st);

size_t ld_dtype_size(enum ld_dtype dt);
const char *ld_dtype_name(enum ld_dtype dt);
/* Converts n elements of src (dtype dt) to f32. */
void ld_to_f32(float *dst, const void *src, enum ld_dtype dt, size_t n);

#endif
