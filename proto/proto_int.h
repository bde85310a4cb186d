/* What the decoder (proto.c) and the encoders (encode.c) share; not part
 * of the protocol's interface. */
#ifndef MOED_PROTO_PROTO_INT_H
#define MOED_PROTO_PROTO_INT_H

#include <stddef.h>

#define ENTRY 6             /* u16 expert + f32 score/weight */
#define TOK_FIXED 16        /* TRACE bytes per token before its experts */

/* Where an error message goes; s NULL or n 0: nowhere. */
struct ebuf {
	char *s;
	size_t n;
};

/* Writes the message into e (e may be NULL) and returns code. */
int proto_fail(struct ebuf *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
