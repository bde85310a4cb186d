/* moed serve's bearer-token check (auth.token_file). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "daemon/serve.h"

/* Reads auth.token_file.  On failure the token is not replaced: auth_broken
 * is set instead, so that every protected request is refused rather than
 * let through. */
int serve_read_token(struct server *s, char *err, size_t n)
{
	char tok[sizeof(s->auth_token)];
	FILE *f;
	size_t len;

	if (!s->cfg.auth.token_file[0]) {
		s->auth_token[0] = 0;
		s->auth_broken = false;
		return 0;
	}
	s->auth_broken = true;
	if (!(f = fopen(s->cfg.auth.token_file, "r"))) {
		snprintf(err, n, "auth.token_file %s: %s", s->cfg.auth.token_file, strerror(errno));
		return -errno;
	}
	len = fread(tok, 1, sizeof(tok) - 1, f);
	fclose(f);
	while (len && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' '))
		len--;
	tok[len] = 0;
	if (!len) {
		snprintf(err, n, "auth.token_file %s: empty", s->cfg.auth.token_file);
		return -EINVAL;
	}
	memcpy(s->auth_token, tok, len + 1);
	s->auth_broken = false;
	return 0;
}

/* Constant-time comparison of the bearer token. */
bool serve_authorized(const struct server *s, struct http_req *req)
{
	const char *h = http_req_header(req, "authorization");
	size_t n = strlen(s->auth_token);
	unsigned char diff = 0;

	if (s->auth_broken)
		return false;
	if (!s->auth_token[0])
		return true;
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	if (strlen(h) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(h[i] ^ s->auth_token[i]);
	return diff == 0;
}
