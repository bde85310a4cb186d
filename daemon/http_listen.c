/* HTTP server: the listening socket (host names, [v6] literals, port 0)
 * and peers' printable addresses. */
#include "daemon/http_int.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

static int resolve(const char *host, int port, struct sockaddr_storage *ss)
{
	char h[256];
	size_t n = strlen(host);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	int rv;

	if (n >= sizeof(h))
		return UV_EINVAL;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		memcpy(h, host + 1, n - 2);
		h[n - 2] = '\0';
	} else {
		memcpy(h, host, n + 1);
	}
	if (!h[0] || !strcmp(h, "*"))
		strcpy(h, "0.0.0.0");
	if (uv_ip4_addr(h, port, (struct sockaddr_in *)ss) == 0 ||
	    uv_ip6_addr(h, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	rv = getaddrinfo(h, NULL, &hints, &res);
	if (rv != 0)
		return UV_EAI_NONAME;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
}

int http_server_listen(struct http_server *srv, const char *host, int port,
		       char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	int sl = sizeof(ss), rv;
	const char *what = "resolve";

	if (srv->listening || !srv->listener_open || port < 0 || port > 65535) {
		rv = UV_EINVAL;
		goto fail;
	}
	if ((rv = resolve(host, port, &ss)) < 0)
		goto fail;
	what = "bind";
	if ((rv = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0)) < 0)
		goto fail;
	what = "listen on";
	if ((rv = uv_listen((uv_stream_t *)&srv->listener, 511, http_on_connection)) < 0)
		goto fail;
	if ((rv = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl)) < 0)
		goto fail;
	srv->port = ntohs(ss.ss_family == AF_INET6 ?
			  ((struct sockaddr_in6 *)&ss)->sin6_port :
			  ((struct sockaddr_in *)&ss)->sin_port);
	srv->listening = true;
	return 0;
fail:
	snprintf(err, errlen, "http: cannot %s %s port %d: %s", what, host, port,
		 uv_strerror(rv));
	return rv;
}

int http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void http_peer_name(uv_tcp_t *tcp, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "";

	snprintf(out, cap, "-");
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		uv_ip6_name(a, ip, sizeof(ip));
		snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		uv_ip4_name(a, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
	}
}
