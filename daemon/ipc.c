/* nng plumbing between front, worker and predictor. */
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/ipc.h"
#include "daemon/log.h"
#include "proto/proto.h"

static const struct {
	const char *file;
	int recv_listens;  /* the receiving end listens (else the sender) */
	int pubsub;
} links[IPC_N_LINKS] = {
	[IPC_WORK] = {"work.ipc", 0, 0},
	[IPC_RESULT] = {"result.ipc", 1, 0},
	[IPC_PRED] = {"pred.ipc", 0, 0},
	[IPC_TABLE] = {"table.ipc", 1, 0},
	[IPC_TRACE] = {"trace.ipc", 0, 1},
};

int ipc_prepare_dir(const char *dir, char *err, size_t n)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, n, "runtime dir %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, n, "runtime dir %s: not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

static int nng_err(int rv, const char *what, const char *url, char *err, size_t n)
{
	snprintf(err, n, "%s %s: %s", what, url, nng_strerror(rv));
	return rv == NNG_ENOMEM ? -ENOMEM : -EIO;
}

int ipc_open(const char *dir, enum ipc_link link, int recv_end, nng_socket *s,
	     char *err, size_t n)
{
	char url[4200];
	int rv, listen = links[link].recv_listens ? recv_end : !recv_end;

	snprintf(url, sizeof(url), "ipc://%s/%s", dir, links[link].file);
	if (links[link].pubsub)
		rv = recv_end ? nng_sub0_open(s) : nng_pub0_open(s);
	else
		rv = recv_end ? nng_pull0_open(s) : nng_push0_open(s);
	if (rv)
		return nng_err(rv, "socket for", url, err, n);
	nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ,
			    PROTO_HEADER_SIZE + (size_t)PROTO_MAX_PAYLOAD);
	if (links[link].pubsub && recv_end)
		nng_socket_set(*s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	/* Senders never block (they send NONBLOCK): a buffer lets batches and
	 * tables sent back to back wait for the peer instead of being lost. */
	if (!links[link].pubsub && !recv_end)
		nng_socket_set_int(*s, NNG_OPT_SENDBUF, 1024);
	nng_socket_set_ms(*s, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(*s, NNG_OPT_RECONNMAXT, 500);
	if (listen) {
		nng_listener l;

		if ((rv = nng_listener_create(&l, *s, url)) ||
		    (rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600)) ||
		    (rv = nng_listener_start(l, 0))) {
			nng_close(*s);
			return nng_err(rv, "listen on", url, err, n);
		}
	} else if ((rv = nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK))) {
		nng_close(*s);
		return nng_err(rv, "dial", url, err, n);
	}
	return 0;
}

int ipc_send(nng_socket s, const void *buf, size_t len, int nonblock)
{
	int rv = nng_send(s, (void *)buf, len, nonblock ? NNG_FLAG_NONBLOCK : 0);

	if (rv == NNG_EAGAIN || rv == NNG_ETIMEDOUT)
		return -EAGAIN;
	return rv ? -EIO : 0;
}

int ipc_recv(nng_socket s, void **buf, size_t *len, int timeout_ms)
{
	int rv, flags = NNG_FLAG_ALLOC;

	if (timeout_ms == 0)
		flags |= NNG_FLAG_NONBLOCK;
	else
		nng_socket_set_ms(s, NNG_OPT_RECVTIMEO,
				  timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
	rv = nng_recv(s, buf, len, flags);
	if (rv == NNG_EAGAIN)
		return -EAGAIN;
	if (rv == NNG_ETIMEDOUT)
		return -ETIMEDOUT;
	if (rv == NNG_ECLOSED)
		return -ECANCELED;
	return rv ? -EIO : 0;
}

struct proto_msg *ipc_recv_msg(nng_socket s, int timeout_ms, const char *who,
			       uint64_t *dropped)
{
	struct proto_msg *m = NULL;
	char err[256];
	void *buf;
	size_t len;

	if (ipc_recv(s, &buf, &len, timeout_ms) < 0)
		return NULL;
	if (proto_decode_err(buf, len, &m, err, sizeof(err)) < 0) {
		log_msg(LOG_WARNING, "%s: dropped a malformed message: %s", who, err);
		(*dropped)++;
		m = NULL;
	}
	nng_free(buf, len);
	return m;
}
