/* The XRT backend (AMD/Xilinx FPGA cards; built with HAVE_XRT): the cache's
 * slots are buffer objects in the card's memory, filled from the store by a
 * copy thread, and the expert FFN runs on the card in the kernel that
 * device.xclbin holds.  That kernel's argument interface is documented in
 * fpga/README.md; fpga/moe_expert.cpp implements it in Vitis HLS C++. */
#ifndef LD_BACKEND_XRT_H
#define LD_BACKEND_XRT_H

#include <stddef.h>

#include "loader/backend.h"

/* The kernel's arguments, in order. */
enum {
	LD_XRT_ARG_X,               /* BO, float[n][hidden]: input activations */
	LD_XRT_ARG_W,               /* BO: one slot, gate [inter][hidden] | up | down [hidden][inter] */
	LD_XRT_ARG_OUT,             /* BO, float[n][hidden]: output */
	LD_XRT_ARG_N,               /* int: rows */
	LD_XRT_ARG_HIDDEN,          /* int */
	LD_XRT_ARG_INTER,           /* int */
	LD_XRT_ARG_DTYPE,           /* int: LD_XRT_DTYPE_* of w */
	LD_XRT_N_ARGS,
};

enum { LD_XRT_DTYPE_F32 = 0 };

/* Checks without opening the device: device.xclbin set and readable, XRT's
 * driver shim under $XILINX_XRT/lib, and (outside emulation) a card at
 * conf->index.  0, or a negative errno and one line in err. */
int ld_backend_xrt_check(const struct ld_backend_conf *conf, char *err, size_t errlen);
/* The checks above, then opens card conf->index, loads conf->xclbin and
 * opens kernel conf->kernel ("moe_expert" when NULL or empty). */
int ld_backend_xrt_open(const struct ld_backend_conf *conf, struct ld_backend **out,
			char *err, size_t errlen);
/* The kernel's C signature (fpga/moe_expert.cpp). */
typedef void ld_xrt_kernel_fn(const float *x, const float *w, float *out, int n, int hidden,
			      int inter, int dtype);
/* Only with XCL_EMULATION_MODE=noop, whose kernel runs complete without
 * computing anything: each run then also calls fn on the BOs' memory (the
 * noop shim's "device" memory), so the kernel source compiled for the CPU
 * stands in for the card.  For tests; -EPERM in any other mode. */
int ld_backend_xrt_emulate(struct ld_backend *be, ld_xrt_kernel_fn *fn);
/* Copies the first bytes of slot back from the card (tests, diagnostics). */
int ld_backend_xrt_slot_read(struct ld_backend *be, size_t slot, void *dst, size_t bytes);

#endif
