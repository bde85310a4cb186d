/* The XRT backend: one buffer object (BO) per slot in the memory bank that
 * the kernel's weight argument is connected to, filled by one copy thread
 * (xrtBOWrite into the BO's host shadow, hashed while in cache, then
 * xrtBOSync to the card), and the expert FFN run on the card by the kernel
 * in device.xclbin (argument interface: fpga/README.md).  The dense path
 * stays on the CPU; only experts go to the card.
 *
 * XRT 2.13 aborts the process (std::terminate) when it cannot find its
 * driver shim, so everything that can fail that way is checked here first,
 * with a message that names the problem. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xrt/xrt_bo.h>
#include <xrt/xrt_device.h>
#include <xrt/xrt_kernel.h>

#include "loader/backend_xrt.h"
#include "loader/loadq.h"
#include "loader/store.h"

#define CHUNK (256u << 10)     /* copy+hash step; fits in L2 */
#define SHIM_SOVERSION "2"     /* XRT 2.x: $XILINX_XRT/lib/libxrt_core.so.2 */

struct xrt {
	struct ld_backend base;
	xrtDeviceHandle dev;
	xrtKernelHandle kern;
	xrtRunHandle run;
	int grp[3];                /* memory bank of x, w, out */
	xrtBufferHandle *bo;       /* [n_slots] */
	uint8_t **shadow;          /* [n_slots]: the BOs' host memory (xrtBOMap) */
	xrtBufferHandle xin, xout; /* activations, io_bytes each */
	size_t io_bytes;
	ld_xrt_kernel_fn *emu;     /* noop emulation only: computes the runs */
	struct ld_loadq lq;
};

static struct xrt *X(struct ld_backend *be)
{
	return (struct xrt *)be;
}

/* XRT's C API sets errno on some failures only. */
static int xerr(int fallback)
{
	return errno > 0 ? -errno : fallback;
}

static const char *kernel_name(const struct ld_backend_conf *c)
{
	return c && c->kernel && c->kernel[0] ? c->kernel : "moe_expert";
}

/* ---- checks before any XRT call ---- */

static int check_xclbin(const struct ld_backend_conf *c, char *err, size_t n)
{
	struct stat st;

	if (!c || !c->xclbin || !c->xclbin[0]) {
		snprintf(err, n, "xrt backend: device.xclbin is not set: it names the FPGA "
			 "binary holding kernel '%s' (see fpga/README.md)", kernel_name(c));
		return -EINVAL;
	}
	if (stat(c->xclbin, &st) < 0 || access(c->xclbin, R_OK) < 0) {
		int e = errno;
		snprintf(err, n, "xrt backend: device.xclbin '%s': %s", c->xclbin, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, n, "xrt backend: device.xclbin '%s': not a regular file", c->xclbin);
		return -EINVAL;
	}
	return 0;
}

/* The shim XRT will dlopen: $XILINX_XRT/lib/lib<shim>.so.2, the shim named
 * by XCL_EMULATION_MODE (unset: the hardware one). */
static int shim_path(char *path, size_t size, bool *emu, char *err, size_t n)
{
	const char *root = getenv("XILINX_XRT"), *mode = getenv("XCL_EMULATION_MODE");
	const char *shim = "xrt_core";

	*emu = mode != NULL;
	if (!root || !root[0]) {
		snprintf(err, n, "xrt backend: XILINX_XRT is not set: XRT loads its driver from "
			 "$XILINX_XRT/lib (an XRT install: source /opt/xilinx/xrt/setup.sh; "
			 "Debian's libxrt: see fpga/README.md)");
		return -ENODEV;
	}
	if (mode && !strcmp(mode, "sw_emu"))
		shim = "xrt_swemu";
	else if (mode && !strcmp(mode, "hw_emu"))
		shim = "xrt_hwemu";
	else if (mode && !strcmp(mode, "noop"))
		shim = "xrt_noop";
	else if (mode) {
		snprintf(err, n, "xrt backend: XCL_EMULATION_MODE '%s' is not sw_emu, hw_emu or "
			 "noop", mode);
		return -EINVAL;
	}
	snprintf(path, size, "%s/lib/lib%s.so." SHIM_SOVERSION, root, shim);
	if (access(path, R_OK) < 0) {
		int e = errno;
		snprintf(err, n, "xrt backend: no XRT driver at %s (from XILINX_XRT=%s): %s",
			 path, root, strerror(e));
		return -ENODEV;
	}
	return 0;
}

/* Cards the hardware shim sees (xclProbe), asked directly: quiet, unlike a
 * failing xrtDeviceOpen.  The library stays loaded: XRT loads it again
 * for the device and does not expect it to go away. */
static int count_cards(const char *shim, unsigned *count, char *err, size_t n)
{
	void *h = dlopen(shim, RTLD_NOW | RTLD_LOCAL);
	unsigned (*probe)(void);

	if (!h) {
		snprintf(err, n, "xrt backend: %s: %s", shim, dlerror());
		return -ENODEV;
	}
	probe = (unsigned (*)(void))dlsym(h, "xclProbe");
	if (!probe) {
		snprintf(err, n, "xrt backend: %s has no xclProbe: not an XRT driver shim", shim);
		return -ENODEV;
	}
	*count = probe();
	return 0;
}

int ld_backend_xrt_check(const struct ld_backend_conf *conf, char *err, size_t errlen)
{
	int index = conf ? conf->index : 0, rc;
	char shim[4096];
	unsigned cards = 0;
	bool emu;

	if ((rc = check_xclbin(conf, err, errlen)) < 0)
		return rc;
	if ((rc = shim_path(shim, sizeof(shim), &emu, err, errlen)) < 0)
		return rc;
	if (emu)
		return 0;               /* the emulator has its own device list */
	if ((rc = count_cards(shim, &cards, err, errlen)) < 0)
		return rc;
	if (cards == 0) {
		snprintf(err, errlen, "xrt backend: no FPGA device found (XRT's driver sees no "
			 "card: is one installed, with the xocl driver loaded?)");
		return -ENODEV;
	}
	if (index < 0 || (unsigned)index >= cards) {
		snprintf(err, errlen, "xrt backend: device.index %d: XRT sees %u card%s",
			 index, cards, cards == 1 ? "" : "s");
		return -ENODEV;
	}
	return 0;
}

/* ---- copy thread ---- */

static int copy_job(void *ctx, const struct ld_loadq_job *j)
{
	struct xrt *x = ctx;
	uint8_t *dst = x->shadow[j->slot];
	const uint8_t *src = j->src;
	struct ld_xxh64 h;

	ld_loadq_readahead(src, j->bytes);
	ld_xxh64_init(&h);
	for (size_t off = 0; off < j->bytes; off += CHUNK) {
		size_t n = j->bytes - off < CHUNK ? j->bytes - off : CHUNK;
		errno = 0;
		if (xrtBOWrite(x->bo[j->slot], src + off, n, off))
			return xerr(-EIO);
		if (j->check)
			ld_xxh64_update(&h, dst + off, n);
	}
	if (j->check && ld_xxh64_digest(&h) != j->sum)
		return -EBADMSG;
	errno = 0;
	return xrtBOSync(x->bo[j->slot], XCL_BO_SYNC_BO_TO_DEVICE, j->bytes, 0) ? xerr(-EIO) : 0;
}

/* ---- slot pool ---- */

static void xrt_pool_free(struct ld_backend *be)
{
	struct xrt *x = X(be);

	ld_loadq_free(&x->lq);
	for (size_t i = 0; x->bo && i < be->n_slots; i++)
		if (x->bo[i])
			xrtBOFree(x->bo[i]);
	free(x->bo);
	free(x->shadow);
	x->bo = NULL;
	x->shadow = NULL;
	be->n_slots = be->slot_bytes = be->slot_stride = 0;
	be->pool_locked = false;
}

static int xrt_pool_alloc(struct ld_backend *be, size_t n_slots, size_t slot_bytes)
{
	struct xrt *x = X(be);
	size_t stride = (slot_bytes + 4095) / 4096 * 4096;

	if (x->bo)
		return -EBUSY;
	if (!n_slots || !slot_bytes || stride > SIZE_MAX / n_slots)
		return -EINVAL;
	be->n_slots = n_slots;
	be->slot_bytes = slot_bytes;
	be->slot_stride = stride;
	x->bo = calloc(n_slots, sizeof(*x->bo));
	x->shadow = calloc(n_slots, sizeof(*x->shadow));
	if (!x->bo || !x->shadow || ld_loadq_alloc(&x->lq, n_slots) < 0) {
		xrt_pool_free(be);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n_slots; i++) {
		errno = 0;
		x->bo[i] = xrtBOAlloc(x->dev, stride, XRT_BO_FLAGS_NONE,
				      (xrtMemoryGroup)x->grp[LD_XRT_ARG_W]);
		if (x->bo[i])
			x->shadow[i] = xrtBOMap(x->bo[i]);
		if (!x->bo[i] || !x->shadow[i]) {
			int rc = xerr(-ENOMEM);
			xrt_pool_free(be);
			return rc;
		}
	}
	be->pool_locked = true;    /* device memory: nothing pages it out */
	return 0;
}

static void *xrt_slot_ptr(struct ld_backend *be, size_t slot)
{
	(void)be;
	(void)slot;
	return NULL;               /* card memory */
}

int ld_backend_xrt_slot_read(struct ld_backend *be, size_t slot, void *dst, size_t bytes)
{
	struct xrt *x = X(be);

	if (strcmp(be->ops->name, "xrt") || slot >= be->n_slots || bytes > be->slot_stride)
		return -EINVAL;
	errno = 0;
	if (xrtBOSync(x->bo[slot], XCL_BO_SYNC_BO_FROM_DEVICE, bytes, 0) ||
	    xrtBORead(x->bo[slot], dst, bytes, 0))
		return xerr(-EIO);
	return 0;
}

int ld_backend_xrt_emulate(struct ld_backend *be, ld_xrt_kernel_fn *fn)
{
	const char *mode = getenv("XCL_EMULATION_MODE");

	if (strcmp(be->ops->name, "xrt") || !mode || strcmp(mode, "noop"))
		return -EPERM;
	X(be)->emu = fn;
	return 0;
}

/* ---- loads ---- */

static int xrt_load_async(struct ld_backend *be, size_t slot, const void *src, size_t bytes,
			  const uint64_t *checksum, unsigned flags, struct ld_ticket *t)
{
	if (slot >= be->n_slots || bytes > be->slot_bytes || !src)
		return -EINVAL;
	return ld_loadq_submit(&X(be)->lq, slot, src, bytes, checksum, flags, t);
}

static int xrt_wait(struct ld_backend *be, struct ld_ticket t)
{
	return ld_loadq_wait(&X(be)->lq, t);
}

static int xrt_poll(struct ld_backend *be, struct ld_ticket t, int *rc)
{
	return ld_loadq_poll(&X(be)->lq, t, rc);
}

/* ---- the expert kernel ---- */

/* Activation BOs big enough for io bytes; they only grow (rarely: the
 * engine's row count per expert is bounded by its chunk). */
static int ensure_io(struct xrt *x, size_t io)
{
	if (io <= x->io_bytes)
		return 0;
	if (x->xin)
		xrtBOFree(x->xin);
	if (x->xout)
		xrtBOFree(x->xout);
	x->io_bytes = 0;
	errno = 0;
	x->xin = xrtBOAlloc(x->dev, io, XRT_BO_FLAGS_NONE, (xrtMemoryGroup)x->grp[LD_XRT_ARG_X]);
	x->xout = xrtBOAlloc(x->dev, io, XRT_BO_FLAGS_NONE,
			     (xrtMemoryGroup)x->grp[LD_XRT_ARG_OUT]);
	if (!x->xin || !x->xout)
		return xerr(-ENOMEM);
	x->io_bytes = io;
	return 0;
}

static int set_args(struct xrt *x, size_t slot, int n, int hidden, int inter)
{
	return xrtRunSetArg(x->run, LD_XRT_ARG_X, x->xin) ||
	       xrtRunSetArg(x->run, LD_XRT_ARG_W, x->bo[slot]) ||
	       xrtRunSetArg(x->run, LD_XRT_ARG_OUT, x->xout) ||
	       xrtRunSetArg(x->run, LD_XRT_ARG_N, n) ||
	       xrtRunSetArg(x->run, LD_XRT_ARG_HIDDEN, hidden) ||
	       xrtRunSetArg(x->run, LD_XRT_ARG_INTER, inter) ||
	       xrtRunSetArg(x->run, LD_XRT_ARG_DTYPE, (int)LD_XRT_DTYPE_F32);
}

/* Called by the compute thread only (one run handle). */
static int xrt_run_expert(struct ld_backend *be, size_t slot, const float *xs, int n,
			  int hidden, int inter, float *out)
{
	struct xrt *x = X(be);
	size_t io = (size_t)n * (size_t)hidden * sizeof(float);
	int rc;

	if (slot >= be->n_slots || n <= 0 || hidden <= 0 || inter <= 0 ||
	    3 * (size_t)inter * (size_t)hidden * sizeof(float) > be->slot_bytes)
		return -EINVAL;
	if ((rc = ensure_io(x, io)) < 0)
		return rc;
	errno = 0;
	if (xrtBOWrite(x->xin, xs, io, 0) || xrtBOSync(x->xin, XCL_BO_SYNC_BO_TO_DEVICE, io, 0) ||
	    set_args(x, slot, n, hidden, inter) || xrtRunStart(x->run))
		return xerr(-EIO);
	if (xrtRunWait(x->run) != ERT_CMD_STATE_COMPLETED)
		return -EIO;
	if (x->emu)
		x->emu(xrtBOMap(x->xin), (const float *)x->shadow[slot], xrtBOMap(x->xout), n,
		       hidden, inter, LD_XRT_DTYPE_F32);
	errno = 0;
	if (xrtBOSync(x->xout, XCL_BO_SYNC_BO_FROM_DEVICE, io, 0) ||
	    xrtBORead(x->xout, out, io, 0))
		return xerr(-EIO);
	return 0;
}

/* ---- open / close ---- */

static void xrt_close(struct ld_backend *be)
{
	struct xrt *x = X(be);

	if (x->bo)
		xrt_pool_free(be);
	ld_loadq_destroy(&x->lq);
	if (x->xin)
		xrtBOFree(x->xin);
	if (x->xout)
		xrtBOFree(x->xout);
	if (x->run)
		xrtRunClose(x->run);
	if (x->kern)
		xrtKernelClose(x->kern);
	if (x->dev)
		xrtDeviceClose(x->dev);
	free(x);
}

static const struct ld_backend_ops xrt_ops = {
	.name = "xrt",
	.caps = LD_BE_VERIFY,
	.pool_alloc = xrt_pool_alloc,
	.slot_ptr = xrt_slot_ptr,
	.load_async = xrt_load_async,
	.wait = xrt_wait,
	.poll = xrt_poll,
	.pool_free = xrt_pool_free,
	.close = xrt_close,
	.run_expert = xrt_run_expert,
};

/* Device, xclbin, kernel, run handle and the banks of its buffer args. */
static int open_device(struct xrt *x, const struct ld_backend_conf *c, char *err, size_t n)
{
	const char *kname = kernel_name(c);
	xuid_t uuid;

	int rc;

	errno = 0;
	if (!(x->dev = xrtDeviceOpen((unsigned)c->index))) {
		rc = xerr(-ENODEV);
		snprintf(err, n, "xrt backend: cannot open device %d: %s", c->index,
			 strerror(-rc));
		return rc;
	}
	errno = 0;
	if (xrtDeviceLoadXclbinFile(x->dev, c->xclbin) || xrtDeviceGetXclbinUUID(x->dev, uuid)) {
		rc = xerr(-EIO);
		snprintf(err, n, "xrt backend: device %d: cannot load %s: %s", c->index,
			 c->xclbin, strerror(-rc));
		return rc;
	}
	errno = 0;
	if (!(x->kern = xrtPLKernelOpen(x->dev, uuid, kname))) {
		snprintf(err, n, "xrt backend: %s has no kernel '%s' (device.kernel)", c->xclbin,
			 kname);
		return -ENOENT;
	}
	for (int a = LD_XRT_ARG_X; a <= LD_XRT_ARG_OUT; a++)
		if ((x->grp[a] = xrtKernelArgGroupId(x->kern, a)) < 0) {
			snprintf(err, n, "xrt backend: kernel '%s' in %s: argument %d is not a "
				 "buffer; see fpga/README.md for the interface", kname,
				 c->xclbin, a);
			return -EINVAL;
		}
	errno = 0;
	if (!(x->run = xrtRunOpen(x->kern))) {
		rc = xerr(-EIO);
		snprintf(err, n, "xrt backend: kernel '%s': cannot open a run: %s", kname,
			 strerror(-rc));
		return rc;
	}
	return 0;
}

int ld_backend_xrt_open(const struct ld_backend_conf *conf, struct ld_backend **out,
			char *err, size_t errlen)
{
	struct xrt *x;
	int rc;

	*out = NULL;
	if ((rc = ld_backend_xrt_check(conf, err, errlen)) < 0)
		return rc;
	if (!(x = calloc(1, sizeof(*x)))) {
		snprintf(err, errlen, "xrt backend: out of memory");
		return -ENOMEM;
	}
	x->base.ops = &xrt_ops;
	x->base.dev_index = conf->index;
	ld_loadq_init(&x->lq, copy_job, x);
	if ((rc = open_device(x, conf, err, errlen)) < 0)
		goto fail;
	if ((rc = ld_loadq_start(&x->lq)) < 0) {
		snprintf(err, errlen, "xrt backend: copy thread: %s", strerror(-rc));
		goto fail;
	}
	*out = &x->base;
	return 0;
fail:
	xrt_close(&x->base);
	return rc;
}
