/* The xrt backend.  Without a card: ld_backend_open / rt_open / `moed run` /
 * `moed serve` with device.backend=xrt fail at start with one line naming
 * the problem (not built, xclbin unset or missing, XILINX_XRT, no card).
 * With XRT's noop shim (XCL_EMULATION_MODE=noop, in Debian's libxrt1) and a
 * hand-made xclbin: the BO slot pool and the loads from the pack, the kernel
 * runs through the cache, and whole forward passes against HF's logits, with
 * fpga/moe_expert.cpp compiled for the CPU standing in for the card (the
 * noop shim completes runs without computing). */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/rt.c"          /* rt_open, rt_check */
#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/model.h"
#include "loader/store.h"
#include "tests/refs.h"
#include "tests/suite_run.h"

#ifdef HAVE_XRT
#include <dlfcn.h>
#include <libgen.h>
#include <xrt/xclbin.h>
#include <xrt/xrt_bo.h>

#include "loader/backend_xrt.h"
#endif

#ifdef HAVE_MOE_CSIM
/* fpga/moe_expert.cpp built for the CPU (tests/meson.build). */
void moe_expert(const float *x, const float *w, float *out, int n, int hidden, int inter,
		int dtype);
#endif

static char err[1024];
static char tmpdir[512];

#if defined(HAVE_XRT) && defined(__SANITIZE_ADDRESS__)
/* XRT 2.13 starts a kernel run with aligned_alloc(4096, 256): valid C17
 * (glibc serves it) but ASan aborts on a size that is not a multiple of the
 * alignment.  This binary's definition comes first for XRT too. */
void *aligned_alloc(size_t align, size_t size)
{
	void *p;

	return posix_memalign(&p, align, size) ? NULL : p;
}
#endif

static const char *fixture(const char *name)
{
	static char dir[600];
	const char *fx = getenv("MOED_FIXTURES");

	ck_assert_ptr_nonnull(fx);
	snprintf(dir, sizeof(dir), "%s/%s", fx, name);
	return dir;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void tmp_setup(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/moed-xrt-XXXXXX", t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	unsetenv("XILINX_XRT");
	unsetenv("XCL_EMULATION_MODE");
}

static void tmp_teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *name)
{
	static char p[4][700];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
	return p[i];
}

static void xrt_config(struct moed_config *c, const char *xclbin)
{
	cfg_defaults(c);
	snprintf(c->model.path, sizeof(c->model.path), "%s", fixture("mixtral_f32"));
	snprintf(c->model.pack, sizeof(c->model.pack), "%s", tmp_path("m.pack"));
	c->device.backend = CFG_BACKEND_XRT;
	snprintf(c->device.xclbin, sizeof(c->device.xclbin), "%s", xclbin ? xclbin : "");
}

/* Runs argv; its exit status, and its stderr in out. */
static int run_cmd(char *const argv[], char *out, size_t n)
{
	int fd[2], st;
	size_t len = 0;
	ssize_t r;
	pid_t pid;

	ck_assert_int_eq(pipe(fd), 0);
	if ((pid = fork()) == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		freopen("/dev/null", "w", stdout);
		execv(argv[0], argv);
		_exit(127);
	}
	ck_assert_int_gt(pid, 0);
	close(fd[1]);
	while (len + 1 < n && (r = read(fd[0], out + len, n - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(fd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- without a card (every build) ---- */

#ifndef HAVE_XRT
START_TEST(not_built)
{
	struct ld_backend *be = (struct ld_backend *)1;

	ck_assert_int_eq(ld_backend_open("xrt", &be, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_null(be);
	ck_assert_msg(strstr(err, "built without XRT"), "%s", err);
	ck_assert_int_eq(ld_backend_check("xrt", NULL, err, sizeof(err)), -ENOTSUP);
	ck_assert_msg(strstr(err, "built without XRT"), "%s", err);
}
END_TEST
#else
static void touch(const char *path)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs("not an xclbin\n", f);
	fclose(f);
}

/* What the backend checks, in order, before any XRT call. */
START_TEST(checks)
{
	struct ld_backend_conf c = {.xclbin = tmp_path("k.xclbin"), .kernel = "moe_expert"};
	struct ld_backend *be = (struct ld_backend *)1;

	ck_assert_int_eq(ld_backend_open_conf("xrt", NULL, &be, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(be);
	ck_assert_msg(strstr(err, "device.xclbin is not set"), "%s", err);
	ck_assert_int_eq(ld_backend_check("xrt", &c, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "device.xclbin '") && strstr(err, "k.xclbin': No such file"),
		      "%s", err);
	touch(c.xclbin);
	ck_assert_int_eq(ld_backend_check("xrt", &c, err, sizeof(err)), -ENODEV);
	ck_assert_msg(strstr(err, "XILINX_XRT is not set"), "%s", err);
	setenv("XILINX_XRT", tmpdir, 1);
	ck_assert_int_eq(ld_backend_open_conf("xrt", &c, &be, err, sizeof(err)), -ENODEV);
	ck_assert_msg(strstr(err, "no XRT driver at ") && strstr(err, "/lib/libxrt_core.so.2"),
		      "%s", err);
	setenv("XCL_EMULATION_MODE", "fpga", 1);
	ck_assert_int_eq(ld_backend_check("xrt", &c, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "XCL_EMULATION_MODE 'fpga'"), "%s", err);
}
END_TEST

/* $XILINX_XRT for Debian's libxrt: a directory whose lib is the
 * directory that holds libxrt_coreutil (XRT wants $XILINX_XRT/lib/...). */
static void fake_xilinx_xrt(void)
{
	Dl_info di;
	char lib[600];

	ck_assert(dladdr((void *)xrtBOAlloc, &di) && di.dli_fname);
	snprintf(lib, sizeof(lib), "%s", di.dli_fname);
	ck_assert_int_eq(symlink(dirname(lib), tmp_path("lib")), 0);
	setenv("XILINX_XRT", tmpdir, 1);
}

/* The real hardware shim, asked for cards: none on a test machine; a card
 * index past any plausible count fails either way. */
START_TEST(no_card)
{
	struct ld_backend_conf c = {.index = 63, .xclbin = tmp_path("k.xclbin")};
	struct ld_backend *be = (struct ld_backend *)1;

	touch(c.xclbin);
	fake_xilinx_xrt();
	ck_assert_int_eq(ld_backend_open_conf("xrt", &c, &be, err, sizeof(err)), -ENODEV);
	ck_assert_ptr_null(be);
	ck_assert_msg(strstr(err, "no FPGA device found") ||
		      strstr(err, "device.index 63: XRT sees"), "%s", err);
}
END_TEST
#endif

/* rt_open (moed run, the worker) checks the backend before packing. */
START_TEST(rt_no_xclbin)
{
	struct moed_config c;
	struct rt rt;
	struct stat st;

	xrt_config(&c, "/nonexistent.xclbin");
	ck_assert_int_lt(rt_open(&c, 64, &rt, err, sizeof(err)), 0);
#ifdef HAVE_XRT
	ck_assert_msg(strstr(err, "device.xclbin '/nonexistent.xclbin': No such file"), "%s", err);
#else
	ck_assert_msg(strstr(err, "built without XRT"), "%s", err);
#endif
	ck_assert_int_ne(stat(c.model.pack, &st), 0);     /* nothing packed */
}
END_TEST

static void check_cli_line(const char *out)
{
	ck_assert_msg(lines(out) == 1, "want one line, got: %s", out);
#ifdef HAVE_XRT
	ck_assert_msg(strstr(out, "device.xclbin '/nonexistent.xclbin': No such file"), "%s",
		      out);
#else
	ck_assert_msg(strstr(out, "built without XRT"), "%s", out);
#endif
}

START_TEST(cli_run)
{
	char *bin = getenv("MOED_BIN"), out[4096];
	char *argv[] = {bin, "run", "--model", (char *)fixture("mixtral_f32"), "--tokens", "1,2",
			"--set", "device.backend=xrt", "--set", "device.xclbin=/nonexistent.xclbin",
			"--set", NULL, NULL};
	char pack[800];

	ck_assert_ptr_nonnull(bin);
	snprintf(pack, sizeof(pack), "model.pack=%s", tmp_path("r.pack"));
	argv[11] = pack;
	ck_assert_int_ne(run_cmd(argv, out, sizeof(out)), 0);
	ck_assert_msg(!strncmp(out, "moed run: ", 10), "%s", out);
	check_cli_line(out);
}
END_TEST

/* serve fails at start instead of restarting a worker that cannot work. */
START_TEST(cli_serve)
{
	char *bin = getenv("MOED_BIN"), out[4096], pack[800];
	char *argv[] = {bin, "serve", "--model", (char *)fixture("mixtral_f32"), "--listen",
			"127.0.0.1:0", "--set", "device.backend=xrt", "--set",
			"device.xclbin=/nonexistent.xclbin", "--set", NULL, NULL};

	ck_assert_ptr_nonnull(bin);
	snprintf(pack, sizeof(pack), "model.pack=%s", tmp_path("s.pack"));
	setenv("RUNTIME_DIRECTORY", tmpdir, 1);
	argv[11] = pack;
	ck_assert_int_ne(run_cmd(argv, out, sizeof(out)), 0);
	check_cli_line(out);
}
END_TEST

#ifdef HAVE_XRT
/* ---- XRT's noop shim: a device whose BOs are host memory and whose kernel
 * runs complete at once ---- */

static void *cat(void *dst, size_t *off, const void *src, size_t n)
{
	memcpy((char *)dst + *off, src, n);
	*off = (*off + n + 7) & ~(size_t)7;
	return dst;
}

/* The kernel's metadata as v++ writes it: argument list and instance. */
static int kernel_xml(char *xml, size_t n, const char *kernel)
{
	static const char *const arg[][2] = {{"x", "float*"}, {"w", "float*"}, {"out", "float*"},
		{"n", "int"}, {"hidden", "int"}, {"inter", "int"}, {"dtype", "int"}};
	int len = snprintf(xml, n, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<project name=\"%s\"><platform vendor=\"xilinx\" boardid=\"test\" name=\"t\" "
		"featureRomTime=\"0\"><device name=\"fpga0\" fpgaDevice=\"\" addrWidth=\"0\">"
		"<core name=\"OCL_REGION_0\" target=\"bitstream\" type=\"clc_region\" "
		"clockFreq=\"0MHz\" numComputeUnits=\"1\"><kernel name=\"%s\" language=\"c\" "
		"vlnv=\"xilinx.com:hls:%s:1.0\" preferredWorkGroupSizeMultiple=\"0\" "
		"workGroupSize=\"1\" interrupt=\"true\" hwControlProtocol=\"ap_ctrl_hs\">"
		"<port name=\"M_AXI_GMEM\" mode=\"master\" range=\"0xFFFFFFFF\" dataWidth=\"32\" "
		"portType=\"addressable\" base=\"0x0\"/><port name=\"S_AXI_CONTROL\" "
		"mode=\"slave\" range=\"0x1000\" dataWidth=\"32\" portType=\"addressable\" "
		"base=\"0x0\"/>", kernel, kernel, kernel);
	for (int i = 0, off = 0x10; i < 7; i++) {
		int ptr = i < 3, size = ptr ? 8 : 4;
		len += snprintf(xml + len, n - (size_t)len, "<arg name=\"%s\" addressQualifier=\"%d\" "
			"id=\"%d\" port=\"%s\" size=\"0x%x\" offset=\"0x%x\" hostOffset=\"0x0\" "
			"hostSize=\"0x%x\" type=\"%s\"/>", arg[i][0], ptr, i,
			ptr ? "M_AXI_GMEM" : "S_AXI_CONTROL", size, off, size, arg[i][1]);
		off += ptr ? 12 : 8;
	}
	len += snprintf(xml + len, n - (size_t)len, "<instance name=\"%s_1\"><addrRemap "
		"base=\"0x1800000\" range=\"0x10000\" port=\"S_AXI_CONTROL\"/></instance>"
		"</kernel></core></device></platform></project>", kernel);
	return len + 1;
}

/* An xclbin with no bitstream: the sections XRT reads to find a kernel (its
 * XML metadata, IP layout, one memory bank, the args' connectivity). */
static void write_xclbin(const char *path, const char *kernel)
{
	char xml[4096], ipb[sizeof(struct ip_layout)] = {0}, conb[4 + 3 * 12] = {0};
	struct mem_topology mem = {.m_count = 1};
	struct ip_layout *ip = (struct ip_layout *)ipb;
	struct connectivity *con = (struct connectivity *)conb;
	size_t xl = (size_t)kernel_xml(xml, sizeof(xml), kernel), off;
	size_t hdr = (sizeof(struct axlf) + 3 * sizeof(struct axlf_section_header) + 7) & ~7ul;
	const void *data[4] = {xml, &mem, conb, ipb};
	size_t size[4] = {xl, sizeof(mem), sizeof(conb), sizeof(ipb)};
	uint32_t kind[4] = {EMBEDDED_METADATA, MEM_TOPOLOGY, CONNECTIVITY, IP_LAYOUT};
	char *buf = calloc(1, hdr + 8192);
	struct axlf *top = (struct axlf *)buf;

	mem.m_mem_data[0] = (struct mem_data){.m_type = MEM_DRAM, .m_used = 1,
		.m_size = 16 << 20, .m_base_address = 0x4000000000};
	snprintf((char *)mem.m_mem_data[0].m_tag, 16, "bank0");
	ip->m_count = 1;
	ip->m_ip_data[0] = (struct ip_data){.m_type = IP_KERNEL, .properties = 1,
					    .m_base_address = 0x1800000};
	snprintf((char *)ip->m_ip_data[0].m_name, 64, "%s:%s_1", kernel, kernel);
	con->m_count = 3;
	for (int a = 0; a < 3; a++)
		con->m_connection[a] = (struct connection){.arg_index = a};
	memcpy(top->m_magic, "xclbin2", 8);
	top->m_signature_length = -1;
	memset(top->reserved, 0xff, sizeof(top->reserved));
	top->m_header.m_versionMajor = 2;
	top->m_header.m_numSections = 4;
	memset(top->m_header.uuid, 0x5a, sizeof(top->m_header.uuid));
	snprintf((char *)top->m_header.m_platformVBNV, 64, "moed_test");
	off = hdr;
	for (int s = 0; s < 4; s++) {
		struct axlf_section_header *h = &top->m_sections[s];
		h->m_sectionKind = kind[s];
		snprintf(h->m_sectionName, sizeof(h->m_sectionName), "s%d", s);
		h->m_sectionOffset = off;
		h->m_sectionSize = size[s];
		cat(buf, &off, data[s], size[s]);
	}
	top->m_header.m_length = off;
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(buf, 1, off, f), off);
	fclose(f);
	free(buf);
}

static struct ld_model *model;
static struct ld_store *store;

static void noop_setup(void)
{
	tmp_setup();
	fake_xilinx_xrt();
	setenv("XCL_EMULATION_MODE", "noop", 1);
	write_xclbin(tmp_path("k.xclbin"), "moe_expert");
	ck_assert_msg(ld_model_open(fixture("mixtral_f32"), &model, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_msg(ld_store_ensure(model, tmp_path("m.pack"), &store, err, sizeof(err)) == 0,
		      "%s", err);
}

static void noop_teardown(void)
{
	ld_store_close(store);
	ld_model_close(model);
	tmp_teardown();
}

static struct ld_backend *noop_open(const char *kernel)
{
	struct ld_backend_conf c = {.xclbin = tmp_path("k.xclbin"), .kernel = kernel};
	struct ld_backend *be = NULL;

	ck_assert_msg(ld_backend_open_conf("xrt", &c, &be, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(ld_backend_name(be), "xrt");
	ck_assert_uint_eq(ld_backend_caps(be) & LD_BE_HOST_PTR, 0);
	return be;
}

START_TEST(noop_wrong_kernel)
{
	struct ld_backend_conf c = {.xclbin = tmp_path("k.xclbin"), .kernel = "vadd"};
	struct ld_backend *be = (struct ld_backend *)1;

	ck_assert_int_eq(ld_backend_open_conf("xrt", &c, &be, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_null(be);
	ck_assert_msg(strstr(err, "has no kernel 'vadd' (device.kernel)"), "%s", err);
}
END_TEST

/* Loads straight through the backend: each slot's BO holds the expert
 * after the copy thread is done; a wrong checksum fails the load. */
START_TEST(noop_pool_loads)
{
	struct ld_backend *be = noop_open(NULL);
	const struct ld_store_info *in = ld_store_info(store);
	size_t eb = in->expert_bytes;
	struct ld_ticket t[3];
	uint8_t *back = malloc(eb);
	uint64_t bad;
	int rc;

	ck_assert_int_eq(be->ops->pool_alloc(be, 3, eb), 0);
	ck_assert_uint_eq(be->n_slots, 3);
	ck_assert_uint_ge(be->slot_stride, eb);
	ck_assert_ptr_null(be->ops->slot_ptr(be, 0));
	for (int round = 0; round < 2; round++) {
		for (int s = 0; s < 3; s++) {
			int e = round * 3 + s;
			uint64_t sum = ld_store_expert_checksum(store, 1, e);
			ck_assert_int_eq(be->ops->load_async(be, (size_t)s,
				ld_store_expert(store, 1, e), eb, &sum, 0, &t[s]), 0);
		}
		for (int s = 0; s < 3; s++) {
			int e = round * 3 + s;
			ck_assert_int_eq(be->ops->wait(be, t[s]), 0);
			ck_assert_int_eq(be->ops->poll(be, t[s], &rc), 1);
			ck_assert_int_eq(rc, 0);
			ck_assert_int_eq(ld_backend_xrt_slot_read(be, (size_t)s, back, eb), 0);
			ck_assert_msg(!memcmp(back, ld_store_expert(store, 1, e), eb),
				      "slot %d differs from layer 1 expert %d", s, e);
		}
	}
	bad = ld_store_expert_checksum(store, 0, 0) ^ 1;
	ck_assert_int_eq(be->ops->load_async(be, 0, ld_store_expert(store, 0, 0), eb, &bad,
					     LD_LOAD_URGENT, &t[0]), 0);
	ck_assert_int_eq(be->ops->wait(be, t[0]), -EBADMSG);
	ck_assert_int_eq(ld_backend_xrt_slot_read(be, 3, back, eb), -EINVAL);
	ck_assert_int_eq(ld_backend_xrt_emulate(be, NULL), 0);
	be->ops->pool_free(be);
	ck_assert_uint_eq(be->n_slots, 0);
	ld_backend_close(be);
	free(back);
}
END_TEST

#ifdef HAVE_MOE_CSIM
/* out = down(silu(gate x) * up x) in double, the pack's layout. */
static void ref_ffn(const float *w, const float *x, int n, int H, int I, double *out)
{
	const float *g = w, *u = w + (size_t)I * H, *d = w + 2 * (size_t)I * H;
	double *a = malloc((size_t)I * sizeof(double));

	for (int r = 0; r < n; r++) {
		for (int i = 0; i < I; i++) {
			double sg = 0, su = 0;
			for (int k = 0; k < H; k++) {
				sg += (double)g[(size_t)i * H + k] * x[(size_t)r * H + k];
				su += (double)u[(size_t)i * H + k] * x[(size_t)r * H + k];
			}
			a[i] = sg / (1 + exp(-sg)) * su;
		}
		for (int h = 0; h < H; h++) {
			double s = 0;
			for (int i = 0; i < I; i++)
				s += (double)d[(size_t)h * I + i] * a[i];
			out[(size_t)r * H + h] = s;
		}
	}
	free(a);
}

/* Through the cache, as the engine calls it: 2 slots for 16 experts, the
 * kernel (fpga/moe_expert.cpp) on the BOs, against a double reference;
 * row counts across the kernel's 8-row tiles. */
START_TEST(noop_cache_run)
{
	const struct ld_config *mc = &model->cfg;
	int H = mc->hidden_size, I = mc->moe_intermediate_size, rows[] = {1, 3, 9, 17};
	struct ld_backend *be = noop_open("moe_expert");
	struct cache_opts o = {.n_layers = mc->n_moe_layers, .n_experts = mc->n_experts,
			       .expert_bytes = ld_store_info(store)->expert_bytes, .n_slots = 2,
			       .policy = CACHE_LRU, .store = store, .backend = be};
	float *w = malloc(ld_expert_floats(mc) * sizeof(float));
	float *x = malloc(17 * (size_t)H * sizeof(float)), *out = malloc(17 * (size_t)H * 4);
	double *ref = malloc(17 * (size_t)H * sizeof(double));
	struct cache *c;
	struct cache_stats st;
	const float *wp;

	ck_assert_int_eq(ld_backend_xrt_emulate(be, moe_expert), 0);
	ck_assert_int_eq(cache_open(&o, &c), 0);
	ck_assert_ptr_nonnull(cache_expert_src(c).run);
	for (size_t i = 0; i < 17 * (size_t)H; i++)
		x[i] = (float)((i * 7919 % 2003) / 1001.5 - 1.0);
	for (int l = 0; l < mc->n_moe_layers; l++)
		for (int e = 0; e < mc->n_experts; e++) {
			int n = rows[(l * 8 + e) % 4];
			ck_assert_int_eq(cache_prefetch(c, l, e), 0);
			ck_assert_int_eq(cache_acquire(c, l, e, &wp), 0);
			ck_assert_ptr_null(wp);
			ck_assert_int_eq(cache_run_expert(c, l, e, x, n, H, I, out), 0);
			cache_release(c, l, e);
			cache_unpin_all(c);
			ld_expert_copy(model, l, e, w);
			ref_ffn(w, x, n, H, I, ref);
			double mx = 0, mref = 0;
			for (size_t i = 0; i < (size_t)n * H; i++) {
				mx = fmax(mx, fabs(out[i] - ref[i]));
				mref = fmax(mref, fabs(ref[i]));
			}
			ck_assert_msg(mref > 0 && mx <= 1e-5 * mref,
				      "layer %d expert %d rows %d: off by %g of %g", l, e, n, mx,
				      mref);
		}
	cache_get_stats(c, -1, &st);
	ck_assert_uint_eq(st.loads, 16);
	ck_assert_uint_eq(st.prefetched_used, 16);
	ck_assert_uint_eq(st.evictions, 14);
	/* Not acquired: refused. */
	ck_assert_int_eq(cache_run_expert(c, 1, 7, x, 1, H, I, out), -EINVAL);
	cache_close(c);
	ld_backend_close(be);
	free(w);
	free(x);
	free(out);
	free(ref);
}
END_TEST

/* The whole runtime on the (emulated) card: HF's last-position logits for
 * every fixture prompt, with 3 slots for 16 experts. */
START_TEST(noop_rt_matches_hf)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;
	struct moed_config c;
	struct rt rt;

	ref_load(name, &f);
	xrt_config(&c, tmp_path("k.xclbin"));
	snprintf(c.model.path, sizeof(c.model.path), "%s", fixture(name));
	snprintf(c.model.pack, sizeof(c.model.pack), "%s", tmp_path("rt.pack"));
	c.cache.slots = 3;
	ck_assert_msg(rt_open(&c, 128, &rt, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ld_backend_xrt_emulate(rt.backend, moe_expert), 0);
	int V = rt.model->cfg.vocab_size;
	float *logits = malloc((size_t)V * sizeof(float));
	double tol = ref_is_bf16(name) ? 2e-2 : 1e-4;
	for (int k = 0; k < f.n_cases; k++) {
		struct ref_case *rc = &f.cases[k];
		struct eng_seq *s;
		double mx = 0, mref = 0;

		ck_assert_int_eq(eng_seq_new(rt.eng, &s), 0);
		ck_assert_int_eq(eng_forward(rt.eng, s, rc->prompt, rc->n_prompt, logits), 0);
		for (int i = 0; i < V; i++) {
			mx = fmax(mx, fabs((double)logits[i] - rc->logits[i]));
			mref = fmax(mref, fabs((double)rc->logits[i]));
		}
		ck_assert_msg(mx <= tol * (ref_is_bf16(name) ? 1 : mref),
			      "%s prompt %d: logits off by %g (max |ref| %g)", name, rc->n_prompt,
			      mx, mref);
		eng_seq_free(s);
	}
	struct cache_stats st;
	cache_get_stats(rt.cache, -1, &st);
	ck_assert_uint_gt(st.loads, 3);   /* experts moved through 3 slots */
	free(logits);
	rt_close(&rt);
	ref_free(&f);
}
END_TEST
#endif /* HAVE_MOE_CSIM */
#endif /* HAVE_XRT */

/* (rt.c's other choice of the device section, tested here with rt_open's:)
 * device.host_threads -1 is 0 off the cuda backend; with it, the CPUs this
 * process may use less 4, at most 12, none below 8; other values stand. */
START_TEST(rt_host_threads_auto)
{
	struct moed_config c;
	cpu_set_t all, one;
	int n;

	cfg_defaults(&c);
	ck_assert_int_eq(c.device.host_threads, -1);
	ck_assert_int_eq(rt_host_threads(&c), 0);   /* host backend */
	c.device.backend = CFG_BACKEND_CUDA;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(all), &all), 0);
	n = CPU_COUNT(&all) - 4;
	ck_assert_int_eq(rt_host_threads(&c), n < 8 ? 0 : n > 12 ? 12 : n);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	ck_assert_int_eq(rt_host_threads(&c), 0);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(all), &all), 0);
	c.device.host_threads = 5;
	ck_assert_int_eq(rt_host_threads(&c), 5);
	c.device.host_threads = 0;
	ck_assert_int_eq(rt_host_threads(&c), 0);
	c.device.backend = CFG_BACKEND_HOST;
	c.device.host_threads = 5;
	ck_assert_int_eq(rt_host_threads(&c), 0);
}
END_TEST

static Suite *xrt_suite(void)
{
	Suite *s = suite_create("xrt");
	TCase *tc = tcase_create("no card");

	tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
	tcase_set_timeout(tc, 120);
#ifndef HAVE_XRT
	tcase_add_test(tc, not_built);
#else
	tcase_add_test(tc, checks);
	tcase_add_test(tc, no_card);
#endif
	tcase_add_test(tc, rt_no_xclbin);
	tcase_add_test(tc, rt_host_threads_auto);
	tcase_add_test(tc, cli_run);
	tcase_add_test(tc, cli_serve);
	suite_add_tcase(s, tc);
#ifdef HAVE_XRT
	TCase *tn = tcase_create("noop");
	tcase_add_checked_fixture(tn, noop_setup, noop_teardown);
	tcase_set_timeout(tn, 240);
	tcase_add_test(tn, noop_wrong_kernel);
	tcase_add_test(tn, noop_pool_loads);
#ifdef HAVE_MOE_CSIM
	tcase_add_test(tn, noop_cache_run);
	tcase_add_loop_test(tn, noop_rt_matches_hf, 0, ref_n_fixtures);
#endif
	suite_add_tcase(s, tn);
#endif
	return s;
}

int main(void)
{
	return suite_run(xrt_suite());
}
