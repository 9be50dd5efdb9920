/*-------------------------------------------------------------------------
 *
 * jsonformat.c
 *	  The "format" keyword of JSON Schema draft-07: date-time, date and time
 *	  (RFC 3339), email (RFC 5321's dot-atom at a host name or an address
 *	  literal), uuid (RFC 4122's text form), ipv4 and ipv6 (inet_pton's
 *	  forms), uri and uri-reference (RFC 3986: an absolute URI with a
 *	  scheme, or also a relative reference), and regex (a regular
 *	  expression PostgreSQL compiles, the dialect "pattern" uses).
 *
 * A format applies only to strings; the caller checks the type.  All but
 * regex are plain byte scanners: they allocate nothing and look up
 * nothing, so they cost little enough to run on every publish.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "regex/regex.h"

#include "jsonformat.h"

static const char *const json_format_names[] = {
	[JSON_FORMAT_NONE] = "(none)",
	[JSON_FORMAT_DATE_TIME] = "date-time",
	[JSON_FORMAT_DATE] = "date",
	[JSON_FORMAT_TIME] = "time",
	[JSON_FORMAT_EMAIL] = "email",
	[JSON_FORMAT_UUID] = "uuid",
	[JSON_FORMAT_IPV4] = "ipv4",
	[JSON_FORMAT_IPV6] = "ipv6",
	[JSON_FORMAT_URI] = "uri",
	[JSON_FORMAT_URI_REFERENCE] = "uri-reference",
	[JSON_FORMAT_REGEX] = "regex",
};

JsonStringFormat
outbox_json_format_lookup(const char *name, int len)
{
	int			f;

	for (f = JSON_FORMAT_DATE_TIME; f <= JSON_FORMAT_REGEX; f++)
	{
		if (len == (int) strlen(json_format_names[f]) &&
			memcmp(name, json_format_names[f], len) == 0)
			return (JsonStringFormat) f;
	}
	return JSON_FORMAT_NONE;
}

const char *
outbox_json_format_name(JsonStringFormat format)
{
	return json_format_names[format];
}

/* n decimal digits at s, as a number, or -1 when they are not all digits */
static int
fmt_digits(const char *s, int n)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* RFC 3339 full-date, exactly 10 bytes: YYYY-MM-DD, a day that exists */
static bool
fmt_full_date(const char *s, int len)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y,
				m,
				d,
				last;

	if (len != 10 || s[4] != '-' || s[7] != '-')
		return false;
	y = fmt_digits(s, 4);
	m = fmt_digits(s + 5, 2);
	d = fmt_digits(s + 8, 2);
	if (y < 0 || m < 1 || m > 12 || d < 1)
		return false;
	last = days[m - 1];
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		last = 29;
	return d <= last;
}

/*
 * RFC 3339 full-time: HH:MM:SS[.fraction] then Z or +HH:MM / -HH:MM.  A
 * leap second (:60) exists only at 23:59 UTC.
 */
static bool
fmt_full_time(const char *s, int len)
{
	int			h,
				m,
				sec,
				i = 8;
	int			utc;

	if (len < 9 || s[2] != ':' || s[5] != ':')
		return false;
	h = fmt_digits(s, 2);
	m = fmt_digits(s + 3, 2);
	sec = fmt_digits(s + 6, 2);
	if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60)
		return false;
	if (s[i] == '.')
	{
		int			start = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return false;
	}
	utc = h * 60 + m;
	if (i == len - 1 && (s[i] == 'Z' || s[i] == 'z'))
		;
	else if (i == len - 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':')
	{
		int			oh = fmt_digits(s + i + 1, 2);
		int			om = fmt_digits(s + i + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return false;
		utc += (s[i] == '+' ? -1 : 1) * (oh * 60 + om);
		utc = (utc % 1440 + 1440) % 1440;
	}
	else
		return false;
	return sec < 60 || utc == 23 * 60 + 59;
}

static bool
fmt_date_time(const char *s, int len)
{
	return len > 11 && (s[10] == 'T' || s[10] == 't') &&
		fmt_full_date(s, 10) && fmt_full_time(s + 11, len - 11);
}

static bool
fmt_is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
fmt_is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A host name: dot-separated labels of letters, digits and inner hyphens */
static bool
fmt_hostname(const char *s, int len)
{
	int			label = 0;
	int			i;

	if (len == 0 || len > 253)
		return false;
	for (i = 0; i < len; i++)
	{
		if (s[i] == '.')
		{
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		}
		else if (fmt_is_alnum(s[i]) || (s[i] == '-' && label > 0))
		{
			if (++label > 63)
				return false;
		}
		else
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}

/* inet_pton of a bounded copy: af is AF_INET or AF_INET6 */
static bool
fmt_inet(int af, const char *s, int len)
{
	char		buf[INET6_ADDRSTRLEN + 1];
	unsigned char addr[16];

	if (len <= 0 || len >= (int) sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(af, buf, addr) == 1;
}

/*
 * email: a dot-atom local part (RFC 5322 atext, no leading, trailing or
 * doubled dots), "@", then a host name or an address literal [a.b.c.d].
 */
static bool
fmt_email(const char *s, int len)
{
	const char *at = memchr(s, '@', len);
	int			local;
	int			i;

	if (at == NULL)
		return false;
	local = at - s;
	if (local == 0 || local > 64 || s[0] == '.' || s[local - 1] == '.')
		return false;
	for (i = 0; i < local; i++)
	{
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
		if (!fmt_is_alnum(s[i]) && strchr(".!#$%&'*+/=?^_`{|}~-", s[i]) == NULL)
			return false;
	}
	s = at + 1;
	len -= local + 1;
	if (len > 2 && s[0] == '[' && s[len - 1] == ']')
		return fmt_inet(AF_INET, s + 1, len - 2);
	return fmt_hostname(s, len);
}

static bool
fmt_uuid(const char *s, int len)
{
	int			i;

	if (len != 36)
		return false;
	for (i = 0; i < len; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!fmt_is_hex(s[i]))
			return false;
	}
	return true;
}

/*
 * An authority (RFC 3986 3.2): [userinfo "@"] host [":" port], where host
 * is an IP literal in brackets or a run of unreserved, sub-delims and
 * percent-encoded bytes (the caller checked every byte's class).
 */
static bool
fmt_authority(const char *s, int len)
{
	const char *at = NULL;
	const char *host;
	int			hostlen;
	int			i;

	for (i = 0; i < len; i++)
		if (s[i] == '@')
			at = s + i;
	host = at ? at + 1 : s;
	hostlen = len - (host - s);
	if (hostlen > 0 && host[0] == '[')
	{
		const char *close = memchr(host, ']', hostlen);

		if (close == NULL || !fmt_inet(AF_INET6, host + 1, close - host - 1))
			return false;
		i = close + 1 - host;
	}
	else
	{
		for (i = 0; i < hostlen && host[i] != ':'; i++)
			if (host[i] == '[' || host[i] == ']')
				return false;
	}
	if (i < hostlen)
	{
		if (host[i] != ':')
			return false;
		for (i++; i < hostlen; i++)
			if (host[i] < '0' || host[i] > '9')
				return false;
	}
	return true;
}

/*
 * From start on, only bytes a URI may hold (unreserved, reserved and %HH),
 * and when "//" comes first, a well-formed authority (RFC 3986 4.2).
 */
static bool
fmt_uri_rest(const char *s, int start, int len)
{
	int			i;

	for (i = start; i < len; i++)
	{
		if (s[i] == '%')
		{
			if (i + 2 >= len || !fmt_is_hex(s[i + 1]) || !fmt_is_hex(s[i + 2]))
				return false;
			i += 2;
		}
		else if (!fmt_is_alnum(s[i]) &&
				 strchr("-._~:/?#[]@!$&'()*+,;=", s[i]) == NULL)
			return false;
	}
	if (len - start >= 2 && s[start] == '/' && s[start + 1] == '/')
	{
		for (i = start + 2; i < len && s[i] != '/' && s[i] != '?' && s[i] != '#'; i++)
			;
		return fmt_authority(s + start + 2, i - start - 2);
	}
	return true;
}

/* The length of a URI's scheme and its ":", or 0 when it has none */
static int
fmt_scheme(const char *s, int len)
{
	int			i;

	if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return 0;
	for (i = 1; i < len && s[i] != ':'; i++)
		if (!fmt_is_alnum(s[i]) && s[i] != '+' && s[i] != '-' && s[i] != '.')
			return 0;
	return i < len ? i + 1 : 0;
}

/* uri: an absolute URI, scheme ":" and the rest */
static bool
fmt_uri(const char *s, int len)
{
	int			scheme = fmt_scheme(s, len);

	return scheme > 0 && fmt_uri_rest(s, scheme, len);
}

/* uri-reference: a URI, or a relative reference (RFC 3986 4.1) */
static bool
fmt_uri_reference(const char *s, int len)
{
	return fmt_uri_rest(s, fmt_scheme(s, len), len);
}

/* regex: a regular expression outbox can use (PostgreSQL's ARE) */
static bool
fmt_regex(const char *s, int len)
{
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(s, wide, len);
	regex_t		re;
	bool		ok;

	ok = pg_regcomp(&re, wide, wlen, REG_ADVANCED, C_COLLATION_OID) == REG_OKAY;
	if (ok)
		pg_regfree(&re);
	pfree(wide);
	return ok;
}

bool
outbox_json_format_check(JsonStringFormat format, const char *s, int len)
{
	/* a NUL cannot be part of any of these formats */
	if (memchr(s, '\0', len) != NULL)
		return false;
	switch (format)
	{
		case JSON_FORMAT_NONE:
			return true;
		case JSON_FORMAT_DATE_TIME:
			return fmt_date_time(s, len);
		case JSON_FORMAT_DATE:
			return fmt_full_date(s, len);
		case JSON_FORMAT_TIME:
			return fmt_full_time(s, len);
		case JSON_FORMAT_EMAIL:
			return fmt_email(s, len);
		case JSON_FORMAT_UUID:
			return fmt_uuid(s, len);
		case JSON_FORMAT_IPV4:
			return fmt_inet(AF_INET, s, len);
		case JSON_FORMAT_IPV6:
			return fmt_inet(AF_INET6, s, len);
		case JSON_FORMAT_URI:
			return fmt_uri(s, len);
		case JSON_FORMAT_URI_REFERENCE:
			return fmt_uri_reference(s, len);
		case JSON_FORMAT_REGEX:
			return fmt_regex(s, len);
	}
	return false;
}
