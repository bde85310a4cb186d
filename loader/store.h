/* The pack store (host tier): every expert of a model in f32 (the CPU
 * engine's dtype) or, for a bf16 checkpoint, bf16 (for the CUDA backend, whose
 * slots and kernels take bf16: half the PCIe and HBM bytes), one contiguous
 * 4096-aligned block per expert, behind a header with
 * the format version, a hash of the source model, a layout table and
 * checksums.  Format: loader/PACK_FORMAT.md.
 *
 * The file is written once (temp file, fsync, rename) and then mapped
 * read-only and MAP_SHARED by any number of processes. */
#ifndef LD_STORE_H
#define LD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LD_STORE_MAGIC "MOEDPACK"
#define LD_STORE_VERSION 1u
#define LD_STORE_ALIGN 4096u

struct ld_model;               /* loader/model.h */
struct ld_store;

/* On disk, little-endian (the host's order; version 1 is not portable to
 * big-endian hosts).  The header is followed at table_offset by one entry per
 * expert, layer-major; header_checksum is XXH64 over the header and the
 * table with that field zero. */
struct ld_pack_header {
	char magic[8];             /* "MOEDPACK" */
	uint32_t version;
	uint32_t dtype;            /* enum ld_dtype of the stored weights */
	uint32_t n_layers;
	uint32_t n_experts;
	uint32_t hidden;
	uint32_t inter;
	uint32_t align;            /* LD_STORE_ALIGN */
	uint32_t flags;            /* 0 */
	uint64_t expert_bytes;
	uint64_t model_hash;
	uint64_t table_offset;     /* sizeof(struct ld_pack_header) */
	uint64_t data_offset;      /* first expert; multiple of align */
	uint64_t file_bytes;
	uint64_t header_checksum;
	uint8_t reserved[40];      /* zero */
};

struct ld_pack_entry {
	uint64_t offset;           /* multiple of align, ascending, no overlap */
	uint64_t checksum;         /* XXH64 of the expert's expert_bytes */
};

struct ld_store_info {
	uint32_t version;
	int n_layers;              /* MoE layers */
	int n_experts;             /* per layer */
	int hidden;
	int inter;                 /* expert MLP width */
	int dtype;                 /* enum ld_dtype: LD_F32 or LD_BF16 */
	size_t expert_bytes;       /* gate [I][H] | up [I][H] | down [H][I] */
	uint64_t model_hash;       /* ld_store_model_hash of the source */
	size_t file_bytes;
};

/* XXH64 (seed 0): the pack's checksum and hash function. */
struct ld_xxh64 {
	uint64_t v[4];
	uint64_t total;
	uint8_t buf[32];
	size_t nbuf;
};
void ld_xxh64_init(struct ld_xxh64 *h);
void ld_xxh64_update(struct ld_xxh64 *h, const void *p, size_t n);
uint64_t ld_xxh64_digest(const struct ld_xxh64 *h);
uint64_t ld_xxh64(const void *p, size_t n);

/* header_checksum of a header (that field taken as zero) and its table. */
uint64_t ld_store_header_checksum(const struct ld_pack_header *hd, const void *table,
				  size_t table_bytes);

/* Hash of an HF model directory, cheap (no full read): config.json's bytes,
 * then for each safetensors file in load order its name, size, header and
 * the first and last 4 KiB of its data.  Edits that keep every tensor's
 * header, size and both ends of each file go unnoticed. */
int ld_store_model_hash(const char *dir, uint64_t *out, char *err, size_t errlen);

/* Writes the pack of m to out_path atomically (temp file in the same
 * directory, fsync, rename, fsync of the directory).  With progress, a
 * progress line goes to stderr when stderr is a TTY. */
int ld_store_pack(const struct ld_model *m, const char *out_path, bool progress,
		  char *err, size_t errlen);
/* As ld_store_pack, experts stored as dtype: LD_F32, or LD_BF16 when the
 * checkpoint's experts are bf16 (exact); else -EINVAL. */
int ld_store_pack_dtype(const struct ld_model *m, const char *out_path, int dtype,
			bool progress, char *err, size_t errlen);

/* Maps path read-only (MAP_SHARED) and validates magic, version, sizes,
 * header checksum, the layout table's bounds and, when expect_hash is not 0,
 * the model hash.  Per-expert checksums are checked when an expert is loaded
 * (see ld_store_verify_expert and the cache) or all at once with
 * ld_store_verify_all.  -EBADMSG (corrupt), -ESTALE (other model),
 * -EPROTO (other version), -errno from the system. */
int ld_store_open(const char *path, uint64_t expect_hash, struct ld_store **out,
		  char *err, size_t errlen);
void ld_store_close(struct ld_store *s);

/* Opens pack_path if it exists and matches m; otherwise (re)packs it, with
 * progress on a TTY, and opens the result.  A pack that exists but fails
 * validation is replaced. */
int ld_store_ensure(const struct ld_model *m, const char *pack_path,
		    struct ld_store **out, char *err, size_t errlen);
/* As ld_store_ensure for a pack of experts stored as dtype; a valid pack of
 * another dtype is replaced too. */
int ld_store_ensure_dtype(const struct ld_model *m, const char *pack_path, int dtype,
			  struct ld_store **out, char *err, size_t errlen);

const struct ld_store_info *ld_store_info(const struct ld_store *s);
const char *ld_store_path(const struct ld_store *s);
/* Start of expert (layer, expert) inside the mapping (expert_bytes long). */
const void *ld_store_expert(const struct ld_store *s, int layer, int expert);
uint64_t ld_store_expert_checksum(const struct ld_store *s, int layer, int expert);
/* Checks one expert's checksum: 0 or -EBADMSG with "FILE: layer L expert E:
 * checksum mismatch" in err. */
int ld_store_verify_expert(const struct ld_store *s, int layer, int expert,
			   char *err, size_t errlen);
/* Every expert; reads the whole file. */
int ld_store_verify_all(const struct ld_store *s, char *err, size_t errlen);

#endif
