/* Streaming safetensors writer: declare every tensor (name, dtype, shape),
 * then write the header and stream the data in declared order, so a file of
 * any size is written without holding it in memory.  The file is built under
 * a temporary name in the same directory and renamed into place (after
 * fsync) only by a successful ld_stw_close. */
#ifndef LD_ST_WRITE_H
#define LD_ST_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "loader/safetensors.h"

struct ld_stw;

/* Creates the temporary file next to path.  On error: negative errno and one
 * line in err naming the file. */
int ld_stw_open(const char *path, struct ld_stw **out, char *err, size_t errlen);
/* Declares the next tensor (ndim 0..LD_MAX_DIMS).  -EINVAL for a bad name
 * or shape or a call after ld_stw_begin. */
int ld_stw_add(struct ld_stw *w, const char *name, enum ld_dtype dt,
	       int ndim, const int64_t *shape);
/* Writes the header: 8-byte LE length + JSON (with __metadata__ format pt),
 * padded with spaces to a multiple of 8 bytes.  -EEXIST for a name declared
 * twice. */
int ld_stw_begin(struct ld_stw *w);
/* Appends n bytes of tensor data; writes may split or join tensors freely
 * but never go past the declared total (-EOVERFLOW). */
int ld_stw_write(struct ld_stw *w, const void *data, size_t n);
/* Checks that exactly the declared bytes were written, flushes, fsyncs and
 * renames into place; on any failure (this call's or an earlier one's)
 * removes the temporary file and writes the error line into err.  Frees w
 * either way.  NULL is a no-op. */
int ld_stw_close(struct ld_stw *w, char *err, size_t errlen);
/* Drops the temporary file and frees w.  NULL is a no-op. */
void ld_stw_abort(struct ld_stw *w);

/* Bytes of data declared so far (excluding the header). */
uint64_t ld_stw_data_bytes(const struct ld_stw *w);
/* The last error of w as one line ("FILE: problem"). */
const char *ld_stw_error(const struct ld_stw *w);

/* Converts n floats to dtype dt (round to nearest even for f16/bf16). */
void ld_from_f32(void *dst, const float *src, enum ld_dtype dt, size_t n);

#endif
