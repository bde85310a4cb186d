/* A GPU timeline for any CUDA program, for finding where a decode step's
 * time goes (the GPU machine has ncu but no nsys).  Built as a CUDA
 * injection library:
 *
 *   gcc -shared -fPIC -O2 -I$CUDA/include bench/cupti_trace.c \
 *       -L$CUDA/lib64 -lcupti -o cupti_trace.so
 *   CUDA_INJECTION64_PATH=$PWD/cupti_trace.so CUPTI_TRACE_OUT=t.csv prog ...
 *
 * writes one CSV line per kernel, memcpy, memset, runtime API call and
 * synchronisation: kind,start_ns,end_ns,stream_or_thread,correlation,what
 * (timestamps on one clock; `what` is the kernel's mangled name, the
 * copy's kind and bytes, the API call's name).  Not part of the build. */
#include <cupti.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BUF (8u << 20)

static FILE *out;

static void CUPTIAPI buf_requested(uint8_t **buf, size_t *size, size_t *max_records)
{
	*buf = aligned_alloc(8, BUF);
	*size = *buf ? BUF : 0;
	*max_records = 0;
}

static void record(const CUpti_Activity *r)
{
	switch (r->kind) {
	case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
	case CUPTI_ACTIVITY_KIND_KERNEL: {
		const CUpti_ActivityKernel10 *k = (const void *)r;
		fprintf(out, "K,%llu,%llu,%u,%u,%s\n", (unsigned long long)k->start,
			(unsigned long long)k->end, k->streamId, k->correlationId, k->name);
		break;
	}
	case CUPTI_ACTIVITY_KIND_MEMCPY: {
		const CUpti_ActivityMemcpy6 *m = (const void *)r;
		fprintf(out, "M,%llu,%llu,%u,%u,kind%u %llu\n", (unsigned long long)m->start,
			(unsigned long long)m->end, m->streamId, m->correlationId,
			(unsigned)m->copyKind, (unsigned long long)m->bytes);
		break;
	}
	case CUPTI_ACTIVITY_KIND_RUNTIME: {
		const CUpti_ActivityAPI *a = (const void *)r;
		const char *name = "?";
		cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name);
		fprintf(out, "R,%llu,%llu,%u,%u,%s\n", (unsigned long long)a->start,
			(unsigned long long)a->end, a->threadId, a->correlationId, name);
		break;
	}
	case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
		const CUpti_ActivitySynchronization2 *s = (const void *)r;
		fprintf(out, "S,%llu,%llu,%u,%u,type%u\n", (unsigned long long)s->start,
			(unsigned long long)s->end, s->streamId, s->correlationId,
			(unsigned)s->type);
		break;
	}
	default:
		break;
	}
}

static void CUPTIAPI buf_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
				   size_t valid)
{
	CUpti_Activity *r = NULL;

	(void)ctx;
	(void)stream;
	(void)size;
	while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS)
		record(r);
	free(buf);
}

static void at_exit(void)
{
	cuptiActivityFlushAll(1);
	if (out)
		fclose(out);
	out = NULL;
}

int InitializeInjection(void)
{
	const char *path = getenv("CUPTI_TRACE_OUT");

	if (!(out = fopen(path ? path : "cupti_trace.csv", "w")))
		return 0;
	if (cuptiActivityRegisterCallbacks(buf_requested, buf_completed) != CUPTI_SUCCESS) {
		fprintf(stderr, "cupti_trace: cannot register callbacks\n");
		return 0;
	}
	cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
	cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
	cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME);
	cuptiActivityEnable(CUPTI_ACTIVITY_KIND_SYNCHRONIZATION);
	atexit(at_exit);
	return 1;
}
