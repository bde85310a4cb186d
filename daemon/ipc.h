/* nng sockets between moed's processes, on ipc:// paths in the runtime
 * directory (0700 dir, 0600 sockets), each with NNG_OPT_RECVMAXSZ set. */
#ifndef DAEMON_IPC_H
#define DAEMON_IPC_H

#include <nng/nng.h>
#include <stddef.h>
#include <stdint.h>

/* The links, and who listens on each. */
enum ipc_link {
	IPC_WORK = 0,    /* front PUSH (listens) -> worker PULL: BATCH */
	IPC_RESULT,      /* worker PUSH -> front PULL (listens): RESULT, TRACE */
	IPC_PRED,        /* front PUSH (listens) -> predictor PULL: BATCH */
	IPC_TABLE,       /* predictor PUSH -> worker PULL (listens): TABLE */
	IPC_TRACE,       /* worker PUB (listens) -> predictor SUB: TRACE */
	IPC_N_LINKS
};

enum ipc_role { IPC_SEND = 0, IPC_RECV = 1 };

/* Creates the runtime directory (0700) if needed. */
int ipc_prepare_dir(const char *dir, char *err, size_t n);
/* Opens this process's end of link: listen or dial per the table above. */
int ipc_open(const char *dir, enum ipc_link link, int listen, nng_socket *s,
	     char *err, size_t n);
/* Sends buf (copied); NONBLOCK: -EAGAIN when no peer can take it. */
int ipc_send(nng_socket s, const void *buf, size_t len, int nonblock);
/* Receives one message into *buf (free with nng_free(*buf, *len)).
 * timeout_ms < 0 blocks, 0 polls.  -ETIMEDOUT / -EAGAIN when none. */
int ipc_recv(nng_socket s, void **buf, size_t *len, int timeout_ms);

struct proto_msg;

/* ipc_recv + proto_decode: a malformed message is logged as who's, counted
 * in *dropped and skipped (NULL is returned, as when none came). */
struct proto_msg *ipc_recv_msg(nng_socket s, int timeout_ms, const char *who,
			       uint64_t *dropped);

#endif
