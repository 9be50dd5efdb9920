/*-------------------------------------------------------------------------
 *
 * jsonschema.c
 *	  JSON Schema draft-07: compile a schema (jsonb) into a tree of nodes
 *	  once, then validate payloads (jsonb) against the tree.
 *
 * Compiling checks the schema itself: every keyword must be one this file
 * implements (or a draft-07 annotation, which validation ignores), with a
 * value of the right kind; anything else is an ERROR naming the keyword's
 * JSON pointer, so that a constraint is never silently skipped.  The one
 * exception is a member that a "$ref" of the same schema points into: it is
 * a container of subschemas (as "definitions" is), not a keyword.
 *
 * The tree points into a private copy of the schema (strings, numbers, enum
 * and const values are not copied again), all in the memory context the
 * caller gives, which holds the compiled schema for as long as the caller
 * caches it.  "$ref" is resolved at compile time: same-document JSON
 * pointers ("#", "#/definitions/x"), URIs against the base that "$id"
 * sets, and the draft-07 meta-schema, built in (metaschema.c).  A remote
 * schema is never fetched: a "$ref" that names another is refused at
 * compile time.  A loop of references that does not descend into
 * the payload ({"$ref": "#"} at the root) is refused too; every other
 * recursion is bounded by the payload's depth.
 *
 * Validation walks the payload with JsonbIteratorNext(skipNested), one
 * container level at a time.  Numbers are compared as numeric, never as
 * double; lengths count characters, not bytes; "pattern" is a PostgreSQL
 * advanced regular expression in the C collation, searched, not anchored
 * (ECMA 262 and ARE agree on the common syntax; see the README).
 * Violations are collected with their JSON pointers; inside anyOf, oneOf,
 * not, if, contains and propertyNames evaluation is silent and stops at
 * the first failure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "jsonformat.h"
#include "jsonschema.h"
#include "metaschema.h"

/* JSON types, as bits of JsNode.types */
#define JT_NULL		0x01
#define JT_BOOLEAN	0x02
#define JT_OBJECT	0x04
#define JT_ARRAY	0x08
#define JT_NUMBER	0x10
#define JT_STRING	0x20
#define JT_INTEGER	0x40		/* a number with no fractional part */

typedef struct JsNode JsNode;

/* A name with a subschema (properties), or alone (required) */
typedef struct JsNamed
{
	const char *name;
	int			len;
	JsNode	   *schema;
	/* dependencies: the names the property requires, when not a schema */
	struct JsNamed *names;
	int			nnames;
} JsNamed;

typedef struct JsPattern
{
	text	   *re;
	JsNode	   *schema;
} JsPattern;

struct JsNode
{
	int			boolean;		/* -1: an object schema; 0: false; 1: true */
	JsNode	   *ref;			/* "$ref": the only keyword that counts */
	JsonbContainer *container;	/* where in the schema copy, for "$ref" */
	const char *where;			/* its JSON pointer, for messages */
	bool		visiting;		/* reference-loop check: on the path */
	bool		checked;		/* reference-loop check: done */

	int			types;			/* 0: any */

	JsNamed    *props;			/* sorted as jsonb sorts keys */
	int			nprops;
	JsPattern  *patterns;
	int			npatterns;
	JsNode	   *additional_props;
	JsNamed    *required;
	int			nrequired;
	JsNamed    *deps;
	int			ndeps;
	JsNode	   *property_names;
	int64		min_props;
	int64		max_props;

	JsNode	   *items;			/* one schema for every item */
	JsNode	  **tuple;			/* or one per position */
	int			ntuple;
	JsNode	   *additional_items;
	JsNode	   *contains;
	int64		min_items;
	int64		max_items;
	bool		unique_items;

	int64		min_length;
	int64		max_length;
	text	   *pattern;
	JsonStringFormat format;

	Numeric		minimum;
	Numeric		maximum;
	Numeric		exclusive_minimum;
	Numeric		exclusive_maximum;
	Numeric		multiple_of;

	JsonbValue *enum_values;
	int			nenum;
	JsonbValue *const_value;

	JsNode	  **all_of;
	int			nall_of;
	JsNode	  **any_of;
	int			nany_of;
	JsNode	  **one_of;
	int			none_of;
	JsNode	   *not;
	JsNode	   *if_;
	JsNode	   *then_;
	JsNode	   *else_;
};

struct JsonSchema
{
	JsNode	   *root;
};

/* A subschema that "$id" names, by its absolute URI */
typedef struct JsIdent
{
	char	   *uri;
	JsonbContainer *container;
} JsIdent;

/* State of one compilation */
typedef struct JsCompiler
{
	JsonbContainer *root;
	char	   *root_base;		/* the root's absolute URI, "" without $id */
	StringInfoData path;
	List	   *compiled;		/* JsNode * of every container compiled */
	List	   *refs;			/* char *: same-document pointers of "$ref" */
	JsIdent    *idents;
	int			nidents;
	struct JsCompiler *metaschema;	/* the built-in draft-07 meta-schema's */
} JsCompiler;

/* One step down into the payload: a member's name, or an item's index */
typedef struct JsStep
{
	const char *name;			/* NULL for an item */
	int			len;			/* of the name, or the item's index */
} JsStep;

/*
 * State of one validation.  The way down to the current value is kept as
 * steps, turned into a JSON pointer only when a violation is recorded.
 */
typedef struct JsValidator
{
	JsStep	   *steps;
	int			depth;
	int			maxdepth;
	StringInfo	out;
	int			max;
	int			count;
	int			silent;			/* > 0: only the verdict counts */
} JsValidator;

static JsNode *js_compile_node(JsCompiler *c, JsonbValue *v, const char *base);
static void js_compiler_init(JsCompiler *c, Jsonb *copy, JsonbValue *root);

/* ---------------------------------------------------------------------
 * Helpers shared by compiling and validating
 * ---------------------------------------------------------------------
 */

/* Append a JSON pointer token, escaped by RFC 6901 */
static void
js_path_push(StringInfo path, const char *token, int len)
{
	int			i;

	appendStringInfoChar(path, '/');
	for (i = 0; i < len; i++)
	{
		if (token[i] == '~')
			appendStringInfoString(path, "~0");
		else if (token[i] == '/')
			appendStringInfoString(path, "~1");
		else
			appendStringInfoChar(path, token[i]);
	}
}

static void
js_path_push_index(StringInfo path, int i)
{
	appendStringInfo(path, "/%d", i);
}

static const char *
js_path_show(StringInfo path)
{
	return path->len == 0 ? "(root)" : path->data;
}

/* The JsonbValue a container is, as a value (jbvBinary) */
static void
js_binary(JsonbValue *v, JsonbContainer *c)
{
	v->type = jbvBinary;
	v->val.binary.data = c;
	v->val.binary.len = 0;
}

static bool
js_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
js_is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* A key of an object, or NULL */
static JsonbValue *
js_get(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key),
										palloc(sizeof(JsonbValue)));
}

int
outbox_numeric_cmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* A number with no fractional part (1.0 is an integer in draft-07) */
/* n mod m is 0, exactly (m > 0) */
bool
outbox_numeric_is_multiple(Numeric n, Numeric m)
{
	Datum		rem = DirectFunctionCall2(numeric_mod, NumericGetDatum(n),
										  NumericGetDatum(m));

	return outbox_numeric_cmp(DatumGetNumeric(rem), int64_to_numeric(0)) == 0;
}

bool
outbox_numeric_is_integer(Numeric n)
{
	Datum		t;

	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) == 0)
		return true;
	t = DirectFunctionCall2(numeric_trunc, NumericGetDatum(n), Int32GetDatum(0));
	return outbox_numeric_cmp(n, DatumGetNumeric(t)) == 0;
}

char *
outbox_numeric_text(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

/* The JSON type of a value, as one JT_ bit (JT_INTEGER for integers) */
static int
js_type_of(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return JT_NULL;
		case jbvBool:
			return JT_BOOLEAN;
		case jbvString:
			return JT_STRING;
		case jbvNumeric:
			return outbox_numeric_is_integer(v->val.numeric) ? JT_INTEGER : JT_NUMBER;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? JT_OBJECT : JT_ARRAY;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return 0;
}

static const char *
js_type_name(int bit)
{
	switch (bit)
	{
		case JT_NULL:
			return "null";
		case JT_BOOLEAN:
			return "boolean";
		case JT_OBJECT:
			return "object";
		case JT_ARRAY:
			return "array";
		case JT_NUMBER:
			return "number";
		case JT_STRING:
			return "string";
		case JT_INTEGER:
			return "integer";
	}
	return "?";
}

/* JSON equality: numbers by value, objects regardless of key order */
bool
outbox_json_equal(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return outbox_numeric_cmp(a->val.numeric, b->val.numeric) == 0;
		case jbvBinary:
			if (JsonContainerIsObject(a->val.binary.data) !=
				JsonContainerIsObject(b->val.binary.data))
				return false;
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			return false;
	}
}

/* ---------------------------------------------------------------------
 * Compiling
 * ---------------------------------------------------------------------
 */

static void pg_attribute_noreturn()
js_bad_schema(JsCompiler *c, const char *fmt,...) pg_attribute_printf(2, 3);

/* ERROR: the schema is not one outbox can use, at the current path */
static void
js_bad_schema(JsCompiler *c, const char *fmt,...)
{
	StringInfoData detail;

	initStringInfo(&detail);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&detail, needed);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid JSON Schema at %s", js_path_show(&c->path)),
			 errdetail_internal("%s", detail.data)));
}

/* A non-negative integer keyword value (minLength, maxItems...) */
static int64
js_compile_count(JsCompiler *c, JsonbValue *v)
{
	if (v->type != jbvNumeric || !outbox_numeric_is_integer(v->val.numeric) ||
		outbox_numeric_cmp(v->val.numeric, int64_to_numeric(0)) < 0)
		js_bad_schema(c, "The value must be a non-negative integer.");
	if (outbox_numeric_cmp(v->val.numeric, int64_to_numeric(PG_INT32_MAX)) > 0)
		return PG_INT32_MAX;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 NumericGetDatum(v->val.numeric)));
}

static Numeric
js_compile_number(JsCompiler *c, JsonbValue *v)
{
	if (v->type != jbvNumeric)
		js_bad_schema(c, "The value must be a number.");
	return v->val.numeric;
}

static bool
js_compile_bool(JsCompiler *c, JsonbValue *v)
{
	if (v->type != jbvBool)
		js_bad_schema(c, "The value must be true or false.");
	return v->val.boolean;
}

/* Pop the path back to len bytes */
static void
js_path_pop(StringInfo path, int len)
{
	path->len = len;
	path->data[len] = '\0';
}

/* A subschema, under token (or index, when token is NULL and index >= 0) */
static JsNode *
js_compile_sub(JsCompiler *c, JsonbValue *v, const char *base,
			   const char *token, int index)
{
	int			saved = c->path.len;
	JsNode	   *n;

	if (token != NULL)
		js_path_push(&c->path, token, strlen(token));
	else if (index >= 0)
		js_path_push_index(&c->path, index);
	n = js_compile_node(c, v, base);
	js_path_pop(&c->path, saved);
	return n;
}

/* An array of subschemas (allOf, anyOf, oneOf, items) */
static JsNode **
js_compile_list(JsCompiler *c, JsonbValue *v, const char *base,
				const char *keyword, int *n, bool allow_empty)
{
	JsNode	  **list;
	int			size;
	int			i;

	if (!js_is_array(v))
		js_bad_schema(c, "The value of \"%s\" must be an array of schemas.", keyword);
	size = JsonContainerSize(v->val.binary.data);
	if (size == 0 && !allow_empty)
		js_bad_schema(c, "The value of \"%s\" must not be an empty array.", keyword);
	list = palloc(sizeof(JsNode *) * Max(size, 1));
	for (i = 0; i < size; i++)
		list[i] = js_compile_sub(c, getIthJsonbValueFromContainer(v->val.binary.data, i),
								 base, NULL, i);
	*n = size;
	return list;
}

/* An object of subschemas (properties, patternProperties, definitions) */
static JsNamed *
js_compile_map(JsCompiler *c, JsonbValue *v, const char *base,
			   const char *keyword, int *n)
{
	JsonbIterator *it;
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;
	JsNamed    *map;
	int			i = 0;

	if (!js_is_object(v))
		js_bad_schema(c, "The value of \"%s\" must be an object of schemas.", keyword);
	map = palloc0(sizeof(JsNamed) * Max(JsonContainerSize(v->val.binary.data), 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		map[i].name = pnstrdup(k.val.string.val, k.val.string.len);
		map[i].len = k.val.string.len;
		map[i].schema = js_compile_sub(c, &val, base, map[i].name, -1);
		i++;
	}
	*n = i;
	return map;
}

/* An array of distinct strings (required, a dependency's names) */
static JsNamed *
js_compile_names(JsCompiler *c, JsonbValue *v, const char *keyword, int *n)
{
	JsNamed    *names;
	int			size;
	int			i,
				j;

	if (!js_is_array(v))
		js_bad_schema(c, "The value of \"%s\" must be an array of strings.", keyword);
	size = JsonContainerSize(v->val.binary.data);
	names = palloc0(sizeof(JsNamed) * Max(size, 1));
	for (i = 0; i < size; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);

		if (e->type != jbvString)
			js_bad_schema(c, "The value of \"%s\" must be an array of strings.", keyword);
		names[i].name = e->val.string.val;
		names[i].len = e->val.string.len;
		for (j = 0; j < i; j++)
			if (names[j].len == names[i].len &&
				memcmp(names[j].name, names[i].name, names[i].len) == 0)
				js_bad_schema(c, "\"%s\" names \"%s\" twice.", keyword,
							  pnstrdup(names[i].name, Min(names[i].len, 100)));
	}
	*n = size;
	return names;
}

/* A regular expression, checked now so that publish never meets a bad one */
static text *
js_compile_regex(JsCompiler *c, const char *src, int len)
{
	text	   *re = cstring_to_text_with_len(src, len);
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) RE_compile_and_cache(re, REG_ADVANCED, C_COLLATION_OID);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		js_bad_schema(c, "\"%s\" is not a regular expression outbox can use: %s",
					  pnstrdup(src, Min(len, 200)), edata->message);
	}
	PG_END_TRY();
	return re;
}

/*
 * An absolute URI for ref, relative to base (RFC 3986 section 5, for the
 * forms schemas use: absolute, fragment only, absolute path, relative path).
 */
static char *
js_resolve_uri(const char *base, const char *ref)
{
	const char *p;
	const char *hash;
	int			baselen;

	for (p = ref; *p && *p != ':' && *p != '/' && *p != '?' && *p != '#'; p++)
		;
	if (*p == ':' && p > ref)
		return pstrdup(ref);
	hash = strchr(base, '#');
	baselen = hash ? hash - base : (int) strlen(base);
	if (ref[0] == '#')
		return psprintf("%.*s%s", baselen, base, ref);
	if (ref[0] == '/')
	{
		const char *auth = strstr(base, "//");
		const char *path = auth ? strchr(auth + 2, '/') : NULL;

		if (path != NULL)
			baselen = path - base;
		return psprintf("%.*s%s", baselen, base, ref);
	}
	while (baselen > 0 && base[baselen - 1] != '/')
		baselen--;
	return psprintf("%.*s%s", baselen, base, ref);
}

/* The absolute URI an "$id" gives, without an empty fragment */
static char *
js_id_uri(const char *base, JsonbValue *id)
{
	char	   *uri = js_resolve_uri(base, pnstrdup(id->val.string.val, id->val.string.len));
	int			len = strlen(uri);

	if (len > 0 && uri[len - 1] == '#')
		uri[len - 1] = '\0';
	return uri;
}

/* Decode one JSON pointer token (~1 is '/', ~0 is '~', %HH is a byte) */
static char *
js_pointer_token(const char *s, int len)
{
	StringInfoData t;
	int			i;

	initStringInfo(&t);
	for (i = 0; i < len; i++)
	{
		if (s[i] == '~' && i + 1 < len && (s[i + 1] == '0' || s[i + 1] == '1'))
		{
			appendStringInfoChar(&t, s[i + 1] == '0' ? '~' : '/');
			i++;
		}
		else if (s[i] == '%' && i + 2 < len && isxdigit((unsigned char) s[i + 1]) &&
				 isxdigit((unsigned char) s[i + 2]))
		{
			char		hex[3] = {s[i + 1], s[i + 2], '\0'};

			appendStringInfoChar(&t, (char) strtol(hex, NULL, 16));
			i += 2;
		}
		else
			appendStringInfoChar(&t, s[i]);
	}
	return t.data;
}

/* A URI fragment that is a JSON pointer, in the form paths are kept in */
static char *
js_canonical_pointer(const char *fragment)
{
	StringInfoData out;

	initStringInfo(&out);
	while (*fragment == '/')
	{
		const char *end = strchr(fragment + 1, '/');
		int			len = end ? end - (fragment + 1) : (int) strlen(fragment + 1);
		char	   *token = js_pointer_token(fragment + 1, len);

		js_path_push(&out, token, strlen(token));
		fragment += 1 + len;
	}
	return out.data;
}

/*
 * Before compiling: record every "$id" of the document with its absolute
 * URI, and every "$ref" into the root document as a canonical pointer.
 * Every object is searched except data (enum, const, default, examples).
 */
static void
js_scan(JsCompiler *c, JsonbContainer *container, const char *base)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		data = false;

	if (JsonContainerIsObject(container))
	{
		JsonbValue *id = js_get(container, "$id");
		JsonbValue *ref = js_get(container, "$ref");

		if (id != NULL && id->type == jbvString && ref == NULL)
		{
			base = js_id_uri(base, id);
			c->idents = repalloc(c->idents, sizeof(JsIdent) * (c->nidents + 1));
			c->idents[c->nidents].uri = pstrdup(base);
			c->idents[c->nidents].container = container;
			c->nidents++;
		}
		if (ref != NULL && ref->type == jbvString)
		{
			char	   *abs = js_resolve_uri(base, pnstrdup(ref->val.string.val,
															ref->val.string.len));
			char	   *hash = strchr(abs, '#');

			if (hash != NULL && strlen(c->root_base) == (size_t) (hash - abs) &&
				strncmp(abs, c->root_base, hash - abs) == 0)
				c->refs = lappend(c->refs, js_canonical_pointer(hash + 1));
		}
	}
	it = JsonbIteratorInit(container);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			const char *key = v.val.string.val;
			int			len = v.val.string.len;

			data = (len == 4 && memcmp(key, "enum", 4) == 0) ||
				(len == 5 && memcmp(key, "const", 5) == 0) ||
				(len == 7 && memcmp(key, "default", 7) == 0) ||
				(len == 8 && memcmp(key, "examples", 8) == 0);
			continue;
		}
		if (v.type != jbvBinary || (tok == WJB_VALUE && data))
			continue;
		js_scan(c, v.val.binary.data, base);
	}
}

/*
 * The value at JSON pointer fragment under start, or NULL.  *base follows
 * the "$id"s passed on the way.
 */
static JsonbValue *
js_follow_pointer(JsonbContainer *start, const char *fragment, char **base)
{
	JsonbValue *cur = palloc(sizeof(JsonbValue));

	js_binary(cur, start);
	if (*fragment != '\0' && *fragment != '/')
		return NULL;
	while (*fragment == '/')
	{
		const char *end = strchr(fragment + 1, '/');
		int			len = end ? end - (fragment + 1) : (int) strlen(fragment + 1);
		char	   *token = js_pointer_token(fragment + 1, len);

		if (cur->type != jbvBinary)
			return NULL;
		if (JsonContainerIsObject(cur->val.binary.data))
		{
			JsonbValue *id = js_get(cur->val.binary.data, "$id");

			if (id != NULL && id->type == jbvString &&
				js_get(cur->val.binary.data, "$ref") == NULL)
				*base = js_id_uri(*base, id);
			cur = js_get(cur->val.binary.data, token);
		}
		else
		{
			char	   *endp;
			long		i = strtol(token, &endp, 10);

			if (*token == '\0' || *endp != '\0' || i < 0 ||
				i >= JsonContainerSize(cur->val.binary.data))
				return NULL;
			cur = getIthJsonbValueFromContainer(cur->val.binary.data, (uint32) i);
		}
		if (cur == NULL)
			return NULL;
		fragment += 1 + len;
	}
	return cur;
}

/* The node a "$ref" met under base names, compiled if it is not yet */
static JsNode *
js_compile_ref(JsCompiler *c, const char *ref, const char *base)
{
	char	   *abs = js_resolve_uri(base, ref);
	char	   *hash = strchr(abs, '#');
	const char *fragment = hash ? hash + 1 : "";
	char	   *doc = hash ? pnstrdup(abs, hash - abs) : abs;
	char	   *newbase = NULL;
	char	   *saved = pstrdup(c->path.data);
	JsonbContainer *start = NULL;
	JsonbValue *target;
	JsNode	   *n;
	int			i;

	/* a plain-name fragment ("#foo") is an "$id" of its own */
	for (i = 0; i < c->nidents && start == NULL; i++)
		if (strcmp(c->idents[i].uri, abs) == 0)
		{
			start = c->idents[i].container;
			newbase = c->idents[i].uri;
			fragment = "";
		}
	if (start == NULL && strcmp(doc, c->root_base) == 0)
	{
		start = c->root;
		newbase = c->root_base;
	}
	for (i = 0; i < c->nidents && start == NULL; i++)
		if (strcmp(c->idents[i].uri, doc) == 0)
		{
			start = c->idents[i].container;
			newbase = c->idents[i].uri;
		}
	if (start == NULL && strcmp(doc, OUTBOX_DRAFT07_URI) == 0)
	{
		/* the meta-schema, compiled once per compilation, on first use */
		if (c->metaschema == NULL)
		{
			JsonbValue	root;

			c->metaschema = palloc(sizeof(JsCompiler));
			js_compiler_init(c->metaschema, outbox_draft07_metaschema(), &root);
		}
		return js_compile_ref(c->metaschema, abs, c->metaschema->root_base);
	}
	if (start == NULL)
		js_bad_schema(c, "\"$ref\" \"%s\" names a schema outside this one; outbox resolves only references within the schema.",
					  pnstrdup(ref, Min(strlen(ref), 200)));
	target = js_follow_pointer(start, fragment, &newbase);
	if (target == NULL)
		js_bad_schema(c, "\"$ref\" \"%s\" points to nothing in this schema.",
					  pnstrdup(ref, Min(strlen(ref), 200)));
	/* errors in the target are reported where the target is */
	resetStringInfo(&c->path);
	if (start == c->root)
		appendStringInfoString(&c->path, js_canonical_pointer(fragment));
	n = js_compile_node(c, target, newbase);
	resetStringInfo(&c->path);
	appendStringInfoString(&c->path, saved);
	return n;
}

/* True when a "$ref" of the schema points at or under the current path */
static bool
js_is_ref_target(JsCompiler *c)
{
	ListCell   *lc;

	foreach(lc, c->refs)
	{
		const char *r = lfirst(lc);
		int			len = c->path.len;

		if (strncmp(r, c->path.data, len) == 0 && (r[len] == '\0' || r[len] == '/'))
			return true;
	}
	return false;
}

/* The "type" keyword: one name or an array of distinct names */
static int
js_compile_type(JsCompiler *c, JsonbValue *v)
{
	static const char *const names[] = {"null", "boolean", "object", "array",
	"number", "string", "integer"};
	bool		array = js_is_array(v);
	int			bits = 0;
	int			n = 1;
	int			i,
				j;

	if (array)
	{
		n = JsonContainerSize(v->val.binary.data);
		if (n == 0)
			js_bad_schema(c, "The value of \"type\" must not be an empty array.");
	}
	for (i = 0; i < n; i++)
	{
		JsonbValue *e = array ? getIthJsonbValueFromContainer(v->val.binary.data, i) : v;
		int			bit = 0;

		if (e->type != jbvString)
			js_bad_schema(c, "The value of \"type\" must be a type name or an array of them.");
		for (j = 0; j < 7; j++)
			if ((int) strlen(names[j]) == e->val.string.len &&
				memcmp(names[j], e->val.string.val, e->val.string.len) == 0)
				bit = 1 << j;
		if (bit == 0)
			js_bad_schema(c, "\"%s\" is not a JSON Schema type (null, boolean, object, array, number, string, integer).",
						  pnstrdup(e->val.string.val, Min(e->val.string.len, 100)));
		if (bits & bit)
			js_bad_schema(c, "\"type\" names \"%s\" twice.",
						  pnstrdup(e->val.string.val, e->val.string.len));
		bits |= bit;
	}
	return bits;
}

bool
outbox_schema_is_annotation(const char *keyword, int len)
{
	static const char *const annotations[] = {
		"title", "description", "default", "examples", "$comment", "$schema",
		"$id", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
		NULL
	};
	int			i;

	for (i = 0; annotations[i] != NULL; i++)
		if ((int) strlen(annotations[i]) == len && memcmp(annotations[i], keyword, len) == 0)
			return true;
	return false;
}

/* "dependencies": each value is an array of names or a schema */
static void
js_compile_dependencies(JsCompiler *c, JsNode *n, JsonbValue *v, const char *base)
{
	JsonbIterator *it;
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;

	if (!js_is_object(v))
		js_bad_schema(c, "The value of \"dependencies\" must be an object.");
	n->deps = palloc0(sizeof(JsNamed) * Max(JsonContainerSize(v->val.binary.data), 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsNamed    *d = &n->deps[n->ndeps];

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		d->name = pnstrdup(k.val.string.val, k.val.string.len);
		d->len = k.val.string.len;
		if (js_is_array(&val))
		{
			int			saved = c->path.len;

			js_path_push(&c->path, d->name, d->len);
			d->names = js_compile_names(c, &val, "dependencies", &d->nnames);
			js_path_pop(&c->path, saved);
		}
		else
			d->schema = js_compile_sub(c, &val, base, d->name, -1);
		n->ndeps++;
	}
}

#define KW(name) (klen == (int) sizeof(name) - 1 && memcmp(kw, name, klen) == 0)

/* One keyword of an object schema; the path names the keyword */
static void
js_compile_keyword(JsCompiler *c, JsNode *n, const char *kw, int klen,
				   JsonbValue *v, const char *base)
{
	int			i;

	if (KW("type"))
		n->types = js_compile_type(c, v);
	else if (KW("properties"))
		n->props = js_compile_map(c, v, base, "properties", &n->nprops);
	else if (KW("patternProperties"))
	{
		JsNamed    *map = js_compile_map(c, v, base, "patternProperties", &n->npatterns);

		n->patterns = palloc(sizeof(JsPattern) * Max(n->npatterns, 1));
		for (i = 0; i < n->npatterns; i++)
		{
			int			saved = c->path.len;

			js_path_push(&c->path, map[i].name, map[i].len);
			n->patterns[i].re = js_compile_regex(c, map[i].name, map[i].len);
			n->patterns[i].schema = map[i].schema;
			js_path_pop(&c->path, saved);
		}
	}
	else if (KW("additionalProperties"))
		n->additional_props = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("required"))
		n->required = js_compile_names(c, v, "required", &n->nrequired);
	else if (KW("dependencies"))
		js_compile_dependencies(c, n, v, base);
	else if (KW("propertyNames"))
		n->property_names = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("minProperties"))
		n->min_props = js_compile_count(c, v);
	else if (KW("maxProperties"))
		n->max_props = js_compile_count(c, v);
	else if (KW("items"))
	{
		if (js_is_array(v))
			n->tuple = js_compile_list(c, v, base, "items", &n->ntuple, true);
		else
			n->items = js_compile_sub(c, v, base, NULL, -1);
	}
	else if (KW("additionalItems"))
		n->additional_items = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("contains"))
		n->contains = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("minItems"))
		n->min_items = js_compile_count(c, v);
	else if (KW("maxItems"))
		n->max_items = js_compile_count(c, v);
	else if (KW("uniqueItems"))
		n->unique_items = js_compile_bool(c, v);
	else if (KW("minLength"))
		n->min_length = js_compile_count(c, v);
	else if (KW("maxLength"))
		n->max_length = js_compile_count(c, v);
	else if (KW("pattern"))
	{
		if (v->type != jbvString)
			js_bad_schema(c, "The value of \"pattern\" must be a string.");
		n->pattern = js_compile_regex(c, v->val.string.val, v->val.string.len);
	}
	else if (KW("format"))
	{
		if (v->type != jbvString)
			js_bad_schema(c, "The value of \"format\" must be a string.");
		n->format = outbox_json_format_lookup(v->val.string.val, v->val.string.len);
		if (n->format == JSON_FORMAT_NONE)
			js_bad_schema(c, "Format \"%s\" is not implemented; outbox checks date-time, date, time, email, uuid, ipv4, ipv6, uri, uri-reference and regex.",
						  pnstrdup(v->val.string.val, Min(v->val.string.len, 100)));
	}
	else if (KW("minimum"))
		n->minimum = js_compile_number(c, v);
	else if (KW("maximum"))
		n->maximum = js_compile_number(c, v);
	else if (KW("exclusiveMinimum"))
		n->exclusive_minimum = js_compile_number(c, v);
	else if (KW("exclusiveMaximum"))
		n->exclusive_maximum = js_compile_number(c, v);
	else if (KW("multipleOf"))
	{
		n->multiple_of = js_compile_number(c, v);
		if (outbox_numeric_cmp(n->multiple_of, int64_to_numeric(0)) <= 0)
			js_bad_schema(c, "The value of \"multipleOf\" must be greater than 0.");
	}
	else if (KW("enum"))
	{
		if (!js_is_array(v))
			js_bad_schema(c, "The value of \"enum\" must be an array.");
		n->nenum = JsonContainerSize(v->val.binary.data);
		n->enum_values = palloc(sizeof(JsonbValue) * Max(n->nenum, 1));
		for (i = 0; i < n->nenum; i++)
			n->enum_values[i] = *getIthJsonbValueFromContainer(v->val.binary.data, i);
	}
	else if (KW("const"))
	{
		n->const_value = palloc(sizeof(JsonbValue));
		*n->const_value = *v;
	}
	else if (KW("allOf"))
		n->all_of = js_compile_list(c, v, base, "allOf", &n->nall_of, false);
	else if (KW("anyOf"))
		n->any_of = js_compile_list(c, v, base, "anyOf", &n->nany_of, false);
	else if (KW("oneOf"))
		n->one_of = js_compile_list(c, v, base, "oneOf", &n->none_of, false);
	else if (KW("not"))
		n->not = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("if"))
		n->if_ = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("then"))
		n->then_ = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("else"))
		n->else_ = js_compile_sub(c, v, base, NULL, -1);
	else if (KW("definitions"))
	{
		int			ndefs;

		(void) js_compile_map(c, v, base, "definitions", &ndefs);
	}
	else if (KW("$ref"))
	{
		/* resolved by js_compile_node, after the other keywords */
		if (v->type != jbvString)
			js_bad_schema(c, "The value of \"$ref\" must be a string.");
	}
	else if (KW("$id") || KW("$schema"))
	{
		if (v->type != jbvString)
			js_bad_schema(c, "The value of \"%s\" must be a string.", pnstrdup(kw, klen));
		if (KW("$schema") &&
			!(v->val.string.len >= 38 &&
			  memcmp(v->val.string.val, "http://json-schema.org/draft-07/schema", 38) == 0))
			js_bad_schema(c, "outbox speaks JSON Schema draft-07 (\"$schema\": \"http://json-schema.org/draft-07/schema#\").");
	}
	else if (outbox_schema_is_annotation(kw, klen))
		;
	else if (!js_is_ref_target(c))
		js_bad_schema(c, "Keyword \"%s\" is not implemented.",
					  pnstrdup(kw, Min(klen, 100)));
	/* else: a container of subschemas that a "$ref" uses, compiled by it */
}

/* A node for a schema value (object or boolean) at the current path */
static JsNode *
js_compile_node(JsCompiler *c, JsonbValue *v, const char *base)
{
	JsNode	   *n;
	JsonbIterator *it;
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;
	JsonbValue *id;
	JsonbValue *ref;
	ListCell   *lc;

	check_stack_depth();
	if (v->type == jbvBool)
	{
		n = palloc0(sizeof(JsNode));
		n->boolean = v->val.boolean ? 1 : 0;
		n->where = pstrdup(js_path_show(&c->path));
		return n;
	}
	if (!js_is_object(v))
		js_bad_schema(c, "A schema must be an object or a boolean.");

	/* one node per place in the schema, however it is reached */
	foreach(lc, c->compiled)
	{
		n = lfirst(lc);
		if (n->container == v->val.binary.data)
			return n;
	}
	n = palloc0(sizeof(JsNode));
	n->boolean = -1;
	n->container = v->val.binary.data;
	n->where = pstrdup(js_path_show(&c->path));
	n->min_props = n->max_props = -1;
	n->min_items = n->max_items = -1;
	n->min_length = n->max_length = -1;
	c->compiled = lappend(c->compiled, n);

	ref = js_get(v->val.binary.data, "$ref");
	id = js_get(v->val.binary.data, "$id");
	if (id != NULL && id->type == jbvString && ref == NULL)
		base = js_id_uri(base, id);

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			saved = c->path.len;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		js_path_push(&c->path, k.val.string.val, k.val.string.len);
		js_compile_keyword(c, n, k.val.string.val, k.val.string.len, &val, base);
		js_path_pop(&c->path, saved);
	}
	if (ref != NULL)
	{
		int			saved = c->path.len;

		js_path_push(&c->path, "$ref", 4);
		n->ref = js_compile_ref(c, pnstrdup(ref->val.string.val, ref->val.string.len), base);
		js_path_pop(&c->path, saved);
	}
	return n;
}

/*
 * ERROR when evaluating n can come back to n without descending into the
 * payload (through $ref, allOf, anyOf, oneOf, not, if, then, else or a
 * dependency's schema): validation would never end.
 */
static void
js_check_loops(JsCompiler *c, JsNode *n)
{
	int			i;

	if (n == NULL || n->boolean >= 0 || n->checked)
		return;
	if (n->visiting)
	{
		resetStringInfo(&c->path);
		if (strcmp(n->where, "(root)") != 0)
			appendStringInfoString(&c->path, n->where);
		js_bad_schema(c, "The schema refers to itself without descending into the payload.");
	}
	n->visiting = true;
	js_check_loops(c, n->ref);
	for (i = 0; i < n->nall_of; i++)
		js_check_loops(c, n->all_of[i]);
	for (i = 0; i < n->nany_of; i++)
		js_check_loops(c, n->any_of[i]);
	for (i = 0; i < n->none_of; i++)
		js_check_loops(c, n->one_of[i]);
	for (i = 0; i < n->ndeps; i++)
		js_check_loops(c, n->deps[i].schema);
	js_check_loops(c, n->not);
	js_check_loops(c, n->if_);
	js_check_loops(c, n->then_);
	js_check_loops(c, n->else_);
	n->visiting = false;
	n->checked = true;
}

/*
 * Set c up for the document copy (already in the compile context): its
 * root, its base URI, and the "$id"s and "$ref"s it holds; *root is the
 * root schema as a value.
 */
static void
js_compiler_init(JsCompiler *c, Jsonb *copy, JsonbValue *root)
{
	memset(c, 0, sizeof(JsCompiler));
	initStringInfo(&c->path);
	c->root = &copy->root;
	c->root_base = "";
	c->idents = palloc(sizeof(JsIdent));
	if (JB_ROOT_IS_SCALAR(copy))
		*root = *getIthJsonbValueFromContainer(&copy->root, 0);
	else
		js_binary(root, &copy->root);
	if (js_is_object(root))
	{
		JsonbValue *id = js_get(&copy->root, "$id");

		if (id != NULL && id->type == jbvString && js_get(&copy->root, "$ref") == NULL)
			c->root_base = js_id_uri("", id);
		js_scan(c, &copy->root, c->root_base);
	}
}

JsonSchema *
outbox_schema_compile(Jsonb *schema, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	JsonSchema *result = palloc0(sizeof(JsonSchema));
	Jsonb	   *copy = palloc(VARSIZE(schema));
	JsCompiler	c;
	JsonbValue	root;
	ListCell   *lc;

	memcpy(copy, schema, VARSIZE(schema));
	js_compiler_init(&c, copy, &root);
	result->root = js_compile_node(&c, &root, c.root_base);
	foreach(lc, c.compiled)
		js_check_loops(&c, lfirst(lc));
	if (c.metaschema != NULL)
		foreach(lc, c.metaschema->compiled)
			js_check_loops(c.metaschema, lfirst(lc));
	MemoryContextSwitchTo(old);
	return result;
}

/* ---------------------------------------------------------------------
 * Validating
 * ---------------------------------------------------------------------
 */

static bool js_validate(JsValidator *s, JsNode *n, JsonbValue *v);

/* Record a violation at the current path; always returns false */
static bool
js_fail(JsValidator *s, const char *fmt,...) pg_attribute_printf(2, 3);

static bool
js_fail(JsValidator *s, const char *fmt,...)
{
	if (s->silent > 0)
		return false;
	if (s->out != NULL && s->count < s->max)
	{
		StringInfoData path;
		int			i;

		if (s->count > 0)
			appendStringInfoString(s->out, "; ");
		initStringInfo(&path);
		for (i = 0; i < s->depth; i++)
		{
			if (s->steps[i].name != NULL)
				js_path_push(&path, s->steps[i].name, s->steps[i].len);
			else
				js_path_push_index(&path, s->steps[i].len);
		}
		appendStringInfo(s->out, "at %s: ", js_path_show(&path));
		pfree(path.data);
		for (;;)
		{
			va_list		args;
			int			needed;

			va_start(args, fmt);
			needed = appendStringInfoVA(s->out, fmt, args);
			va_end(args);
			if (needed == 0)
				break;
			enlargeStringInfo(s->out, needed);
		}
	}
	s->count++;
	return false;
}

/* Validate v against n without recording anything */
static bool
js_matches(JsValidator *s, JsNode *n, JsonbValue *v)
{
	bool		ok;

	s->silent++;
	ok = js_validate(s, n, v);
	s->silent--;
	return ok;
}

/* Validate v, the item or member token of the current container */
static bool
js_validate_at(JsValidator *s, JsNode *n, JsonbValue *v, const char *name,
			   int len, int index)
{
	bool		ok;

	if (s->silent > 0)
		return js_validate(s, n, v);
	if (s->depth == s->maxdepth)
	{
		s->maxdepth *= 2;
		s->steps = repalloc(s->steps, sizeof(JsStep) * s->maxdepth);
	}
	s->steps[s->depth].name = name;
	s->steps[s->depth].len = name != NULL ? len : index;
	s->depth++;
	ok = js_validate(s, n, v);
	s->depth--;
	return ok;
}

/* A name shortened for a message */
static char *
js_show_name(const char *name, int len)
{
	int			shown = pg_mbcliplen(name, len, 64);

	return psprintf("%.*s%s", shown, name, shown < len ? "..." : "");
}

static int
js_compare_keys(const char *a, int alen, const char *b, int blen)
{
	/* the order jsonb keeps object keys in: by length, then by bytes */
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static JsNode *
js_find_property(JsNode *n, const char *name, int len)
{
	int			lo = 0,
				hi = n->nprops - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			cmp = js_compare_keys(n->props[mid].name, n->props[mid].len, name, len);

		if (cmp == 0)
			return n->props[mid].schema;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

bool
outbox_schema_regex_search(text *re, const char *s, int len)
{
	return RE_compile_and_execute(re, (char *) s, len, REG_ADVANCED,
								  C_COLLATION_OID, 0, NULL);
}

static bool
js_has_key(JsonbContainer *obj, const char *name, int len)
{
	JsonbValue	tmp;

	return getKeyJsonValueFromContainer(obj, name, len, &tmp) != NULL;
}

static bool
js_validate_object(JsValidator *s, JsNode *n, JsonbContainer *obj)
{
	bool		ok = true;
	int			size = JsonContainerSize(obj);
	int			i;

	if (n->nprops > 0 || n->npatterns > 0 || n->additional_props != NULL ||
		n->property_names != NULL || n->ndeps > 0)
	{
		JsonbIterator *it = JsonbIteratorInit(obj);
		JsonbValue	k,
					v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			JsNode	   *prop;
			bool		matched = false;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &v, true);
			if ((prop = js_find_property(n, k.val.string.val, k.val.string.len)) != NULL)
			{
				matched = true;
				ok &= js_validate_at(s, prop, &v, k.val.string.val, k.val.string.len, -1);
			}
			for (i = 0; i < n->npatterns; i++)
			{
				if (outbox_schema_regex_search(n->patterns[i].re, k.val.string.val, k.val.string.len))
				{
					matched = true;
					ok &= js_validate_at(s, n->patterns[i].schema, &v,
										 k.val.string.val, k.val.string.len, -1);
				}
			}
			if (!matched && n->additional_props != NULL)
			{
				if (n->additional_props->boolean == 0)
					ok = js_fail(s, "property \"%s\" is not allowed",
								 js_show_name(k.val.string.val, k.val.string.len));
				else
					ok &= js_validate_at(s, n->additional_props, &v,
										 k.val.string.val, k.val.string.len, -1);
			}
			if (n->property_names != NULL && !js_matches(s, n->property_names, &k))
				ok = js_fail(s, "property name \"%s\" does not match propertyNames",
							 js_show_name(k.val.string.val, k.val.string.len));
			if (!ok && s->silent > 0)
				return false;
		}
	}
	for (i = 0; i < n->nrequired; i++)
	{
		if (!js_has_key(obj, n->required[i].name, n->required[i].len))
		{
			ok = js_fail(s, "\"%s\" is required",
						 js_show_name(n->required[i].name, n->required[i].len));
			if (s->silent > 0)
				return false;
		}
	}
	for (i = 0; i < n->ndeps; i++)
	{
		JsNamed    *d = &n->deps[i];
		int			j;

		if (!js_has_key(obj, d->name, d->len))
			continue;
		if (d->schema != NULL)
		{
			JsonbValue	self;

			js_binary(&self, obj);
			ok &= js_validate(s, d->schema, &self);
		}
		for (j = 0; j < d->nnames; j++)
			if (!js_has_key(obj, d->names[j].name, d->names[j].len))
				ok = js_fail(s, "\"%s\" is required when \"%s\" is present",
							 js_show_name(d->names[j].name, d->names[j].len),
							 js_show_name(d->name, d->len));
	}
	if (n->min_props >= 0 && size < n->min_props)
		ok = js_fail(s, "must have at least " INT64_FORMAT " properties", n->min_props);
	if (n->max_props >= 0 && size > n->max_props)
		ok = js_fail(s, "must have at most " INT64_FORMAT " properties", n->max_props);
	return ok;
}

static bool
js_validate_array(JsValidator *s, JsNode *n, JsonbContainer *arr)
{
	bool		ok = true;
	int			size = JsonContainerSize(arr);
	int			i;

	if (n->items != NULL || n->tuple != NULL || n->contains != NULL || n->unique_items)
	{
		JsonbValue *items = palloc(sizeof(JsonbValue) * Max(size, 1));
		JsonbIterator *it = JsonbIteratorInit(arr);
		JsonbValue	v;
		JsonbIteratorToken tok;
		bool		found = false;

		i = 0;
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
				items[i++] = v;
		for (i = 0; i < size; i++)
		{
			JsNode	   *item = n->items;

			if (n->tuple != NULL)
				item = i < n->ntuple ? n->tuple[i] : n->additional_items;
			if (item != NULL && !js_validate_at(s, item, &items[i], NULL, 0, i))
			{
				ok = false;
				if (s->silent > 0)
					return false;
			}
			if (n->contains != NULL && !found)
				found = js_matches(s, n->contains, &items[i]);
		}
		if (n->contains != NULL && !found)
			ok = js_fail(s, "no item matches contains");
		if (n->unique_items)
		{
			int			j;

			for (i = 0; i < size && ok; i++)
				for (j = i + 1; j < size; j++)
					if (outbox_json_equal(&items[i], &items[j]))
					{
						ok = js_fail(s, "items %d and %d are equal", i, j);
						break;
					}
		}
	}
	if (n->min_items >= 0 && size < n->min_items)
		ok = js_fail(s, "must have at least " INT64_FORMAT " items", n->min_items);
	if (n->max_items >= 0 && size > n->max_items)
		ok = js_fail(s, "must have at most " INT64_FORMAT " items", n->max_items);
	return ok;
}

static bool
js_validate_string(JsValidator *s, JsNode *n, JsonbValue *v)
{
	bool		ok = true;

	if (n->min_length >= 0 || n->max_length >= 0)
	{
		int			chars = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);

		if (n->min_length >= 0 && chars < n->min_length)
			ok = js_fail(s, "must have at least " INT64_FORMAT " characters", n->min_length);
		if (n->max_length >= 0 && chars > n->max_length)
			ok = js_fail(s, "must have at most " INT64_FORMAT " characters", n->max_length);
	}
	if (n->pattern != NULL &&
		!outbox_schema_regex_search(n->pattern, v->val.string.val, v->val.string.len))
		ok = js_fail(s, "does not match the pattern \"%s\"",
					 js_show_name(VARDATA_ANY(n->pattern), VARSIZE_ANY_EXHDR(n->pattern)));
	if (n->format != JSON_FORMAT_NONE &&
		!outbox_json_format_check(n->format, v->val.string.val, v->val.string.len))
		ok = js_fail(s, "is not a valid %s", outbox_json_format_name(n->format));
	return ok;
}

static bool
js_validate_number(JsValidator *s, JsNode *n, Numeric v)
{
	bool		ok = true;

	if (n->minimum != NULL && outbox_numeric_cmp(v, n->minimum) < 0)
		ok = js_fail(s, "must be at least %s", outbox_numeric_text(n->minimum));
	if (n->maximum != NULL && outbox_numeric_cmp(v, n->maximum) > 0)
		ok = js_fail(s, "must be at most %s", outbox_numeric_text(n->maximum));
	if (n->exclusive_minimum != NULL && outbox_numeric_cmp(v, n->exclusive_minimum) <= 0)
		ok = js_fail(s, "must be greater than %s", outbox_numeric_text(n->exclusive_minimum));
	if (n->exclusive_maximum != NULL && outbox_numeric_cmp(v, n->exclusive_maximum) >= 0)
		ok = js_fail(s, "must be less than %s", outbox_numeric_text(n->exclusive_maximum));
	if (n->multiple_of != NULL && !outbox_numeric_is_multiple(v, n->multiple_of))
		ok = js_fail(s, "must be a multiple of %s", outbox_numeric_text(n->multiple_of));
	return ok;
}

/* "expected integer or null, got string" */
static bool
js_fail_type(JsValidator *s, int expected, int got)
{
	StringInfoData names;
	int			bit;

	if (s->silent > 0)
		return false;
	initStringInfo(&names);
	for (bit = JT_NULL; bit <= JT_INTEGER; bit <<= 1)
		if (expected & bit)
			appendStringInfo(&names, "%s%s", names.len ? " or " : "", js_type_name(bit));
	return js_fail(s, "expected %s, got %s", names.data, js_type_name(got));
}

static bool
js_validate(JsValidator *s, JsNode *n, JsonbValue *v)
{
	bool		ok = true;
	int			type;
	int			i;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (n->boolean >= 0)
		return n->boolean == 1 ? true : js_fail(s, "no value is allowed here");
	if (n->ref != NULL)
		return js_validate(s, n->ref, v);

	/* whether a number is an integer matters only to "type": "integer" */
	if (v->type == jbvNumeric && (n->types & (JT_INTEGER | JT_NUMBER)) != JT_INTEGER)
		type = JT_NUMBER;
	else
		type = js_type_of(v);
	if (n->types != 0 &&
		!(n->types & type) &&
		!(type == JT_INTEGER && (n->types & JT_NUMBER)))
	{
		if (type == JT_NUMBER && v->type == jbvNumeric)
			type = js_type_of(v);	/* "got integer" or "got number" */
		ok = js_fail_type(s, n->types, type);
		if (s->silent > 0)
			return false;
	}
	else
	{
		switch (type)
		{
			case JT_OBJECT:
				ok = js_validate_object(s, n, v->val.binary.data);
				break;
			case JT_ARRAY:
				ok = js_validate_array(s, n, v->val.binary.data);
				break;
			case JT_STRING:
				ok = js_validate_string(s, n, v);
				break;
			case JT_NUMBER:
			case JT_INTEGER:
				ok = js_validate_number(s, n, v->val.numeric);
				break;
			default:
				break;
		}
		if (!ok && s->silent > 0)
			return false;
	}

	if (n->enum_values != NULL)
	{
		for (i = 0; i < n->nenum; i++)
			if (outbox_json_equal(v, &n->enum_values[i]))
				break;
		if (i == n->nenum)
			ok = js_fail(s, "not one of the values in enum");
	}
	if (n->const_value != NULL && !outbox_json_equal(v, n->const_value))
		ok = js_fail(s, "not the value of const");
	for (i = 0; i < n->nall_of && (ok || s->silent == 0); i++)
		ok &= js_validate(s, n->all_of[i], v);
	if (n->nany_of > 0)
	{
		for (i = 0; i < n->nany_of; i++)
			if (js_matches(s, n->any_of[i], v))
				break;
		if (i == n->nany_of)
			ok = js_fail(s, "matches none of the schemas in anyOf");
	}
	if (n->none_of > 0)
	{
		int			matches = 0;

		for (i = 0; i < n->none_of && matches < 2; i++)
			if (js_matches(s, n->one_of[i], v))
				matches++;
		if (matches == 0)
			ok = js_fail(s, "matches none of the schemas in oneOf");
		else if (matches > 1)
			ok = js_fail(s, "matches more than one of the schemas in oneOf");
	}
	if (n->not != NULL && js_matches(s, n->not, v))
		ok = js_fail(s, "must not match the schema in not");
	if (n->if_ != NULL)
	{
		if (js_matches(s, n->if_, v))
		{
			if (n->then_ != NULL)
				ok &= js_validate(s, n->then_, v);
		}
		else if (n->else_ != NULL)
			ok &= js_validate(s, n->else_, v);
	}
	return ok;
}

int
outbox_schema_validate(JsonSchema *schema, Jsonb *doc, StringInfo violations, int max)
{
	JsValidator s;
	JsonbValue	root;

	memset(&s, 0, sizeof(s));
	s.maxdepth = 16;
	s.steps = palloc(sizeof(JsStep) * s.maxdepth);
	s.out = violations;
	s.max = max;
	if (JB_ROOT_IS_SCALAR(doc))
		root = *getIthJsonbValueFromContainer(&doc->root, 0);
	else
		js_binary(&root, &doc->root);
	if (violations == NULL)
		return js_matches(&s, schema->root, &root) ? 0 : 1;
	(void) js_validate(&s, schema->root, &root);
	return s.count;
}
