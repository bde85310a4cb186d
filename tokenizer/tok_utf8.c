/* UTF-8 helpers and the GPT-2 byte-level alphabet. */
#include <errno.h>

#include "tokenizer/tok_internal.h"

/* Unicode Table 3-7: the continuation bytes lead byte b needs (0: b is
 * not a multi-byte lead) and the range allowed for the first of them. */
static size_t lead(unsigned char b, unsigned char *lo, unsigned char *hi)
{
	size_t need;

	*lo = 0x80;
	*hi = 0xBF;
	if (b >= 0xC2 && b <= 0xDF)
		need = 1;
	else if (b >= 0xE0 && b <= 0xEF)
		need = 2;
	else if (b >= 0xF0 && b <= 0xF4)
		need = 3;
	else
		return 0;
	if (b == 0xE0)
		*lo = 0xA0;
	else if (b == 0xED)
		*hi = 0x9F;
	else if (b == 0xF0)
		*lo = 0x90;
	else if (b == 0xF4)
		*hi = 0x8F;
	return need;
}

/* The well-formed byte sequences. */
size_t utf8_valid_len(const unsigned char *s, size_t n)
{
	unsigned char lo, hi;
	size_t need;

	if (s[0] < 0x80)
		return 1;
	if (!(need = lead(s[0], &lo, &hi)))
		return 0;
	for (size_t i = 1; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
	}
	return need + 1;
}

/* Bytes of the ill-formed subpart at s: the lead byte plus the
 * continuation bytes that were still acceptable (at least 1). */
static size_t bad_len(const unsigned char *s, size_t n)
{
	unsigned char lo, hi;
	size_t need = lead(s[0], &lo, &hi), i;

	if (!need)
		return 1;
	for (i = 1; i <= need && i < n; i++) {
		if (s[i] < lo || s[i] > hi)
			break;
		lo = 0x80;
		hi = 0xBF;
	}
	return i;
}

int utf8_lossy(const char *s, size_t n, struct tbuf *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;

	if (tbuf_reserve(out, n))
		return -ENOMEM;
	while (i < n) {
		size_t k = utf8_valid_len(u + i, n - i);

		if (k) {
			i += k;
			run += k;
			continue;
		}
		if (tbuf_put(out, s + i - run, run) || tbuf_put(out, "\xEF\xBF\xBD", 3))
			return -ENOMEM;
		run = 0;
		i += bad_len(u + i, n - i);
	}
	return tbuf_put(out, s + i - run, run);
}

size_t utf8_next(const char *s, size_t n, uint32_t *cp)
{
	const unsigned char *u = (const unsigned char *)s;

	if (u[0] < 0x80 || n < 2) {
		*cp = u[0];
		return 1;
	}
	if (u[0] < 0xE0) {
		*cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
		return 2;
	}
	if (u[0] < 0xF0 || n < 4) {
		*cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) |
		      (n > 2 ? (u[2] & 0x3F) : 0);
		return n > 2 ? 3 : n;
	}
	*cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
	      ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
	return 4;
}

size_t utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

int uni_is_whitespace(uint32_t c)
{
	return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 take the codepoints from 256 on, in byte order. */
uint32_t bl_byte_to_cp(unsigned char b)
{
	if (b <= 32)
		return 256u + b;
	if (b >= 127 && b <= 160)
		return b + 162u;
	if (b == 173)
		return 323;
	return b;
}

int bl_cp_to_byte(uint32_t cp)
{
	if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
		return (int)cp;
	if (cp >= 256 && cp <= 288)
		return (int)(cp - 256);
	if (cp >= 289 && cp <= 322)
		return (int)(cp - 162);
	if (cp == 323)
		return 173;
	return -1;
}
