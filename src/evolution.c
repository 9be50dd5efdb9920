/*-------------------------------------------------------------------------
 *
 * evolution.c
 *	  Schema evolution: a new JSON Schema (draft-07) for an event type that
 *	  exists already is accepted only when every document it accepts, the
 *	  old schema accepted too, so that a consumer written against the old
 *	  schema can read every event published under the new one.
 *
 * The question is whether new is a subset of old, as sets of JSON
 * documents.  It is answered structurally and conservatively: each keyword
 * of the old schema is a constraint that the new schema must be seen to
 * imply, keyword by keyword; what cannot be proven is refused, with the
 * JSON pointer (RFC 6901) of the old constraint that broke and a sentence
 * saying what changed.  "Safe" here always means proven safe; a refusal may
 * be a change that is harmless in fact but too subtle for these rules.
 *
 * The two sides are not symmetric.  On the new side (the subset, "sub")
 * leaving a constraint out only makes the set larger, so whatever is not
 * understood there may be ignored: proving a larger set safe proves the
 * real one.  On the old side (the superset, "sup") every constraint must be
 * proven.  The sub side is therefore a conjunction (EvoConj) of schema
 * objects that all apply to the same document: a schema, its allOf members,
 * and at a property or array position everything that applies there
 * (properties, matching patternProperties, additionalProperties; items,
 * additionalItems).  Its types (a bitmask) are worked out once; when it
 * holds an enum or const it is finite, and its values may then simply be
 * validated against the old constraint instead.  An anyOf or oneOf of the
 * new side is split: each alternative, with the rest, is proven on its own.
 *
 * $ref: siblings are ignored (draft-07).  "#", "#/json/pointer" (with ~0, ~1
 * and %-escapes) and the same preceded by the root's $id are resolved
 * against the root of the document the reference is in; a document with an
 * $id below its root changes the base URI there, so its references are not
 * resolved at all.  An old reference that cannot be resolved is a refusal;
 * a new one is ignored (see above).  Recursion: each comparison in progress
 * is kept on a stack, and meeting the same comparison again below a nested
 * document (a property, an item) assumes it holds, which is sound by
 * induction on the document's depth; meeting it again without going down
 * into the document (a $ref cycle through allOf, say) proves nothing and
 * is a refusal.  The work done is bounded (EVO_MAX_STEPS).
 *
 * Keywords that constrain nothing are skipped: annotations
 * (outbox_schema_is_annotation), definitions, and the other members a $ref
 * may point into (objects, arrays, booleans under a key outbox does not
 * know: the validator admits no other unknown key); a reference into them
 * is followed where it is used.  Any other keyword of the old schema that
 * this file does not know is safe only with the same value in the new one.
 *
 * patternProperties and pattern are evaluated with PostgreSQL's regular
 * expressions (advanced syntax, C collation), as the validator does.
 * Numbers are compared as numeric, never as double.  Everything is
 * allocated in a memory context of its own, a child of the caller's (which
 * runs inside a transaction), deleted when the new schema is safe and left
 * to the caller's after the ERROR otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "evolution.h"
#include "jsonschema.h"

/* Problems listed in the DETAIL at most */
#define EVO_MAX_PROBLEMS 10

/* Comparisons made at most before giving up */
#define EVO_MAX_STEPS 100000

/* $ref followed at most in a row (a longer chain is a cycle) */
#define EVO_MAX_REF_HOPS 32

/* Schema objects in one conjunction at most (more are left out) */
#define EVO_MAX_MEMBERS 32

/* Nesting at most where schemas are walked without a step budget */
#define EVO_MAX_DEPTH 64

/* Values shown at most in one message, and bytes of each */
#define EVO_MAX_VALUES_SHOWN 5
#define EVO_MAX_VALUE_TEXT 60

/* The JSON types, "integer" being the numbers without a fraction */
#define EVO_T_NULL		0x01
#define EVO_T_BOOLEAN	0x02
#define EVO_T_OBJECT	0x04
#define EVO_T_ARRAY		0x08
#define EVO_T_STRING	0x10
#define EVO_T_INTEGER	0x20
#define EVO_T_FRACTION	0x40
#define EVO_T_NUMBER	(EVO_T_INTEGER | EVO_T_FRACTION)
#define EVO_T_ANY		0x7F

/* An anyOf or oneOf of a conjunction's member that was split already */
#define EVO_SPLIT_ANYOF 0x01
#define EVO_SPLIT_ONEOF 0x02

/* The keywords of draft-07, by what they do here */
typedef enum EvoKeyword
{
	EVO_KW_UNKNOWN = 0,
	EVO_KW_ANNOTATION,
	EVO_KW_DEFINITIONS,
	EVO_KW_REF,
	EVO_KW_TYPE,
	EVO_KW_ENUM,
	EVO_KW_CONST,
	EVO_KW_MULTIPLEOF,
	EVO_KW_MAXIMUM,
	EVO_KW_EXCLUSIVEMAXIMUM,
	EVO_KW_MINIMUM,
	EVO_KW_EXCLUSIVEMINIMUM,
	EVO_KW_MAXLENGTH,
	EVO_KW_MINLENGTH,
	EVO_KW_PATTERN,
	EVO_KW_FORMAT,
	EVO_KW_ITEMS,
	EVO_KW_ADDITIONALITEMS,
	EVO_KW_MAXITEMS,
	EVO_KW_MINITEMS,
	EVO_KW_UNIQUEITEMS,
	EVO_KW_CONTAINS,
	EVO_KW_MAXPROPERTIES,
	EVO_KW_MINPROPERTIES,
	EVO_KW_REQUIRED,
	EVO_KW_PROPERTIES,
	EVO_KW_PATTERNPROPERTIES,
	EVO_KW_ADDITIONALPROPERTIES,
	EVO_KW_DEPENDENCIES,
	EVO_KW_PROPERTYNAMES,
	EVO_KW_IF,
	EVO_KW_THEN,
	EVO_KW_ELSE,
	EVO_KW_ALLOF,
	EVO_KW_ANYOF,
	EVO_KW_ONEOF,
	EVO_KW_NOT
} EvoKeyword;

static const struct
{
	const char *name;
	EvoKeyword	keyword;
}			evo_keywords[] =
{
	{"definitions", EVO_KW_DEFINITIONS},
	{"$ref", EVO_KW_REF},
	{"type", EVO_KW_TYPE},
	{"enum", EVO_KW_ENUM},
	{"const", EVO_KW_CONST},
	{"multipleOf", EVO_KW_MULTIPLEOF},
	{"maximum", EVO_KW_MAXIMUM},
	{"exclusiveMaximum", EVO_KW_EXCLUSIVEMAXIMUM},
	{"minimum", EVO_KW_MINIMUM},
	{"exclusiveMinimum", EVO_KW_EXCLUSIVEMINIMUM},
	{"maxLength", EVO_KW_MAXLENGTH},
	{"minLength", EVO_KW_MINLENGTH},
	{"pattern", EVO_KW_PATTERN},
	{"format", EVO_KW_FORMAT},
	{"items", EVO_KW_ITEMS},
	{"additionalItems", EVO_KW_ADDITIONALITEMS},
	{"maxItems", EVO_KW_MAXITEMS},
	{"minItems", EVO_KW_MINITEMS},
	{"uniqueItems", EVO_KW_UNIQUEITEMS},
	{"contains", EVO_KW_CONTAINS},
	{"maxProperties", EVO_KW_MAXPROPERTIES},
	{"minProperties", EVO_KW_MINPROPERTIES},
	{"required", EVO_KW_REQUIRED},
	{"properties", EVO_KW_PROPERTIES},
	{"patternProperties", EVO_KW_PATTERNPROPERTIES},
	{"additionalProperties", EVO_KW_ADDITIONALPROPERTIES},
	{"dependencies", EVO_KW_DEPENDENCIES},
	{"propertyNames", EVO_KW_PROPERTYNAMES},
	{"if", EVO_KW_IF},
	{"then", EVO_KW_THEN},
	{"else", EVO_KW_ELSE},
	{"allOf", EVO_KW_ALLOF},
	{"anyOf", EVO_KW_ANYOF},
	{"oneOf", EVO_KW_ONEOF},
	{"not", EVO_KW_NOT},
	{NULL, EVO_KW_UNKNOWN}
};

/*
 * The new side of a comparison: schema objects that all apply to the same
 * document, so that it accepts what all of them accept.  No member is an
 * empty conjunction: it accepts everything.
 */
typedef struct EvoConj
{
	int			n;
	JsonbContainer *member[EVO_MAX_MEMBERS];
	uint8		split[EVO_MAX_MEMBERS];
	bool		nothing;		/* provably accepts no document */
	uint8		types;			/* the types it may accept, at most */
	/* its values when finite (an enum or const), worked out when needed */
	bool		finite_done;
	bool		finite_const;
	int			nfinite;
	JsonbValue *finite;
} EvoConj;

/* One document: the root references are resolved against */
typedef struct EvoDoc
{
	JsonbContainer *root;		/* NULL when the root is a boolean */
	bool		refs_ok;		/* false with an $id below the root */
	const char *base;			/* the root's $id without its fragment */
	int			baselen;
} EvoDoc;

/* A comparison in progress, and how deep into the document it began */
typedef struct EvoPair
{
	JsonbContainer *sup;
	EvoConj    *sub;
	int			descent;
} EvoPair;

typedef struct EvoState
{
	EvoDoc		sup;			/* the old schema (swapped when reversed) */
	EvoDoc		sub;			/* the new schema */
	StringInfoData path;		/* JSON pointer of the old constraint */
	StringInfoData detail;
	int			problems;
	int			quiet;			/* > 0: only trying, nothing is reported */
	int			descent;		/* nested documents gone into */
	long		steps;
	bool		exhausted;
	int			vdepth;			/* nesting of evo_valid */
	EvoPair    *stack;
	int			nstack;
	int			maxstack;
} EvoState;

/*
 * Record a failed check and go on with the others, except while only
 * trying (quiet), where the first failure is the answer.  Never between a
 * push and its pop.
 */
#define EVO_CHECK(st, ok, expr) \
	do { \
		if (!(expr)) \
		{ \
			(ok) = false; \
			if ((st)->quiet > 0) \
				return false; \
		} \
	} while (0)

static bool evo_subset(EvoState *st, EvoConj *sub, JsonbValue *sup_node);
static void evo_problem(EvoState *st, const char *keyword, const char *fmt,...)
			pg_attribute_printf(3, 4);
static bool evo_valid(EvoState *st, JsonbValue *schema, JsonbValue *v);
static uint8 evo_schema_types(EvoState *st, bool sup_side, JsonbValue *node,
							  int depth);


/* ---- keywords, values and numbers ---- */

/*
 * What a keyword of a schema object is.
 */
static EvoKeyword
evo_keyword(const char *s, int len)
{
	int			i;

	if (outbox_schema_is_annotation(s, len))
		return EVO_KW_ANNOTATION;
	for (i = 0; evo_keywords[i].name != NULL; i++)
		if (strlen(evo_keywords[i].name) == (size_t) len &&
			memcmp(evo_keywords[i].name, s, len) == 0)
			return evo_keywords[i].keyword;
	return EVO_KW_UNKNOWN;
}

/*
 * Whether a keyword with value v constrains nothing: an annotation,
 * definitions, or a key outbox does not know holding what a $ref may point
 * into (the validator lets an unknown key through only as a $ref's
 * target); references into them are followed where they are used.
 */
static bool
evo_inert(EvoKeyword kw, JsonbValue *v)
{
	return kw == EVO_KW_ANNOTATION || kw == EVO_KW_DEFINITIONS ||
		(kw == EVO_KW_UNKNOWN && (v->type == jbvBinary || v->type == jbvBool));
}

/*
 * Whether the container c has a "$id" key anywhere inside.
 */
static bool
evo_has_id(JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		if (tok == WJB_KEY && v.val.string.len == 3 &&
			memcmp(v.val.string.val, "$id", 3) == 0)
			return true;
	return false;
}

/*
 * The value of key in the object c, in *out; false when it has none.
 */
static bool
evo_get(JsonbContainer *c, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), out) != NULL;
}

/* Whether v is an object, an array (nested, never a raw scalar) */
static bool
evo_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
evo_is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
		!JsonContainerIsScalar(v->val.binary.data);
}

/*
 * The object value of key in c, or NULL when it has none (or it is not an
 * object).
 */
static JsonbContainer *
evo_get_object(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (evo_get(c, key, &v) && evo_is_object(&v))
		return v.val.binary.data;
	return NULL;
}

/*
 * The array value of key in c, or NULL.
 */
static JsonbContainer *
evo_get_array(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (evo_get(c, key, &v) && evo_is_array(&v))
		return v.val.binary.data;
	return NULL;
}

/*
 * The numeric value of key in c, in *out; false when it has none.
 */
static bool
evo_get_num(JsonbContainer *c, const char *key, Numeric *out)
{
	JsonbValue	v;

	if (!evo_get(c, key, &v) || v.type != jbvNumeric)
		return false;
	*out = v.val.numeric;
	return true;
}

/*
 * Whether key in c is the boolean true.
 */
static bool
evo_get_true(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	return evo_get(c, key, &v) && v.type == jbvBool && v.val.boolean;
}

/*
 * The keys and values of the object c, in jsonb's order; their number is
 * returned.  Nested containers come back as jbvBinary.
 */
static int
evo_entries(JsonbContainer *c, JsonbValue **keys, JsonbValue **values)
{
	int			n = JsonContainerSize(c);
	int			i = 0;
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;

	*keys = palloc(sizeof(JsonbValue) * Max(n, 1));
	*values = palloc(sizeof(JsonbValue) * Max(n, 1));
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY && i < n)
			(*keys)[i] = v;
		else if (tok == WJB_VALUE && i < n)
			(*values)[i++] = v;
	}
	return i;
}

/*
 * The elements of the array c; their number is returned.
 */
static int
evo_elements(JsonbContainer *c, JsonbValue **elems)
{
	int			n = JsonContainerSize(c);
	int			i;

	*elems = palloc(sizeof(JsonbValue) * Max(n, 1));
	for (i = 0; i < n; i++)
		(*elems)[i] = *getIthJsonbValueFromContainer(c, i);
	return n;
}

/* floor(n) and ceil(n) */
static Numeric
evo_floor(Numeric n)
{
	return DatumGetNumeric(DirectFunctionCall1(numeric_floor,
											   NumericGetDatum(n)));
}

static Numeric
evo_ceil(Numeric n)
{
	return DatumGetNumeric(DirectFunctionCall1(numeric_ceil,
											   NumericGetDatum(n)));
}

static Numeric
evo_add(Numeric n, int64 i)
{
	return DatumGetNumeric(DirectFunctionCall2(numeric_add,
											   NumericGetDatum(n),
											   NumericGetDatum(int64_to_numeric(i))));
}

/*
 * A count keyword's value (a non-negative integer) as an int, INT_MAX for
 * anything larger.
 */
static int
evo_num_to_int(Numeric n)
{
	if (outbox_numeric_cmp(n, int64_to_numeric(INT_MAX)) >= 0)
		return INT_MAX;
	if (outbox_numeric_cmp(n, int64_to_numeric(0)) <= 0)
		return 0;
	return (int) DatumGetInt64(DirectFunctionCall1(numeric_int8,
												   NumericGetDatum(evo_floor(n))));
}

/*
 * Whether the array c holds a value equal to v.
 */
static bool
evo_array_contains(JsonbContainer *c, JsonbValue *v)
{
	int			n = JsonContainerSize(c);
	int			i;

	for (i = 0; i < n; i++)
		if (outbox_json_equal(getIthJsonbValueFromContainer(c, i), v))
			return true;
	return false;
}

/*
 * A value as JSON text for a message, cut short when long.
 */
static char *
evo_value_text(JsonbValue *v)
{
	StringInfoData buf;

	initStringInfo(&buf);
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(&buf, "null");
			break;
		case jbvBool:
			appendStringInfoString(&buf, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(&buf, outbox_numeric_text(v->val.numeric));
			break;
		case jbvString:
			escape_json(&buf, pnstrdup(v->val.string.val, v->val.string.len));
			break;
		case jbvBinary:
			(void) JsonbToCString(&buf, v->val.binary.data, v->val.binary.len);
			break;
		default:
			appendStringInfoChar(&buf, '?');
			break;
	}
	if (buf.len > EVO_MAX_VALUE_TEXT)
	{
		int			cut = pg_mbcliplen(buf.data, buf.len, EVO_MAX_VALUE_TEXT);

		buf.len = cut;
		buf.data[cut] = '\0';
		appendStringInfoString(&buf, "...");
	}
	return buf.data;
}

/*
 * A string as a quoted JSON string, for a message.
 */
static char *
evo_quote(const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	return evo_value_text(&v);
}

/*
 * Values as a ", "-separated list for a message, the first few of them.
 */
static char *
evo_values_text(JsonbValue *vals, int n)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < n && i < EVO_MAX_VALUES_SHOWN; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, evo_value_text(&vals[i]));
	}
	if (n > EVO_MAX_VALUES_SHOWN)
		appendStringInfo(&buf, " and %d more", n - EVO_MAX_VALUES_SHOWN);
	return buf.data;
}

/*
 * Whether the string s matches the pattern as the validator matches it
 * (outbox_schema_regex_search(): unanchored, ARE, C collation).
 */
static bool
evo_regex_match(const char *pattern, int patlen, const char *s, int len)
{
	return outbox_schema_regex_search(cstring_to_text_with_len(pattern, patlen), s, len);
}


/* ---- types ---- */

/*
 * The type bit of a type name.
 */
static uint8
evo_type_name(const char *s, int len)
{
	static const struct
	{
		const char *name;
		uint8		types;
	}			names[] =
	{
		{"null", EVO_T_NULL},
		{"boolean", EVO_T_BOOLEAN},
		{"object", EVO_T_OBJECT},
		{"array", EVO_T_ARRAY},
		{"string", EVO_T_STRING},
		{"integer", EVO_T_INTEGER},
		{"number", EVO_T_NUMBER},
		{NULL, 0}
	};
	int			i;

	for (i = 0; names[i].name != NULL; i++)
		if (strlen(names[i].name) == (size_t) len &&
			memcmp(names[i].name, s, len) == 0)
			return names[i].types;
	return 0;
}

/*
 * The types a "type" keyword's value (a name or an array of them) allows.
 */
static uint8
evo_type_keyword(JsonbValue *v)
{
	uint8		types = 0;

	if (v->type == jbvString)
		return evo_type_name(v->val.string.val, v->val.string.len);
	if (evo_is_array(v))
	{
		JsonbValue *elems;
		int			n = evo_elements(v->val.binary.data, &elems);
		int			i;

		for (i = 0; i < n; i++)
			if (elems[i].type == jbvString)
				types |= evo_type_name(elems[i].val.string.val,
									   elems[i].val.string.len);
	}
	return types;
}

/*
 * The type bit of a value.
 */
static uint8
evo_value_type(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return EVO_T_NULL;
		case jbvBool:
			return EVO_T_BOOLEAN;
		case jbvString:
			return EVO_T_STRING;
		case jbvNumeric:
			return outbox_numeric_is_integer(v->val.numeric) ? EVO_T_INTEGER : EVO_T_FRACTION;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ?
				EVO_T_OBJECT : EVO_T_ARRAY;
		default:
			return EVO_T_ANY;
	}
}

/*
 * Types as words for a message: integer, number, ["string", "null"].
 */
static char *
evo_types_text(uint8 types)
{
	const char *names[7];
	int			n = 0;
	int			i;
	StringInfoData buf;

	if (types & EVO_T_NULL)
		names[n++] = "null";
	if (types & EVO_T_BOOLEAN)
		names[n++] = "boolean";
	if (types & EVO_T_OBJECT)
		names[n++] = "object";
	if (types & EVO_T_ARRAY)
		names[n++] = "array";
	if ((types & EVO_T_NUMBER) == EVO_T_INTEGER)
		names[n++] = "integer";
	else if (types & EVO_T_NUMBER)
		names[n++] = "number";
	if (types & EVO_T_STRING)
		names[n++] = "string";
	if (n == 0)
		return pstrdup("no type");
	if (n == 1)
		return pstrdup(names[0]);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < n; i++)
		appendStringInfo(&buf, "%s\"%s\"", i > 0 ? ", " : "", names[i]);
	appendStringInfoChar(&buf, ']');
	return buf.data;
}


/* ---- documents and references ---- */

/*
 * The root of a schema's jsonb: a boolean (stored as a raw scalar) or an
 * object.
 */
static void
evo_root(Jsonb *jb, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(jb))
		*out = *getIthJsonbValueFromContainer(&jb->root, 0);
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &jb->root;
		out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/*
 * Whether the schema object c, or a schema below it, has an $id below the
 * root: there the base URI of references changes, which is not followed
 * here.  Walks the keywords whose values are schemas only, so that a
 * property named "$id" is no $id.
 */
static bool
evo_nested_id(JsonbContainer *c, bool is_root, int depth)
{
	JsonbValue *keys,
			   *values;
	int			n,
				i,
				j;

	if (depth > EVO_MAX_DEPTH)
		return true;
	n = evo_entries(c, &keys, &values);
	for (i = 0; i < n; i++)
	{
		EvoKeyword kw = evo_keyword(keys[i].val.string.val,
									keys[i].val.string.len);
		JsonbValue *v = &values[i];

		if (!is_root && keys[i].val.string.len == 3 &&
			memcmp(keys[i].val.string.val, "$id", 3) == 0)
			return true;
		if (v->type != jbvBinary)
			continue;
		switch (kw)
		{
			case EVO_KW_UNKNOWN:
				/* what a $ref points into: any $id in it counts */
				if (evo_has_id(v->val.binary.data))
					return true;
				break;
			case EVO_KW_PROPERTIES:
			case EVO_KW_PATTERNPROPERTIES:
			case EVO_KW_DEFINITIONS:
			case EVO_KW_DEPENDENCIES:
				if (evo_is_object(v))
				{
					JsonbValue *k2,
							   *v2;
					int			n2 = evo_entries(v->val.binary.data, &k2, &v2);

					for (j = 0; j < n2; j++)
						if (evo_is_object(&v2[j]) &&
							evo_nested_id(v2[j].val.binary.data, false, depth + 1))
							return true;
				}
				break;
			case EVO_KW_ALLOF:
			case EVO_KW_ANYOF:
			case EVO_KW_ONEOF:
			case EVO_KW_ITEMS:
				if (evo_is_array(v))
				{
					JsonbValue *elems;
					int			n2 = evo_elements(v->val.binary.data, &elems);

					for (j = 0; j < n2; j++)
						if (evo_is_object(&elems[j]) &&
							evo_nested_id(elems[j].val.binary.data, false, depth + 1))
							return true;
					break;
				}
				/* FALLTHROUGH */
			case EVO_KW_NOT:
			case EVO_KW_IF:
			case EVO_KW_THEN:
			case EVO_KW_ELSE:
			case EVO_KW_ADDITIONALITEMS:
			case EVO_KW_ADDITIONALPROPERTIES:
			case EVO_KW_CONTAINS:
			case EVO_KW_PROPERTYNAMES:
				if (evo_is_object(v) &&
					evo_nested_id(v->val.binary.data, false, depth + 1))
					return true;
				break;
			default:
				break;
		}
	}
	return false;
}

/*
 * Set up a document from its root.
 */
static void
evo_doc_init(EvoDoc *doc, JsonbValue *root)
{
	JsonbValue	id;

	memset(doc, 0, sizeof(EvoDoc));
	if (!evo_is_object(root))
		return;
	doc->root = root->val.binary.data;
	doc->refs_ok = !evo_nested_id(doc->root, true, 0);
	if (evo_get(doc->root, "$id", &id) && id.type == jbvString &&
		id.val.string.len > 0)
	{
		const char *hash = memchr(id.val.string.val, '#', id.val.string.len);

		doc->base = id.val.string.val;
		doc->baselen = hash ? hash - id.val.string.val : id.val.string.len;
	}
}

/* The value of a hexadecimal digit, -1 for none */
static int
evo_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Resolve the reference ref against doc's root into *out: "#", a JSON
 * pointer fragment ("#/definitions/a~1b", %-escapes decoded first), either
 * preceded by the root's $id.  False when it does not resolve to a schema.
 */
static bool
evo_pointer(EvoDoc *doc, const char *ref, int len, JsonbValue *out)
{
	char	   *buf;
	int			n = 0;
	int			i;
	JsonbValue	cur;

	if (doc->root == NULL)
		return false;
	if (doc->base != NULL && len >= doc->baselen &&
		memcmp(ref, doc->base, doc->baselen) == 0)
	{
		ref += doc->baselen;
		len -= doc->baselen;
	}
	if (len > 0)
	{
		if (ref[0] != '#')
			return false;
		ref++;
		len--;
	}
	/* %-decode the fragment */
	buf = palloc(len + 1);
	for (i = 0; i < len; i++)
	{
		if (ref[i] == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= len)
				return false;
			hi = evo_hex(ref[i + 1]);
			lo = evo_hex(ref[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			buf[n++] = (char) (hi * 16 + lo);
			i += 2;
		}
		else
			buf[n++] = ref[i];
	}
	buf[n] = '\0';

	cur.type = jbvBinary;
	cur.val.binary.data = doc->root;
	cur.val.binary.len = 0;
	if (n > 0 && buf[0] != '/')
		return false;			/* a plain-name fragment: needs $id */
	i = 0;
	while (i < n)
	{
		char	   *seg = palloc(n + 1);
		int			seglen = 0;
		JsonbValue	next;

		i++;					/* the '/' */
		while (i < n && buf[i] != '/')
		{
			if (buf[i] == '~')
			{
				if (i + 1 >= n || (buf[i + 1] != '0' && buf[i + 1] != '1'))
					return false;
				seg[seglen++] = buf[i + 1] == '0' ? '~' : '/';
				i += 2;
			}
			else
				seg[seglen++] = buf[i++];
		}
		if (cur.type != jbvBinary)
			return false;
		if (JsonContainerIsObject(cur.val.binary.data))
		{
			if (getKeyJsonValueFromContainer(cur.val.binary.data, seg, seglen,
											 &next) == NULL)
				return false;
		}
		else
		{
			int			index = 0;
			int			k;

			if (seglen == 0 || seglen > 9 || (seglen > 1 && seg[0] == '0'))
				return false;
			for (k = 0; k < seglen; k++)
			{
				if (seg[k] < '0' || seg[k] > '9')
					return false;
				index = index * 10 + (seg[k] - '0');
			}
			if (index >= (int) JsonContainerSize(cur.val.binary.data))
				return false;
			next = *getIthJsonbValueFromContainer(cur.val.binary.data, index);
		}
		cur = next;
	}
	if (cur.type != jbvBool && !evo_is_object(&cur))
		return false;
	*out = cur;
	return true;
}

/*
 * The schema node is, once its $ref (siblings ignored) is followed as often
 * as it takes, in *out.  False when a reference does not resolve, or they
 * go round in a cycle.  sup_side: node is in the old document (or, while
 * reversed, what stands in for it).
 */
static bool
evo_resolve(EvoState *st, bool sup_side, JsonbValue *node, JsonbValue *out)
{
	EvoDoc	   *doc = sup_side ? &st->sup : &st->sub;
	int			hops;

	*out = *node;
	for (hops = 0;; hops++)
	{
		JsonbValue	ref;

		if (!evo_is_object(out) || !evo_get(out->val.binary.data, "$ref", &ref))
			return true;
		if (hops == EVO_MAX_REF_HOPS || !doc->refs_ok ||
			ref.type != jbvString ||
			!evo_pointer(doc, ref.val.string.val, ref.val.string.len, out))
			return false;
	}
}

/*
 * Exchange the roles of the two documents, to prove that something of the
 * old one is a subset of something of the new one.
 */
static void
evo_swap(EvoState *st)
{
	EvoDoc		tmp = st->sup;

	st->sup = st->sub;
	st->sub = tmp;
}

/*
 * Whether a schema object constrains nothing: all its keywords are
 * annotations or definitions.
 */
static bool
evo_trivial_container(JsonbContainer *c)
{
	JsonbValue *keys,
			   *values;
	int			n = evo_entries(c, &keys, &values);
	int			i;

	for (i = 0; i < n; i++)
		if (!evo_inert(evo_keyword(keys[i].val.string.val,
								   keys[i].val.string.len), &values[i]))
			return false;
	return true;
}

/*
 * Whether a schema accepts everything: true, or an object that constrains
 * nothing (once its $ref is followed).
 */
static bool
evo_trivial(EvoState *st, bool sup_side, JsonbValue *node)
{
	JsonbValue	s;

	if (!evo_resolve(st, sup_side, node, &s))
		return false;
	if (s.type == jbvBool)
		return s.val.boolean;
	return evo_is_object(&s) && evo_trivial_container(s.val.binary.data);
}

/*
 * Whether the container c has a "$ref" key anywhere inside.
 */
static bool
evo_has_ref(JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		if (tok == WJB_KEY && v.val.string.len == 4 &&
			memcmp(v.val.string.val, "$ref", 4) == 0)
			return true;
	return false;
}

/*
 * Whether two schema objects are equal JSON once their annotations are
 * left out.  With no_refs, also that neither has a $ref anywhere: the same
 * reference in two documents need not mean the same schema.
 */
static bool
evo_same_schema(JsonbContainer *a, JsonbContainer *b, bool no_refs)
{
	JsonbValue *keys,
			   *values;
	int			n = evo_entries(a, &keys, &values);
	int			na = 0;
	int			nb = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		JsonbValue	other;

		if (evo_keyword(keys[i].val.string.val,
						keys[i].val.string.len) == EVO_KW_ANNOTATION)
			continue;
		na++;
		if (getKeyJsonValueFromContainer(b, keys[i].val.string.val,
										 keys[i].val.string.len, &other) == NULL ||
			!outbox_json_equal(&values[i], &other))
			return false;
	}
	n = evo_entries(b, &keys, &values);
	for (i = 0; i < n; i++)
		if (evo_keyword(keys[i].val.string.val,
						keys[i].val.string.len) != EVO_KW_ANNOTATION)
			nb++;
	if (na != nb)
		return false;
	return !no_refs || (!evo_has_ref(a) && !evo_has_ref(b));
}

/*
 * The container of a schema node, NULL for a boolean.
 */
static JsonbContainer *
evo_node_container(JsonbValue *node)
{
	return node->type == jbvBinary ? node->val.binary.data : NULL;
}


/* ---- the path and the problems ---- */

/*
 * Append a segment to the path, escaped as RFC 6901 says; returns what to
 * give evo_pop.
 */
static int
evo_push(EvoState *st, const char *seg, int len)
{
	int			saved = st->path.len;
	int			i;

	appendStringInfoChar(&st->path, '/');
	for (i = 0; i < len; i++)
	{
		if (seg[i] == '~')
			appendStringInfoString(&st->path, "~0");
		else if (seg[i] == '/')
			appendStringInfoString(&st->path, "~1");
		else
			appendStringInfoChar(&st->path, seg[i]);
	}
	return saved;
}

static int
evo_push_str(EvoState *st, const char *seg)
{
	return evo_push(st, seg, strlen(seg));
}

/* Append two segments, a keyword and an array index */
static int
evo_push_index(EvoState *st, const char *keyword, int index)
{
	int			saved = evo_push_str(st, keyword);

	appendStringInfo(&st->path, "/%d", index);
	return saved;
}

/* Append two segments, a keyword and a name */
static int
evo_push_name(EvoState *st, const char *keyword, const char *name, int len)
{
	int			saved = evo_push_str(st, keyword);

	(void) evo_push(st, name, len);
	return saved;
}

static void
evo_pop(EvoState *st, int saved)
{
	st->path.len = saved;
	st->path.data[saved] = '\0';
}

/*
 * A problem found at the path (and the keyword, when not NULL): counted,
 * and the first EVO_MAX_PROBLEMS appended to the detail as "at <pointer>:
 * <what>".  Nothing while only trying.
 */
static void
evo_problem(EvoState *st, const char *keyword, const char *fmt,...)
{
	int			saved = st->path.len;

	if (st->quiet > 0)
		return;
	if (++st->problems > EVO_MAX_PROBLEMS)
		return;
	if (keyword != NULL)
		(void) evo_push_str(st, keyword);
	if (st->detail.len > 0)
		appendStringInfoString(&st->detail, "; ");
	appendStringInfo(&st->detail, "at %s: ",
					 st->path.len > 0 ? st->path.data : "(root)");
	evo_pop(st, saved);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&st->detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&st->detail, needed);
	}
}

/*
 * Whether the step budget is spent; says so once.
 */
static bool
evo_exhausted(EvoState *st)
{
	if (!st->exhausted && ++st->steps <= EVO_MAX_STEPS)
		return false;
	if (!st->exhausted && st->quiet == 0)
	{
		st->exhausted = true;
		evo_problem(st, NULL, "the schemas are too large or too recursive to compare");
	}
	st->exhausted = true;
	return true;
}


/* ---- the new side: conjunctions ---- */

static EvoConj *
evo_conj_new(void)
{
	EvoConj    *c = palloc0(sizeof(EvoConj));

	c->types = EVO_T_ANY;
	return c;
}

static EvoConj *
evo_conj_copy(EvoConj *c)
{
	EvoConj    *copy = palloc(sizeof(EvoConj));

	memcpy(copy, c, sizeof(EvoConj));
	copy->finite_done = false;
	return copy;
}

/*
 * Add a schema of the new side to a conjunction: its $ref followed, true
 * left out, false making it accept nothing, its allOf members added too.
 * What cannot be added (an unresolved reference, too many members) is left
 * out, which only makes the conjunction accept more.
 */
static void
evo_conj_add(EvoState *st, EvoConj *conj, JsonbValue *node, int depth)
{
	JsonbValue	s;
	JsonbContainer *c;
	JsonbContainer *all;
	int			i;

	if (conj->nothing || depth > EVO_MAX_DEPTH ||
		!evo_resolve(st, false, node, &s))
		return;
	if (s.type == jbvBool)
	{
		if (!s.val.boolean)
			conj->nothing = true;
		return;
	}
	if (!evo_is_object(&s))
		return;
	c = s.val.binary.data;
	for (i = 0; i < conj->n; i++)
		if (conj->member[i] == c)
			return;
	if (evo_trivial_container(c) || conj->n == EVO_MAX_MEMBERS)
		return;
	conj->member[conj->n] = c;
	conj->split[conj->n] = 0;
	conj->n++;
	conj->finite_done = false;
	conj->types &= evo_schema_types(st, false, &s, 0);
	if (conj->types == 0)
		conj->nothing = true;
	if ((all = evo_get_array(c, "allOf")) != NULL)
	{
		JsonbValue *elems;
		int			n = evo_elements(all, &elems);

		for (i = 0; i < n; i++)
			evo_conj_add(st, conj, &elems[i], depth + 1);
	}
}

/*
 * A conjunction of one schema of the new side.
 */
static EvoConj *
evo_conj_of(EvoState *st, JsonbValue *node)
{
	EvoConj    *c = evo_conj_new();

	evo_conj_add(st, c, node, 0);
	return c;
}

/*
 * A conjunction of a propertyNames schema of the new side: what it accepts
 * is strings only.
 */
static EvoConj *
evo_conj_names(EvoState *st, JsonbValue *node)
{
	EvoConj    *c = evo_conj_of(st, node);

	c->types &= EVO_T_STRING;
	if (c->types == 0)
		c->nothing = true;
	return c;
}

/*
 * Whether two conjunctions have the same members, split alike, and the
 * same types (which propertyNames narrows).
 */
static bool
evo_conj_same(EvoConj *a, EvoConj *b)
{
	int			i,
				j;

	if (a->n != b->n || a->nothing != b->nothing || a->types != b->types)
		return false;
	for (i = 0; i < a->n; i++)
	{
		for (j = 0; j < b->n; j++)
			if (a->member[i] == b->member[j] && a->split[i] == b->split[j])
				break;
		if (j == b->n)
			return false;
	}
	return true;
}

/*
 * The values a conjunction may accept when one of its members has a const
 * or an enum (the smallest of them), those of a type it excludes or that
 * another member's enum or const excludes left out; NULL when it is not
 * finite.  *is_const: they come from a const.
 */
static JsonbValue *
evo_finite(EvoConj *sub, int *n, bool *is_const)
{
	if (!sub->finite_done)
	{
		JsonbContainer *best = NULL;
		JsonbValue	best_const;
		bool		have_const = false;
		int			best_n = INT_MAX;
		int			i;

		sub->finite_done = true;
		sub->finite = NULL;
		sub->nfinite = 0;
		sub->finite_const = false;
		for (i = 0; i < sub->n; i++)
		{
			JsonbValue	v;
			JsonbContainer *e;

			if (have_const)
				break;
			if (evo_get(sub->member[i], "const", &v))
			{
				/* a const is the smallest set there is */
				best_const = v;
				best = NULL;
				best_n = 1;
				have_const = true;
			}
			else if ((e = evo_get_array(sub->member[i], "enum")) != NULL &&
					 (int) JsonContainerSize(e) < best_n)
			{
				best = e;
				best_n = JsonContainerSize(e);
			}
		}
		sub->finite_const = have_const;
		if (best_n != INT_MAX)
		{
			JsonbValue *vals;
			int			nvals;

			if (best == NULL)
			{
				vals = palloc(sizeof(JsonbValue));
				vals[0] = best_const;
				nvals = 1;
			}
			else
				nvals = evo_elements(best, &vals);
			sub->finite = palloc(sizeof(JsonbValue) * Max(nvals, 1));
			for (i = 0; i < nvals; i++)
			{
				int			j;

				if (!(evo_value_type(&vals[i]) & sub->types))
					continue;
				/* and in every other member's enum, equal to its const */
				for (j = 0; j < sub->n; j++)
				{
					JsonbValue	v;
					JsonbContainer *e;

					if (evo_get(sub->member[j], "const", &v) &&
						!outbox_json_equal(&v, &vals[i]))
						break;
					if ((e = evo_get_array(sub->member[j], "enum")) != NULL &&
						!evo_array_contains(e, &vals[i]))
						break;
				}
				if (j == sub->n)
					sub->finite[sub->nfinite++] = vals[i];
			}
		}
	}
	*n = sub->nfinite;
	*is_const = sub->finite_const;
	return sub->finite;
}

/*
 * Whether the schema node may accept values of some type only, worked out
 * from type, enum, const, an integral multipleOf, a required property that
 * is forbidden, allOf, anyOf, oneOf, and a not of types alone; EVO_T_ANY
 * when not known.  Never leaves out a type the schema accepts.
 */
static uint8
evo_schema_types(EvoState *st, bool sup_side, JsonbValue *node, int depth)
{
	JsonbValue	s,
				v;
	JsonbContainer *c;
	JsonbContainer *list;
	uint8		types = EVO_T_ANY;
	Numeric		m;
	int			i,
				n;
	JsonbValue *elems;

	if (depth > 8 || !evo_resolve(st, sup_side, node, &s))
		return EVO_T_ANY;
	if (s.type == jbvBool)
		return s.val.boolean ? EVO_T_ANY : 0;
	if (!evo_is_object(&s))
		return EVO_T_ANY;
	c = s.val.binary.data;
	if (evo_get(c, "type", &v))
		types &= evo_type_keyword(&v);
	if ((list = evo_get_array(c, "enum")) != NULL)
	{
		uint8		u = 0;

		n = evo_elements(list, &elems);
		for (i = 0; i < n; i++)
			u |= evo_value_type(&elems[i]);
		types &= u;
	}
	if (evo_get(c, "const", &v))
		types &= evo_value_type(&v);
	if (evo_get_num(c, "multipleOf", &m) && outbox_numeric_is_integer(m))
		types &= ~EVO_T_FRACTION;
	if ((list = evo_get_array(c, "required")) != NULL)
	{
		/* a required property that may not be there: no object is valid */
		JsonbContainer *props = evo_get_object(c, "properties");
		bool		closed = evo_get(c, "additionalProperties", &v) &&
			v.type == jbvBool && !v.val.boolean &&
			evo_get_object(c, "patternProperties") == NULL;

		n = evo_elements(list, &elems);
		for (i = 0; i < n; i++)
		{
			if (elems[i].type != jbvString)
				continue;
			if (props != NULL &&
				getKeyJsonValueFromContainer(props, elems[i].val.string.val,
											 elems[i].val.string.len, &v) != NULL)
			{
				if (v.type == jbvBool && !v.val.boolean)
					types &= ~EVO_T_OBJECT;
			}
			else if (closed)
				types &= ~EVO_T_OBJECT;
		}
	}
	if ((list = evo_get_array(c, "allOf")) != NULL)
	{
		n = evo_elements(list, &elems);
		for (i = 0; i < n; i++)
			types &= evo_schema_types(st, sup_side, &elems[i], depth + 1);
	}
	if ((list = evo_get_array(c, "anyOf")) != NULL)
	{
		uint8		u = 0;

		n = evo_elements(list, &elems);
		for (i = 0; i < n; i++)
			u |= evo_schema_types(st, sup_side, &elems[i], depth + 1);
		types &= u;
	}
	if ((list = evo_get_array(c, "oneOf")) != NULL)
	{
		uint8		u = 0;

		n = evo_elements(list, &elems);
		for (i = 0; i < n; i++)
			u |= evo_schema_types(st, sup_side, &elems[i], depth + 1);
		types &= u;
	}
	if (evo_get(c, "not", &v))
	{
		JsonbValue	ns;

		/* not of a schema that is only a type: what it excludes is exact */
		if (evo_resolve(st, sup_side, &v, &ns))
		{
			if (ns.type == jbvBool)
			{
				if (ns.val.boolean)
					types = 0;
			}
			else if (evo_is_object(&ns))
			{
				JsonbValue *keys,
						   *values;
				JsonbValue	tv;
				bool		only_type = true;

				n = evo_entries(ns.val.binary.data, &keys, &values);
				for (i = 0; i < n; i++)
				{
					EvoKeyword kw = evo_keyword(keys[i].val.string.val,
												keys[i].val.string.len);

					if (kw != EVO_KW_TYPE && !evo_inert(kw, &values[i]))
						only_type = false;
				}
				if (only_type)
					types &= evo_get(ns.val.binary.data, "type", &tv) ?
						~evo_type_keyword(&tv) : 0;
			}
		}
	}
	return types & EVO_T_ANY;
}

/*
 * The first member of a conjunction with an anyOf or oneOf not split yet:
 * its index, the keyword's flag and array in *flag and *list; -1 for none.
 */
static int
evo_conj_disjunction(EvoConj *sub, uint8 *flag, JsonbContainer **list)
{
	int			i;

	for (i = 0; i < sub->n; i++)
	{
		if (!(sub->split[i] & EVO_SPLIT_ANYOF) &&
			(*list = evo_get_array(sub->member[i], "anyOf")) != NULL)
		{
			*flag = EVO_SPLIT_ANYOF;
			return i;
		}
		if (!(sub->split[i] & EVO_SPLIT_ONEOF) &&
			(*list = evo_get_array(sub->member[i], "oneOf")) != NULL)
		{
			*flag = EVO_SPLIT_ONEOF;
			return i;
		}
	}
	return -1;
}

/*
 * The greatest maxItems a conjunction allows (also a tuple's length when
 * additionalItems is false), -1 when unbounded.
 */
static int
evo_conj_max_items(EvoConj *sub)
{
	int			max = -1;
	int			i;

	for (i = 0; i < sub->n; i++)
	{
		Numeric		m;
		JsonbValue	a;
		JsonbContainer *tuple;

		if (evo_get_num(sub->member[i], "maxItems", &m) &&
			(max < 0 || evo_num_to_int(m) < max))
			max = evo_num_to_int(m);
		if ((tuple = evo_get_array(sub->member[i], "items")) != NULL &&
			evo_get(sub->member[i], "additionalItems", &a) &&
			a.type == jbvBool && !a.val.boolean &&
			(max < 0 || (int) JsonContainerSize(tuple) < max))
			max = JsonContainerSize(tuple);
	}
	return max;
}

/*
 * The least minItems a conjunction requires.
 */
static int
evo_conj_min_items(EvoConj *sub)
{
	int			min = 0;
	int			i;

	for (i = 0; i < sub->n; i++)
	{
		Numeric		m;

		if (evo_get_num(sub->member[i], "minItems", &m) &&
			evo_num_to_int(m) > min)
			min = evo_num_to_int(m);
	}
	return min;
}


/* ---- finite values: validating a value against the old schema ---- */

/*
 * The schema at array position i of the schema object c: items, or its
 * i-th element, or additionalItems past them; false when nothing applies.
 */
static bool
evo_items_at(JsonbContainer *c, int i, JsonbValue *out)
{
	JsonbValue	items;

	if (!evo_get(c, "items", &items))
		return false;
	if (!evo_is_array(&items))
	{
		*out = items;
		return true;
	}
	if (i < (int) JsonContainerSize(items.val.binary.data))
	{
		*out = *getIthJsonbValueFromContainer(items.val.binary.data, i);
		return true;
	}
	return evo_get(c, "additionalItems", out);
}

/*
 * Whether a property name is listed in the schema object c's properties or
 * matches one of its patternProperties.
 */
static bool
evo_name_known(JsonbContainer *c, const char *name, int len)
{
	JsonbContainer *props = evo_get_object(c, "properties");
	JsonbContainer *pats = evo_get_object(c, "patternProperties");
	JsonbValue	v;

	if (props != NULL &&
		getKeyJsonValueFromContainer(props, name, len, &v) != NULL)
		return true;
	if (pats != NULL)
	{
		JsonbValue *keys,
				   *values;
		int			n = evo_entries(pats, &keys, &values);
		int			i;

		for (i = 0; i < n; i++)
			if (evo_regex_match(keys[i].val.string.val, keys[i].val.string.len,
								name, len))
				return true;
	}
	return false;
}

/*
 * Whether the value v provably meets keyword kw (value kv) of the old
 * schema object c.  Keywords that need a proof that v is invalid against
 * something (not, oneOf) and format are never proven.
 */
static bool
evo_meets(EvoState *st, JsonbContainer *c, EvoKeyword kw, JsonbValue *kv,
		  JsonbValue *v)
{
	bool		is_num = v->type == jbvNumeric;
	bool		is_str = v->type == jbvString;
	bool		is_arr = evo_is_array(v);
	bool		is_obj = evo_is_object(v);
	JsonbValue *keys,
			   *values,
			   *elems;
	JsonbValue	x;
	int			n,
				i,
				j,
				c2;

	switch (kw)
	{
		case EVO_KW_ANNOTATION:
		case EVO_KW_DEFINITIONS:
		case EVO_KW_REF:
		case EVO_KW_THEN:
		case EVO_KW_ELSE:
			return true;
		case EVO_KW_UNKNOWN:
			return evo_inert(kw, kv);
		case EVO_KW_TYPE:
			return (evo_type_keyword(kv) & evo_value_type(v)) != 0;
		case EVO_KW_ENUM:
			return evo_is_array(kv) && evo_array_contains(kv->val.binary.data, v);
		case EVO_KW_CONST:
			return outbox_json_equal(kv, v);
		case EVO_KW_MULTIPLEOF:
			return !is_num || outbox_numeric_is_multiple(v->val.numeric, kv->val.numeric);
		case EVO_KW_MINIMUM:
			return !is_num || outbox_numeric_cmp(v->val.numeric, kv->val.numeric) >= 0;
		case EVO_KW_EXCLUSIVEMINIMUM:
			return !is_num || outbox_numeric_cmp(v->val.numeric, kv->val.numeric) > 0;
		case EVO_KW_MAXIMUM:
			return !is_num || outbox_numeric_cmp(v->val.numeric, kv->val.numeric) <= 0;
		case EVO_KW_EXCLUSIVEMAXIMUM:
			return !is_num || outbox_numeric_cmp(v->val.numeric, kv->val.numeric) < 0;
		case EVO_KW_MINLENGTH:
			return !is_str ||
				pg_mbstrlen_with_len(v->val.string.val, v->val.string.len) >=
				evo_num_to_int(kv->val.numeric);
		case EVO_KW_MAXLENGTH:
			return !is_str ||
				pg_mbstrlen_with_len(v->val.string.val, v->val.string.len) <=
				evo_num_to_int(kv->val.numeric);
		case EVO_KW_PATTERN:
			return !is_str ||
				evo_regex_match(kv->val.string.val, kv->val.string.len,
								v->val.string.val, v->val.string.len);
		case EVO_KW_FORMAT:
			return !is_str;
		case EVO_KW_MINITEMS:
			return !is_arr || (int) JsonContainerSize(v->val.binary.data) >=
				evo_num_to_int(kv->val.numeric);
		case EVO_KW_MAXITEMS:
			return !is_arr || (int) JsonContainerSize(v->val.binary.data) <=
				evo_num_to_int(kv->val.numeric);
		case EVO_KW_MINPROPERTIES:
			return !is_obj || (int) JsonContainerSize(v->val.binary.data) >=
				evo_num_to_int(kv->val.numeric);
		case EVO_KW_MAXPROPERTIES:
			return !is_obj || (int) JsonContainerSize(v->val.binary.data) <=
				evo_num_to_int(kv->val.numeric);
		case EVO_KW_UNIQUEITEMS:
			if (!is_arr || kv->type != jbvBool || !kv->val.boolean)
				return true;
			n = evo_elements(v->val.binary.data, &elems);
			for (i = 0; i < n; i++)
				for (j = i + 1; j < n; j++)
					if (outbox_json_equal(&elems[i], &elems[j]))
						return false;
			return true;
		case EVO_KW_ITEMS:
			if (!is_arr)
				return true;
			n = evo_elements(v->val.binary.data, &elems);
			for (i = 0; i < n; i++)
			{
				if (evo_is_array(kv))
				{
					if (i >= (int) JsonContainerSize(kv->val.binary.data))
						break;
					x = *getIthJsonbValueFromContainer(kv->val.binary.data, i);
				}
				else
					x = *kv;
				if (!evo_valid(st, &x, &elems[i]))
					return false;
			}
			return true;
		case EVO_KW_ADDITIONALITEMS:
			{
				JsonbContainer *tuple = evo_get_array(c, "items");

				if (!is_arr || tuple == NULL)
					return true;
				n = evo_elements(v->val.binary.data, &elems);
				for (i = JsonContainerSize(tuple); i < n; i++)
					if (!evo_valid(st, kv, &elems[i]))
						return false;
				return true;
			}
		case EVO_KW_CONTAINS:
			if (!is_arr)
				return true;
			n = evo_elements(v->val.binary.data, &elems);
			for (i = 0; i < n; i++)
				if (evo_valid(st, kv, &elems[i]))
					return true;
			return false;
		case EVO_KW_REQUIRED:
			if (!is_obj || !evo_is_array(kv))
				return true;
			n = evo_elements(kv->val.binary.data, &elems);
			for (i = 0; i < n; i++)
				if (elems[i].type != jbvString ||
					getKeyJsonValueFromContainer(v->val.binary.data,
												 elems[i].val.string.val,
												 elems[i].val.string.len,
												 &x) == NULL)
					return false;
			return true;
		case EVO_KW_PROPERTIES:
		case EVO_KW_PATTERNPROPERTIES:
		case EVO_KW_ADDITIONALPROPERTIES:
		case EVO_KW_PROPERTYNAMES:
			if (!is_obj)
				return true;
			n = evo_entries(v->val.binary.data, &keys, &values);
			for (i = 0; i < n; i++)
			{
				const char *name = keys[i].val.string.val;
				int			len = keys[i].val.string.len;

				if (kw == EVO_KW_PROPERTIES)
				{
					if (evo_is_object(kv) &&
						getKeyJsonValueFromContainer(kv->val.binary.data, name,
													 len, &x) != NULL &&
						!evo_valid(st, &x, &values[i]))
						return false;
				}
				else if (kw == EVO_KW_PATTERNPROPERTIES)
				{
					JsonbValue *pk,
							   *pv;
					int			np;

					if (!evo_is_object(kv))
						continue;
					np = evo_entries(kv->val.binary.data, &pk, &pv);
					for (j = 0; j < np; j++)
						if (evo_regex_match(pk[j].val.string.val,
											pk[j].val.string.len, name, len) &&
							!evo_valid(st, &pv[j], &values[i]))
							return false;
				}
				else if (kw == EVO_KW_ADDITIONALPROPERTIES)
				{
					if (!evo_name_known(c, name, len) &&
						!evo_valid(st, kv, &values[i]))
						return false;
				}
				else if (!evo_valid(st, kv, &keys[i]))
					return false;
			}
			return true;
		case EVO_KW_DEPENDENCIES:
			if (!is_obj || !evo_is_object(kv))
				return true;
			n = evo_entries(kv->val.binary.data, &keys, &values);
			for (i = 0; i < n; i++)
			{
				if (getKeyJsonValueFromContainer(v->val.binary.data,
												 keys[i].val.string.val,
												 keys[i].val.string.len,
												 &x) == NULL)
					continue;
				if (evo_is_array(&values[i]))
				{
					if (!evo_meets(st, c, EVO_KW_REQUIRED, &values[i], v))
						return false;
				}
				else if (!evo_valid(st, &values[i], v))
					return false;
			}
			return true;
		case EVO_KW_IF:
			{
				/* valid against if: then must hold; unknown: both must */
				JsonbValue	t,
							e;
				bool		has_t = evo_get(c, "then", &t);
				bool		has_e = evo_get(c, "else", &e);

				if (evo_valid(st, kv, v))
					return !has_t || evo_valid(st, &t, v);
				return (!has_t || evo_valid(st, &t, v)) &&
					(!has_e || evo_valid(st, &e, v));
			}
		case EVO_KW_ALLOF:
		case EVO_KW_ANYOF:
			if (!evo_is_array(kv))
				return false;
			n = evo_elements(kv->val.binary.data, &elems);
			for (i = 0; i < n; i++)
			{
				c2 = evo_valid(st, &elems[i], v);
				if (kw == EVO_KW_ALLOF && !c2)
					return false;
				if (kw == EVO_KW_ANYOF && c2)
					return true;
			}
			return kw == EVO_KW_ALLOF;
		default:
			return false;
	}
}

/*
 * Whether the value v is provably valid against the old schema node.
 */
static bool
evo_valid(EvoState *st, JsonbValue *schema, JsonbValue *v)
{
	JsonbValue	s;
	JsonbValue *keys,
			   *values;
	int			n,
				i;
	bool		ok = true;

	CHECK_FOR_INTERRUPTS();
	if (st->vdepth >= EVO_MAX_DEPTH || !evo_resolve(st, true, schema, &s))
		return false;
	if (s.type == jbvBool)
		return s.val.boolean;
	if (!evo_is_object(&s))
		return false;
	st->vdepth++;
	n = evo_entries(s.val.binary.data, &keys, &values);
	for (i = 0; i < n && ok; i++)
		ok = evo_meets(st, s.val.binary.data,
					   evo_keyword(keys[i].val.string.val, keys[i].val.string.len),
					   &values[i], v);
	st->vdepth--;
	return ok;
}

/*
 * Whether the new side is finite and each of its values meets keyword kw
 * of the old schema object supc.
 */
static bool
evo_finite_meets(EvoState *st, EvoConj *sub, JsonbContainer *supc,
				 const char *kwname)
{
	JsonbValue *vals;
	JsonbValue	kv;
	int			n,
				i;
	bool		is_const;

	if ((vals = evo_finite(sub, &n, &is_const)) == NULL ||
		!evo_get(supc, kwname, &kv))
		return false;
	for (i = 0; i < n; i++)
		if (!evo_meets(st, supc, evo_keyword(kwname, strlen(kwname)), &kv,
					   &vals[i]))
			return false;
	return true;
}


/*
 * When the new side is finite: say which of its values keyword kw of the
 * old schema object supc refuses, and return true; false otherwise, to
 * leave the message to the caller.
 */
static bool
evo_finite_report(EvoState *st, EvoConj *sub, JsonbContainer *supc,
				  const char *kwname)
{
	JsonbValue *vals,
			   *bad;
	JsonbValue	kv;
	int			n,
				nbad = 0,
				i;
	bool		is_const;

	if ((vals = evo_finite(sub, &n, &is_const)) == NULL ||
		!evo_get(supc, kwname, &kv))
		return false;
	bad = palloc(sizeof(JsonbValue) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!evo_meets(st, supc, evo_keyword(kwname, strlen(kwname)), &kv,
					   &vals[i]))
			bad[nbad++] = vals[i];
	if (nbad == 0)
		return false;
	evo_problem(st, kwname, "%s %s accepted now, which %s %s refused",
				evo_values_text(bad, nbad), nbad == 1 ? "is" : "are",
				kwname, evo_value_text(&kv));
	return true;
}


/* ---- tries and reversals ---- */

/*
 * Whether sub is provably a subset of sup, reporting nothing.
 */
static bool
evo_try(EvoState *st, EvoConj *sub, JsonbValue *sup)
{
	bool		r;

	st->quiet++;
	r = evo_subset(st, sub, sup);
	st->quiet--;
	return r;
}

/*
 * evo_try one document down (a property, an item).
 */
static bool
evo_try_nested(EvoState *st, EvoConj *sub, JsonbValue *sup)
{
	bool		r;

	st->descent++;
	r = evo_try(st, sub, sup);
	st->descent--;
	return r;
}

/*
 * Whether the old schema node a is provably a subset of the new schema
 * node b (the other way round), reporting nothing.
 */
static bool
evo_reverse(EvoState *st, JsonbValue *a, JsonbValue *b)
{
	EvoConj    *c;
	bool		r;

	evo_swap(st);
	c = evo_conj_of(st, a);
	r = evo_try(st, c, b);
	evo_swap(st);
	return r;
}

/*
 * Whether the new schema node a and the old schema node b provably accept
 * the same documents.
 */
static bool
evo_equivalent(EvoState *st, JsonbValue *a, JsonbValue *b)
{
	return evo_try(st, evo_conj_of(st, a), b) && evo_reverse(st, b, a);
}

/* A schema object of the new side as a node */
static JsonbValue
evo_node(JsonbContainer *c)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = c;
	v.val.binary.len = 0;
	return v;
}


/* ---- the old side's keywords ---- */

/*
 * type: the new side's types within the old one's ("integer" within
 * "number").
 */
static bool
evo_check_type(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	tv;
	uint8		types;

	if (!evo_get(supc, "type", &tv))
		return true;
	types = evo_type_keyword(&tv);
	if ((sub->types & ~types) == 0)
		return true;
	if (sub->types == EVO_T_ANY)
		evo_problem(st, "type", "type widened from %s to any type",
					evo_types_text(types));
	else if ((sub->types & types) == 0)
		evo_problem(st, "type", "type changed from %s to %s",
					evo_types_text(types), evo_types_text(sub->types));
	else
		evo_problem(st, "type", "type widened from %s to %s",
					evo_types_text(types), evo_types_text(sub->types));
	return false;
}

/*
 * enum: the new side finite, each of its values in the old enum.
 */
static bool
evo_check_enum(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *e = evo_get_array(supc, "enum");
	JsonbValue *vals,
			   *gained;
	int			n,
				ngained = 0,
				i;
	bool		is_const;

	if (e == NULL)
		return true;
	if ((vals = evo_finite(sub, &n, &is_const)) == NULL)
	{
		evo_problem(st, "enum", "enum removed: values outside it are accepted now");
		return false;
	}
	gained = palloc(sizeof(JsonbValue) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!evo_array_contains(e, &vals[i]))
			gained[ngained++] = vals[i];
	if (ngained == 0)
		return true;
	evo_problem(st, "enum", "enum gained %s", evo_values_text(gained, ngained));
	return false;
}

/*
 * const: the new side finite, its only value the old const.
 */
static bool
evo_check_const(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	cv;
	JsonbValue *vals,
			   *other;
	int			n,
				nother = 0,
				i;
	bool		is_const;

	if (!evo_get(supc, "const", &cv))
		return true;
	if ((vals = evo_finite(sub, &n, &is_const)) == NULL)
	{
		evo_problem(st, "const", "const %s removed", evo_value_text(&cv));
		return false;
	}
	other = palloc(sizeof(JsonbValue) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!outbox_json_equal(&vals[i], &cv))
			other[nother++] = vals[i];
	if (nother == 0)
		return true;
	if (is_const)
		evo_problem(st, "const", "const changed from %s to %s",
					evo_value_text(&cv), evo_value_text(&other[0]));
	else
		evo_problem(st, "const", "the enum allows values other than the old const %s: %s",
					evo_value_text(&cv), evo_values_text(other, nother));
	return false;
}

/* A bound of numbers: its value, whether exclusive, and its keyword */
typedef struct EvoBound
{
	bool		present;
	Numeric		v;
	bool		excl;
	const char *kw;
} EvoBound;

/*
 * Tighten bound b with (v, excl) when that is tighter: higher for a lower
 * bound, lower for an upper one; at the same value exclusive is tighter.
 */
static void
evo_bound_merge(EvoBound *b, Numeric v, bool excl, const char *kw, bool lower)
{
	int			c;

	if (b->present)
	{
		c = outbox_numeric_cmp(v, b->v);
		if (!((lower ? c > 0 : c < 0) || (c == 0 && excl && !b->excl)))
			return;
	}
	b->present = true;
	b->v = v;
	b->excl = excl;
	b->kw = kw;
}

/*
 * Tighten bound b with what the schema object c says.
 */
static void
evo_bound_add(EvoBound *b, JsonbContainer *c, bool lower)
{
	const char *incl = lower ? "minimum" : "maximum";
	const char *excl = lower ? "exclusiveMinimum" : "exclusiveMaximum";
	Numeric		v;

	if (evo_get_num(c, incl, &v))
		evo_bound_merge(b, v, false, incl, lower);
	if (evo_get_num(c, excl, &v))
		evo_bound_merge(b, v, true, excl, lower);
}

/*
 * A bound as the inclusive integer bound it is for integers.
 */
static Numeric
evo_bound_integer(EvoBound *b, bool lower)
{
	if (lower)
		return b->excl ? evo_add(evo_floor(b->v), 1) : evo_ceil(b->v);
	return b->excl ? evo_add(evo_ceil(b->v), -1) : evo_floor(b->v);
}

/*
 * minimum/exclusiveMinimum (lower) or maximum/exclusiveMaximum: the new
 * side's bound at least as tight as the old one's; when it accepts integers
 * only, the bounds are compared as the integers they let through.
 */
static bool
evo_check_bound(EvoState *st, EvoConj *sub, JsonbContainer *supc, bool lower)
{
	EvoBound	old_b = {0};
	EvoBound	new_b = {0};
	bool		integers = (sub->types & EVO_T_NUMBER) == EVO_T_INTEGER;
	int			i,
				c = 0;

	evo_bound_add(&old_b, supc, lower);
	if (!old_b.present)
		return true;
	for (i = 0; i < sub->n; i++)
		evo_bound_add(&new_b, sub->member[i], lower);
	if (new_b.present)
	{
		if (integers)
		{
			c = outbox_numeric_cmp(evo_bound_integer(&new_b, lower),
						   evo_bound_integer(&old_b, lower));
			if (lower ? c >= 0 : c <= 0)
				return true;
		}
		c = outbox_numeric_cmp(new_b.v, old_b.v);
		if ((lower ? c > 0 : c < 0) || (c == 0 && (new_b.excl || !old_b.excl)))
			return true;
	}
	if (evo_finite_meets(st, sub, supc, old_b.kw))
		return true;
	if (evo_finite_report(st, sub, supc, old_b.kw))
		return false;
	if (!new_b.present)
		evo_problem(st, old_b.kw, "%s %s removed", old_b.kw,
					outbox_numeric_text(old_b.v));
	else if (c == 0)
		evo_problem(st, old_b.kw, "%s %s became %s %s: %s is accepted now",
					old_b.kw, outbox_numeric_text(old_b.v), new_b.kw,
					outbox_numeric_text(new_b.v), outbox_numeric_text(new_b.v));
	else if (strcmp(new_b.kw, old_b.kw) == 0)
		evo_problem(st, old_b.kw, "the %s is %s than before (%s %s %s)",
					old_b.kw, lower ? "lower" : "higher",
					outbox_numeric_text(new_b.v), lower ? "<" : ">",
					outbox_numeric_text(old_b.v));
	else
		evo_problem(st, old_b.kw, "the %s bound is %s than before (%s %s %s %s %s)",
					lower ? "lower" : "upper", lower ? "lower" : "higher",
					new_b.kw, outbox_numeric_text(new_b.v), lower ? "<" : ">",
					old_b.kw, outbox_numeric_text(old_b.v));
	return false;
}

/*
 * multipleOf: the new side's a multiple of the old one's (integers being
 * multiples of 1).
 */
static bool
evo_check_multiple(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	Numeric		m,
				v;
	Numeric		first = NULL;
	int			i;

	if (!evo_get_num(supc, "multipleOf", &m))
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get_num(sub->member[i], "multipleOf", &v))
		{
			if (outbox_numeric_is_multiple(v, m))
				return true;
			if (first == NULL)
				first = v;
		}
	if ((sub->types & EVO_T_NUMBER) == EVO_T_INTEGER &&
		outbox_numeric_is_multiple(int64_to_numeric(1), m))
		return true;
	if (evo_finite_meets(st, sub, supc, "multipleOf"))
		return true;
	if (evo_finite_report(st, sub, supc, "multipleOf"))
		return false;
	if (first == NULL)
		evo_problem(st, "multipleOf", "multipleOf %s removed", outbox_numeric_text(m));
	else
		evo_problem(st, "multipleOf", "multipleOf changed from %s to %s (%s is not a multiple of %s)",
					outbox_numeric_text(m), outbox_numeric_text(first), outbox_numeric_text(first),
					outbox_numeric_text(m));
	return false;
}

/*
 * A count (minLength, maxItems, ...): a minimum no lower, a maximum no
 * higher than before.  implied, when >= 0, is a maximum the new side has
 * without the keyword.
 */
static bool
evo_check_count(EvoState *st, EvoConj *sub, JsonbContainer *supc,
				const char *kw, bool is_min, int implied)
{
	Numeric		old_v,
				v;
	Numeric		best = implied >= 0 ? int64_to_numeric(implied) : NULL;
	int			i;

	if (!evo_get_num(supc, kw, &old_v))
		return true;
	if (is_min && outbox_numeric_cmp(old_v, int64_to_numeric(0)) <= 0)
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get_num(sub->member[i], kw, &v) &&
			(best == NULL || (is_min ? outbox_numeric_cmp(v, best) > 0 :
							  outbox_numeric_cmp(v, best) < 0)))
			best = v;
	if (best != NULL && (is_min ? outbox_numeric_cmp(best, old_v) >= 0 :
						 outbox_numeric_cmp(best, old_v) <= 0))
		return true;
	if (evo_finite_meets(st, sub, supc, kw))
		return true;
	if (evo_finite_report(st, sub, supc, kw))
		return false;
	if (best == NULL)
		evo_problem(st, kw, "%s %s removed", kw, outbox_numeric_text(old_v));
	else
		evo_problem(st, kw, "%s %s from %s to %s", kw,
					is_min ? "lowered" : "raised", outbox_numeric_text(old_v),
					outbox_numeric_text(best));
	return false;
}

/*
 * pattern, format: the same string on the new side.
 */
static bool
evo_check_same_string(EvoState *st, EvoConj *sub, JsonbContainer *supc,
					  const char *kw)
{
	JsonbValue	ov,
				v;
	JsonbValue *first = NULL;
	int			i;

	if (!evo_get(supc, kw, &ov))
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get(sub->member[i], kw, &v))
		{
			if (outbox_json_equal(&ov, &v))
				return true;
			if (first == NULL)
			{
				first = palloc(sizeof(JsonbValue));
				*first = v;
			}
		}
	if (evo_finite_meets(st, sub, supc, kw))
		return true;
	if (strcmp(kw, "pattern") == 0 && evo_finite_report(st, sub, supc, kw))
		return false;
	if (first == NULL)
		evo_problem(st, kw, "%s %s removed", kw, evo_value_text(&ov));
	else
		evo_problem(st, kw, "%s changed from %s to %s", kw,
					evo_value_text(&ov), evo_value_text(first));
	return false;
}

/*
 * uniqueItems: true on the new side too (or arrays of one item at most).
 */
static bool
evo_check_unique(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	int			i,
				max;

	if (!evo_get_true(supc, "uniqueItems"))
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get_true(sub->member[i], "uniqueItems"))
			return true;
	max = evo_conj_max_items(sub);
	if ((max >= 0 && max <= 1) || evo_finite_meets(st, sub, supc, "uniqueItems"))
		return true;
	if (evo_finite_report(st, sub, supc, "uniqueItems"))
		return false;
	evo_problem(st, "uniqueItems", "uniqueItems true removed: repeated items are accepted now");
	return false;
}

/*
 * The conjunction of what the new side says of array position i.
 */
static EvoConj *
evo_conj_items_at(EvoState *st, EvoConj *sub, int i)
{
	EvoConj    *c = evo_conj_new();
	int			j;

	for (j = 0; j < sub->n; j++)
	{
		JsonbValue	m;

		if (evo_items_at(sub->member[j], i, &m))
			evo_conj_add(st, c, &m, 0);
	}
	return c;
}

/*
 * items (and additionalItems past a tuple): each position the new side
 * allows within what the old side allowed there.  Positions past every
 * tuple are alike, so one more than the longest tuple are compared.
 */
static bool
evo_check_items(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	items;
	int			tuple = -1;
	int			maxlen = 0;
	int			max_items = evo_conj_max_items(sub);
	bool		ok = true;
	bool		tail_reported = false;
	JsonbContainer *prev_sup = NULL;
	EvoConj    *prev = NULL;
	int			i,
				j;

	if (!evo_get(supc, "items", &items))
		return true;
	if (evo_is_array(&items))
		maxlen = tuple = JsonContainerSize(items.val.binary.data);
	for (j = 0; j < sub->n; j++)
	{
		JsonbContainer *t = evo_get_array(sub->member[j], "items");

		if (t != NULL && (int) JsonContainerSize(t) > maxlen)
			maxlen = JsonContainerSize(t);
	}
	if (evo_finite_meets(st, sub, supc, "items") &&
		(tuple < 0 || !evo_get(supc, "additionalItems", &items) ||
		 evo_finite_meets(st, sub, supc, "additionalItems")))
		return true;

	for (i = 0; i <= maxlen; i++)
	{
		JsonbValue	node;
		EvoConj    *c;
		bool		r;
		bool		past = tuple >= 0 && i >= tuple;
		int			saved;

		if (max_items >= 0 && i >= max_items)
			break;
		if (!evo_items_at(supc, i, &node) || evo_trivial(st, true, &node))
			continue;
		c = evo_conj_items_at(st, sub, i);
		if (prev != NULL && prev_sup != NULL &&
			evo_node_container(&node) == prev_sup && evo_conj_same(prev, c))
			continue;
		prev = c;
		prev_sup = evo_node_container(&node);

		if (tuple < 0)
			saved = evo_push_str(st, "items");
		else if (past)
			saved = evo_push_str(st, "additionalItems");
		else
			saved = evo_push_index(st, "items", i);
		st->descent++;
		if (c->n == 0 && !c->nothing && node.type != jbvBool)
		{
			/* nothing of the new side's constrains this position */
			if (tuple < 0 && maxlen == 0)
				evo_problem(st, NULL, "items removed: items may hold any value now");
			else if (tuple < 0 && i == maxlen)
			{
				if (!tail_reported)
					evo_problem(st, NULL, "items past the %d the new schema lists may hold any value now",
								maxlen);
				tail_reported = true;
			}
			else if (past)
			{
				if (!tail_reported)
					evo_problem(st, NULL, "additionalItems removed: items past the %d listed may hold any value now",
								tuple);
				tail_reported = true;
			}
			else
				evo_problem(st, NULL, "item %d may hold any value now", i);
			r = false;
		}
		else if (past && node.type == jbvBool)
		{
			/* additionalItems false (true was trivial) */
			r = c->nothing;
			if (!r && !tail_reported)
			{
				evo_problem(st, NULL, "items past the %d listed are accepted now where additionalItems was false",
							tuple);
				tail_reported = true;
			}
		}
		else
			r = evo_subset(st, c, &node);
		st->descent--;
		evo_pop(st, saved);
		EVO_CHECK(st, ok, r);
	}
	return ok;
}

/*
 * contains: the new side's contains within the old one's, or its first
 * item (required by minItems) within it.
 */
static bool
evo_check_contains(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	cv,
				v;
	JsonbValue *first = NULL;
	bool		r;
	int			i;

	if (!evo_get(supc, "contains", &cv))
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get(sub->member[i], "contains", &v))
		{
			if (evo_try_nested(st, evo_conj_of(st, &v), &cv))
				return true;
			if (first == NULL)
			{
				first = palloc(sizeof(JsonbValue));
				*first = v;
			}
		}
	if (evo_conj_min_items(sub) >= 1 &&
		evo_try_nested(st, evo_conj_items_at(st, sub, 0), &cv))
		return true;
	if (evo_finite_meets(st, sub, supc, "contains"))
		return true;
	if (first == NULL)
	{
		evo_problem(st, "contains", "contains removed");
		return false;
	}
	i = evo_push_str(st, "contains");
	st->descent++;
	r = evo_subset(st, evo_conj_of(st, first), &cv);
	st->descent--;
	evo_pop(st, i);
	return r;
}

/*
 * required: each name the old side required, the new side requires.
 */
static bool
evo_check_required(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *req = evo_get_array(supc, "required");
	JsonbValue *names,
			   *lost;
	int			n,
				nlost = 0,
				i,
				j;

	if (req == NULL)
		return true;
	n = evo_elements(req, &names);
	lost = palloc(sizeof(JsonbValue) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		for (j = 0; j < sub->n; j++)
		{
			JsonbContainer *r = evo_get_array(sub->member[j], "required");

			if (r != NULL && evo_array_contains(r, &names[i]))
				break;
		}
		if (j == sub->n)
			lost[nlost++] = names[i];
	}
	if (nlost == 0 || evo_finite_meets(st, sub, supc, "required"))
		return true;
	if (evo_finite_report(st, sub, supc, "required"))
		return false;
	evo_problem(st, "required", "required lost %s", evo_values_text(lost, nlost));
	return false;
}

/*
 * Add to conj what the new side's schema object m says of the value of
 * property name: properties, the patternProperties matching it, else
 * additionalProperties.  Returns whether m lists the name.
 */
static bool
evo_member_property(EvoState *st, EvoConj *conj, JsonbContainer *m,
					const char *name, int len)
{
	JsonbContainer *props = evo_get_object(m, "properties");
	JsonbContainer *pats = evo_get_object(m, "patternProperties");
	JsonbValue	v;
	bool		listed = false;
	bool		matched = false;

	if (props != NULL &&
		getKeyJsonValueFromContainer(props, name, len, &v) != NULL)
	{
		evo_conj_add(st, conj, &v, 0);
		listed = true;
	}
	if (pats != NULL)
	{
		JsonbValue *keys,
				   *values;
		int			n = evo_entries(pats, &keys, &values);
		int			i;

		for (i = 0; i < n; i++)
			if (evo_regex_match(keys[i].val.string.val, keys[i].val.string.len,
								name, len))
			{
				evo_conj_add(st, conj, &values[i], 0);
				matched = true;
			}
	}
	if (!listed && !matched && evo_get(m, "additionalProperties", &v))
		evo_conj_add(st, conj, &v, 0);
	return listed;
}

/*
 * One property name listed on either side: the new side's value within
 * every constraint the old side put on it (properties, matching
 * patternProperties, else additionalProperties).
 */
static bool
evo_check_property(EvoState *st, EvoConj *sub, JsonbContainer *sprops,
				   JsonbContainer *spats, JsonbValue *addl,
				   const char *name, int len)
{
	EvoConj    *c = evo_conj_new();
	bool		listed_new = false;
	bool		listed_old = false;
	bool		matched = false;
	bool		ok = true;
	bool		r;
	JsonbValue	v;
	int			saved,
				i;

	for (i = 0; i < sub->n; i++)
		if (evo_member_property(st, c, sub->member[i], name, len))
			listed_new = true;

	saved = evo_push_name(st, "properties", name, len);
	st->descent++;
	if (sprops != NULL &&
		getKeyJsonValueFromContainer(sprops, name, len, &v) != NULL)
	{
		listed_old = true;
		if (!listed_new && c->n == 0 && !c->nothing &&
			!evo_trivial(st, true, &v))
		{
			evo_problem(st, NULL, "property removed");
			r = false;
		}
		else
			r = evo_subset(st, c, &v);
		ok = ok && r;
	}
	if (spats != NULL && (ok || st->quiet == 0))
	{
		JsonbValue *keys,
				   *values;
		int			n = evo_entries(spats, &keys, &values);

		for (i = 0; i < n; i++)
			if (evo_regex_match(keys[i].val.string.val, keys[i].val.string.len,
								name, len))
			{
				matched = true;
				if (!evo_trivial(st, true, &values[i]) &&
					(ok || st->quiet == 0))
					ok = evo_subset(st, c, &values[i]) && ok;
			}
	}
	if (!listed_old && !matched && addl != NULL && (ok || st->quiet == 0))
	{
		if (addl->type == jbvBool)
		{
			/* false: true was left out as trivial */
			if (!c->nothing)
			{
				evo_problem(st, NULL, "property added where additional properties were not allowed");
				ok = false;
			}
		}
		else
			ok = evo_subset(st, c, addl) && ok;
	}
	st->descent--;
	evo_pop(st, saved);
	return ok;
}

/*
 * One old patternProperties entry, for names listed on neither side: the
 * new side has the same pattern with a schema within the old one's, or a
 * member whose additionalProperties and every patternProperties schema
 * are within it.
 */
static bool
evo_check_pattern(EvoState *st, EvoConj *sub, JsonbValue *pattern,
				  JsonbValue *schema)
{
	EvoConj    *same = evo_conj_new();
	bool		r;
	int			saved,
				i,
				j;

	for (i = 0; i < sub->n; i++)
	{
		JsonbContainer *pats = evo_get_object(sub->member[i], "patternProperties");
		JsonbValue	v;

		if (pats != NULL &&
			getKeyJsonValueFromContainer(pats, pattern->val.string.val,
										 pattern->val.string.len, &v) != NULL)
			evo_conj_add(st, same, &v, 0);
	}
	if ((same->n > 0 || same->nothing) && evo_try_nested(st, same, schema))
		return true;
	for (i = 0; i < sub->n; i++)
	{
		JsonbContainer *pats = evo_get_object(sub->member[i], "patternProperties");
		JsonbValue	a;
		bool		all = true;

		if (!evo_get(sub->member[i], "additionalProperties", &a) ||
			!evo_try_nested(st, evo_conj_of(st, &a), schema))
			continue;
		if (pats != NULL)
		{
			JsonbValue *keys,
					   *values;
			int			n = evo_entries(pats, &keys, &values);

			for (j = 0; j < n && all; j++)
				all = evo_try_nested(st, evo_conj_of(st, &values[j]), schema);
		}
		if (all)
			return true;
	}
	saved = evo_push_name(st, "patternProperties", pattern->val.string.val,
						  pattern->val.string.len);
	if (same->n > 0)
	{
		st->descent++;
		r = evo_subset(st, same, schema);
		st->descent--;
	}
	else
	{
		evo_problem(st, NULL, "pattern property removed");
		r = false;
	}
	evo_pop(st, saved);
	return r;
}

/*
 * The old additionalProperties (not trivial), for names listed on neither
 * side and matching none of the old patterns: a member of the new side
 * whose additionalProperties is within it, and whose every pattern is one
 * of the old patterns or has a schema within it.
 */
static bool
evo_check_additional(EvoState *st, EvoConj *sub, JsonbContainer *spats,
					 JsonbValue *addl)
{
	JsonbContainer *first = NULL;
	JsonbValue	a;
	JsonbContainer *pats;
	JsonbValue *keys,
			   *values;
	bool		r = true;
	int			saved,
				n,
				i,
				j;

	for (i = 0; i < sub->n; i++)
	{
		bool		all = true;

		if (!evo_get(sub->member[i], "additionalProperties", &a))
			continue;
		if (first == NULL)
			first = sub->member[i];
		if (!evo_try_nested(st, evo_conj_of(st, &a), addl))
			continue;
		if ((pats = evo_get_object(sub->member[i], "patternProperties")) != NULL)
		{
			n = evo_entries(pats, &keys, &values);
			for (j = 0; j < n && all; j++)
			{
				JsonbValue	v;

				if (spats != NULL &&
					getKeyJsonValueFromContainer(spats, keys[j].val.string.val,
												 keys[j].val.string.len, &v) != NULL)
					continue;
				all = evo_try_nested(st, evo_conj_of(st, &values[j]), addl);
			}
		}
		if (all)
			return true;
	}

	if (first == NULL)
	{
		if (addl->type == jbvBool)
			evo_problem(st, "additionalProperties", "additionalProperties false removed: other properties are accepted now");
		else
			evo_problem(st, "additionalProperties", "additionalProperties removed: other properties may hold any value now");
		return false;
	}
	(void) evo_get(first, "additionalProperties", &a);
	if (!evo_try_nested(st, evo_conj_of(st, &a), addl))
	{
		if (addl->type == jbvBool)
		{
			evo_problem(st, "additionalProperties", "additional properties are accepted now where they were not allowed");
			return false;
		}
		saved = evo_push_str(st, "additionalProperties");
		st->descent++;
		r = evo_subset(st, evo_conj_of(st, &a), addl);
		st->descent--;
		evo_pop(st, saved);
		return r;
	}
	/* a pattern of the new side's that is not one of the old ones */
	pats = evo_get_object(first, "patternProperties");
	n = pats != NULL ? evo_entries(pats, &keys, &values) : 0;
	for (j = 0; j < n; j++)
	{
		JsonbValue	v;

		if ((spats != NULL &&
			 getKeyJsonValueFromContainer(spats, keys[j].val.string.val,
										  keys[j].val.string.len, &v) != NULL) ||
			evo_try_nested(st, evo_conj_of(st, &values[j]), addl))
			continue;
		saved = evo_push_name(st, "patternProperties", keys[j].val.string.val,
							  keys[j].val.string.len);
		if (addl->type == jbvBool)
			evo_problem(st, NULL, "pattern property added where additional properties were not allowed");
		else
		{
			st->descent++;
			(void) evo_subset(st, evo_conj_of(st, &values[j]), addl);
			st->descent--;
		}
		evo_pop(st, saved);
		r = false;
		if (st->quiet > 0)
			break;
	}
	if (r)
	{
		/* only some other member's patterns stood in the way */
		evo_problem(st, "additionalProperties", "cannot prove that additional properties stay within additionalProperties");
		r = false;
	}
	return r;
}

/* A property name, for the list of those either side lists */
typedef struct EvoName
{
	const char *s;
	int			len;
} EvoName;

/*
 * Add the names listed in properties object c to the list.
 */
static void
evo_names_add(JsonbContainer *c, EvoName **names, int *n, int *max)
{
	JsonbValue *keys,
			   *values;
	int			nk = evo_entries(c, &keys, &values);
	int			i,
				j;

	for (i = 0; i < nk; i++)
	{
		for (j = 0; j < *n; j++)
			if ((*names)[j].len == keys[i].val.string.len &&
				memcmp((*names)[j].s, keys[i].val.string.val, (*names)[j].len) == 0)
				break;
		if (j < *n)
			continue;
		if (*n == *max)
		{
			*max *= 2;
			*names = repalloc(*names, sizeof(EvoName) * *max);
		}
		(*names)[*n].s = keys[i].val.string.val;
		(*names)[(*n)++].len = keys[i].val.string.len;
	}
}

/*
 * properties, patternProperties, additionalProperties: every property name
 * either side lists, one by one, then the names neither lists, by the old
 * patterns and the old additionalProperties.
 */
static bool
evo_check_properties(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *sprops = evo_get_object(supc, "properties");
	JsonbContainer *spats = evo_get_object(supc, "patternProperties");
	JsonbValue	addl;
	bool		has_addl;
	EvoName    *names;
	int			nnames = 0,
				maxnames = 16;
	bool		ok = true;
	int			i;

	has_addl = evo_get(supc, "additionalProperties", &addl) &&
		!evo_trivial(st, true, &addl);
	if (sprops == NULL && spats == NULL && !has_addl)
		return true;
	/* a finite new side: each of the three present must be met */
	if ((sprops == NULL || evo_finite_meets(st, sub, supc, "properties")) &&
		(spats == NULL || evo_finite_meets(st, sub, supc, "patternProperties")) &&
		(!has_addl || evo_finite_meets(st, sub, supc, "additionalProperties")))
		return true;

	names = palloc(sizeof(EvoName) * maxnames);
	if (sprops != NULL)
		evo_names_add(sprops, &names, &nnames, &maxnames);
	for (i = 0; i < sub->n; i++)
	{
		JsonbContainer *p = evo_get_object(sub->member[i], "properties");

		if (p != NULL)
			evo_names_add(p, &names, &nnames, &maxnames);
	}
	for (i = 0; i < nnames; i++)
		EVO_CHECK(st, ok, evo_check_property(st, sub, sprops, spats,
											 has_addl ? &addl : NULL,
											 names[i].s, names[i].len));
	if (spats != NULL)
	{
		JsonbValue *keys,
				   *values;
		int			n = evo_entries(spats, &keys, &values);

		for (i = 0; i < n; i++)
			if (!evo_trivial(st, true, &values[i]))
				EVO_CHECK(st, ok, evo_check_pattern(st, sub, &keys[i], &values[i]));
	}
	if (has_addl)
		EVO_CHECK(st, ok, evo_check_additional(st, sub, spats, &addl));
	return ok;
}

/*
 * dependencies: for each old entry, the new side requires the same names
 * (in its dependencies of that name or unconditionally), or has a schema
 * dependency within the old one.
 */
static bool
evo_check_dependencies(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *deps = evo_get_object(supc, "dependencies");
	JsonbValue *keys,
			   *values;
	bool		ok = true;
	int			n,
				i,
				j,
				k;

	if (deps == NULL || evo_finite_meets(st, sub, supc, "dependencies"))
		return true;
	n = evo_entries(deps, &keys, &values);
	for (i = 0; i < n; i++)
	{
		const char *name = keys[i].val.string.val;
		int			len = keys[i].val.string.len;
		bool		r = true;
		int			saved;

		saved = evo_push_name(st, "dependencies", name, len);
		if (evo_is_array(&values[i]))
		{
			JsonbValue *req,
					   *lost;
			int			nreq = evo_elements(values[i].val.binary.data, &req);
			int			nlost = 0;

			lost = palloc(sizeof(JsonbValue) * Max(nreq, 1));
			for (j = 0; j < nreq; j++)
			{
				for (k = 0; k < sub->n; k++)
				{
					JsonbContainer *r2 = evo_get_array(sub->member[k], "required");
					JsonbContainer *d2 = evo_get_object(sub->member[k], "dependencies");
					JsonbValue	dv;

					if (r2 != NULL && evo_array_contains(r2, &req[j]))
						break;
					if (d2 != NULL &&
						getKeyJsonValueFromContainer(d2, name, len, &dv) != NULL &&
						evo_is_array(&dv) &&
						evo_array_contains(dv.val.binary.data, &req[j]))
						break;
				}
				if (k == sub->n)
					lost[nlost++] = req[j];
			}
			if (nlost > 0)
			{
				evo_problem(st, NULL, "%s no longer requires %s",
							evo_quote(name, len), evo_values_text(lost, nlost));
				r = false;
			}
		}
		else if (!evo_trivial(st, true, &values[i]))
		{
			JsonbValue *first = NULL;

			r = false;
			for (k = 0; k < sub->n && !r; k++)
			{
				JsonbContainer *d2 = evo_get_object(sub->member[k], "dependencies");
				JsonbValue	dv;

				if (d2 != NULL &&
					getKeyJsonValueFromContainer(d2, name, len, &dv) != NULL &&
					!evo_is_array(&dv))
				{
					if (first == NULL)
					{
						first = palloc(sizeof(JsonbValue));
						*first = dv;
					}
					r = evo_try(st, evo_conj_of(st, &dv), &values[i]);
				}
			}
			if (!r)
				r = evo_try(st, sub, &values[i]);
			if (!r)
			{
				if (first != NULL)
					(void) evo_subset(st, evo_conj_of(st, first), &values[i]);
				else
					evo_problem(st, NULL, "the dependency of %s removed",
								evo_quote(name, len));
			}
		}
		evo_pop(st, saved);
		EVO_CHECK(st, ok, r);
	}
	return ok;
}

/*
 * propertyNames: the new side's within the old one's, or the new side's
 * names all listed (additionalProperties false, no patterns) and valid.
 */
static bool
evo_check_property_names(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	pn,
				v;
	JsonbValue *first = NULL;
	JsonbValue *names;
	JsonbValue	bad;
	int			nbad = 0;
	bool		r;
	int			saved,
				i,
				j;

	if (!evo_get(supc, "propertyNames", &pn) || evo_trivial(st, true, &pn))
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get(sub->member[i], "propertyNames", &v))
		{
			if (evo_try_nested(st, evo_conj_names(st, &v), &pn))
				return true;
			if (first == NULL)
			{
				first = palloc(sizeof(JsonbValue));
				*first = v;
			}
		}
	if (first == NULL)
	{
		/* any string: the old propertyNames may constrain only strings */
		v.type = jbvBool;
		v.val.boolean = true;
		if (evo_try_nested(st, evo_conj_names(st, &v), &pn))
			return true;
	}
	for (i = 0; i < sub->n; i++)
	{
		JsonbContainer *m = sub->member[i];
		JsonbContainer *props = evo_get_object(m, "properties");
		int			n = 0;

		if (!evo_get(m, "additionalProperties", &v) || v.type != jbvBool ||
			v.val.boolean || evo_get_object(m, "patternProperties") != NULL)
			continue;
		if (props != NULL)
		{
			JsonbValue *values;

			n = evo_entries(props, &names, &values);
			for (j = 0; j < n; j++)
				if (!evo_valid(st, &pn, &names[j]) && nbad++ == 0)
					bad = names[j];
		}
		if (nbad == 0)
			return true;
		break;
	}
	if (evo_finite_meets(st, sub, supc, "propertyNames"))
		return true;
	if (nbad > 0)
	{
		evo_problem(st, "propertyNames", "cannot prove that propertyNames accepts the property name %s",
					evo_value_text(&bad));
		return false;
	}
	if (first == NULL)
	{
		evo_problem(st, "propertyNames", "propertyNames removed");
		return false;
	}
	saved = evo_push_str(st, "propertyNames");
	st->descent++;
	r = evo_subset(st, evo_conj_names(st, first), &pn);
	st->descent--;
	evo_pop(st, saved);
	return r;
}

/*
 * allOf: the new side within each member.
 */
static bool
evo_check_allof(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *all = evo_get_array(supc, "allOf");
	JsonbValue *elems;
	bool		ok = true;
	int			n,
				i;

	if (all == NULL)
		return true;
	n = evo_elements(all, &elems);
	for (i = 0; i < n; i++)
	{
		int			saved = evo_push_index(st, "allOf", i);
		bool		r = evo_subset(st, sub, &elems[i]);

		evo_pop(st, saved);
		EVO_CHECK(st, ok, r);
	}
	return ok;
}

/*
 * anyOf: the new side within one of the members (an anyOf or oneOf of the
 * new side's is split before, each alternative on its own).
 */
static bool
evo_check_anyof(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *any = evo_get_array(supc, "anyOf");
	JsonbValue *elems;
	int			n,
				i,
				m;
	bool		r;

	if (any == NULL)
		return true;
	n = evo_elements(any, &elems);
	for (i = 0; i < n; i++)
		if (evo_try(st, sub, &elems[i]))
			return true;
	/* an anyOf or oneOf of the new side's, each alternative in a member */
	for (m = 0; m < sub->n; m++)
	{
		JsonbContainer *list = evo_get_array(sub->member[m], "anyOf");
		JsonbValue *alts;
		int			nalts,
					j;

		if (list == NULL)
			list = evo_get_array(sub->member[m], "oneOf");
		if (list == NULL)
			continue;
		nalts = evo_elements(list, &alts);
		for (j = 0; j < nalts; j++)
		{
			EvoConj    *c = evo_conj_copy(sub);

			c->split[m] |= EVO_SPLIT_ANYOF | EVO_SPLIT_ONEOF;
			evo_conj_add(st, c, &alts[j], 0);
			for (i = 0; i < n; i++)
				if (evo_try(st, c, &elems[i]))
					break;
			if (i == n)
				break;
		}
		if (j == nalts)
			return true;
	}
	if (evo_finite_meets(st, sub, supc, "anyOf"))
		return true;
	if (n == 1)
	{
		int			saved = evo_push_index(st, "anyOf", 0);

		r = evo_subset(st, sub, &elems[0]);
		evo_pop(st, saved);
		return r;
	}
	evo_problem(st, "anyOf", "cannot prove that everything accepted matches one of the old anyOf's members");
	return false;
}

/*
 * oneOf: a oneOf of the new side whose members accept the same as the old
 * ones, in any order; or the new side within one member and of types no
 * other member accepts.
 */
static bool
evo_check_oneof(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbContainer *one = evo_get_array(supc, "oneOf");
	JsonbValue *elems;
	uint8	   *types;
	int			n,
				i,
				j,
				k;

	if (one == NULL)
		return true;
	n = evo_elements(one, &elems);
	for (i = 0; i < sub->n; i++)
	{
		JsonbContainer *mine = evo_get_array(sub->member[i], "oneOf");
		JsonbValue *melems;
		bool	   *used;
		bool		all = true;

		if (mine == NULL || (int) JsonContainerSize(mine) != n)
			continue;
		(void) evo_elements(mine, &melems);
		used = palloc0(sizeof(bool) * Max(n, 1));
		for (j = 0; j < n && all; j++)
		{
			for (k = 0; k < n; k++)
				if (!used[k] && evo_equivalent(st, &melems[j], &elems[k]))
				{
					used[k] = true;
					break;
				}
			all = k < n;
		}
		if (all)
			return true;
	}
	types = palloc(sizeof(uint8) * Max(n, 1));
	for (i = 0; i < n; i++)
		types[i] = evo_schema_types(st, true, &elems[i], 0);
	for (i = 0; i < n; i++)
	{
		for (k = 0; k < n; k++)
			if (k != i && (types[k] & sub->types) != 0)
				break;
		if (k == n && evo_try(st, sub, &elems[i]))
			return true;
	}
	evo_problem(st, "oneOf", "cannot prove that everything accepted matches exactly one of the old oneOf's members");
	return false;
}

/*
 * not: the new side of types the old not excludes entirely, or a not of
 * the new side's that excludes at least as much.
 */
static bool
evo_check_not(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	nv,
				v;
	bool		had = false;
	int			i;

	if (!evo_get(supc, "not", &nv))
		return true;
	if ((evo_schema_types(st, true, &nv, 0) & sub->types) == 0)
		return true;
	for (i = 0; i < sub->n; i++)
		if (evo_get(sub->member[i], "not", &v))
		{
			had = true;
			if (evo_reverse(st, &nv, &v))
				return true;
		}
	evo_problem(st, "not", had ? "not changed: cannot prove it still excludes all it excluded" :
				"not removed");
	return false;
}

/*
 * The branches of an if of the new side's schema object m (an if accepting
 * the same as the old one): sub and m's if and then within the old then,
 * sub and m's else within the old else.  Only tries while quiet.
 */
static bool
evo_check_branches(EvoState *st, EvoConj *sub, JsonbContainer *m,
				   JsonbValue *tv, JsonbValue *ev)
{
	JsonbValue	v;
	EvoConj    *c;
	bool		ok = true;
	int			saved;

	if (tv != NULL)
	{
		c = evo_conj_copy(sub);
		if (evo_get(m, "if", &v))
			evo_conj_add(st, c, &v, 0);
		if (evo_get(m, "then", &v))
			evo_conj_add(st, c, &v, 0);
		saved = evo_push_str(st, "then");
		ok = evo_subset(st, c, tv);
		evo_pop(st, saved);
		if (!ok && st->quiet > 0)
			return false;
	}
	if (ev != NULL)
	{
		c = evo_conj_copy(sub);
		if (evo_get(m, "else", &v))
			evo_conj_add(st, c, &v, 0);
		saved = evo_push_str(st, "else");
		ok = evo_subset(st, c, ev) && ok;
		evo_pop(st, saved);
	}
	return ok;
}

/*
 * if/then/else: the new side within then and else both, or an if of the
 * new side's accepting the same as the old one with its then and else
 * within the old ones.
 */
static bool
evo_check_if(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue	iv,
				tv,
				ev;
	JsonbContainer *same = NULL;
	bool		has_t,
				has_e;
	bool		had = false;
	bool		r;
	int			i;

	if (!evo_get(supc, "if", &iv))
		return true;
	has_t = evo_get(supc, "then", &tv) && !evo_trivial(st, true, &tv);
	has_e = evo_get(supc, "else", &ev) && !evo_trivial(st, true, &ev);
	if (!has_t && !has_e)
		return true;
	if ((!has_t || evo_try(st, sub, &tv)) && (!has_e || evo_try(st, sub, &ev)))
		return true;
	for (i = 0; i < sub->n; i++)
	{
		JsonbContainer *m = sub->member[i];
		JsonbValue	mi;

		if (!evo_get(m, "if", &mi))
			continue;
		had = true;
		if (!evo_equivalent(st, &mi, &iv))
			continue;
		if (same == NULL)
			same = m;
		st->quiet++;
		r = evo_check_branches(st, sub, m, has_t ? &tv : NULL,
							   has_e ? &ev : NULL);
		st->quiet--;
		if (r)
			return true;
	}
	if (evo_finite_meets(st, sub, supc, "if"))
		return true;
	if (same != NULL)
		return evo_check_branches(st, sub, same, has_t ? &tv : NULL,
								  has_e ? &ev : NULL);
	evo_problem(st, "if", had ? "if changed: cannot prove it accepts the same as before" :
				"if/then/else removed");
	return false;
}

/*
 * A keyword this file does not know (and no $ref target): the same value
 * on the new side.
 */
static bool
evo_check_unknown(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	JsonbValue *keys,
			   *values;
	bool		ok = true;
	int			n = evo_entries(supc, &keys, &values);
	int			i,
				j;

	for (i = 0; i < n; i++)
	{
		bool		had = false;
		bool		same = false;
		char	   *kw;

		if (evo_keyword(keys[i].val.string.val,
						keys[i].val.string.len) != EVO_KW_UNKNOWN ||
			evo_inert(EVO_KW_UNKNOWN, &values[i]))
			continue;
		for (j = 0; j < sub->n && !same; j++)
		{
			JsonbValue	v;

			if (getKeyJsonValueFromContainer(sub->member[j], keys[i].val.string.val,
											 keys[i].val.string.len, &v) != NULL)
			{
				had = true;
				same = outbox_json_equal(&v, &values[i]);
			}
		}
		if (same)
			continue;
		kw = pnstrdup(keys[i].val.string.val, keys[i].val.string.len);
		evo_problem(st, kw, had ? "cannot prove the change of %s safe" :
					"%s removed: cannot prove that safe", evo_quote(kw, strlen(kw)));
		EVO_CHECK(st, ok, false);
	}
	return ok;
}

/*
 * Every constraint of the old schema object supc, against the new side as
 * it is (its anyOf and oneOf not split).
 */
static bool
evo_direct(EvoState *st, EvoConj *sub, JsonbContainer *supc)
{
	bool		ok = true;
	uint8		t = sub->types;
	JsonbValue *vals;
	int			n,
				i;
	bool		is_const;

	/* a finite new side: its values may be validated instead */
	if ((vals = evo_finite(sub, &n, &is_const)) != NULL)
	{
		JsonbValue	node = evo_node(supc);

		for (i = 0; i < n; i++)
			if (!evo_valid(st, &node, &vals[i]))
				break;
		if (i == n)
			return true;
	}

	EVO_CHECK(st, ok, evo_check_type(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_enum(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_const(st, sub, supc));
	if (t & EVO_T_NUMBER)
	{
		EVO_CHECK(st, ok, evo_check_bound(st, sub, supc, true));
		EVO_CHECK(st, ok, evo_check_bound(st, sub, supc, false));
		EVO_CHECK(st, ok, evo_check_multiple(st, sub, supc));
	}
	if (t & EVO_T_STRING)
	{
		EVO_CHECK(st, ok, evo_check_count(st, sub, supc, "minLength", true, -1));
		EVO_CHECK(st, ok, evo_check_count(st, sub, supc, "maxLength", false, -1));
		EVO_CHECK(st, ok, evo_check_same_string(st, sub, supc, "pattern"));
		EVO_CHECK(st, ok, evo_check_same_string(st, sub, supc, "format"));
	}
	if (t & EVO_T_ARRAY)
	{
		EVO_CHECK(st, ok, evo_check_count(st, sub, supc, "minItems", true, -1));
		EVO_CHECK(st, ok, evo_check_count(st, sub, supc, "maxItems", false,
										  evo_conj_max_items(sub)));
		EVO_CHECK(st, ok, evo_check_unique(st, sub, supc));
		EVO_CHECK(st, ok, evo_check_items(st, sub, supc));
		EVO_CHECK(st, ok, evo_check_contains(st, sub, supc));
	}
	if (t & EVO_T_OBJECT)
	{
		EVO_CHECK(st, ok, evo_check_count(st, sub, supc, "minProperties", true, -1));
		EVO_CHECK(st, ok, evo_check_count(st, sub, supc, "maxProperties", false, -1));
		EVO_CHECK(st, ok, evo_check_required(st, sub, supc));
		EVO_CHECK(st, ok, evo_check_properties(st, sub, supc));
		EVO_CHECK(st, ok, evo_check_dependencies(st, sub, supc));
		EVO_CHECK(st, ok, evo_check_property_names(st, sub, supc));
	}
	EVO_CHECK(st, ok, evo_check_allof(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_anyof(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_oneof(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_not(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_if(st, sub, supc));
	EVO_CHECK(st, ok, evo_check_unknown(st, sub, supc));
	return ok;
}

/*
 * The new side with its first unsplit anyOf or oneOf split: each
 * alternative, added to the rest, within the old schema object.
 */
static bool
evo_split(EvoState *st, EvoConj *sub, JsonbValue *sup)
{
	uint8		flag;
	JsonbContainer *list;
	int			m = evo_conj_disjunction(sub, &flag, &list);
	JsonbValue *elems;
	int			n,
				i;

	Assert(m >= 0);
	n = evo_elements(list, &elems);
	for (i = 0; i < n; i++)
	{
		EvoConj    *c = evo_conj_copy(sub);

		c->split[m] |= flag;
		evo_conj_add(st, c, &elems[i], 0);
		if (!evo_subset(st, c, sup))
			return false;
	}
	return true;
}

/*
 * Whether the new side sub provably accepts nothing the old schema node
 * sup refused; when not, and not only trying, says why.
 */
static bool
evo_subset(EvoState *st, EvoConj *sub, JsonbValue *sup_node)
{
	JsonbValue	sup;
	JsonbContainer *supc;
	JsonbContainer *list;
	uint8		flag;
	int			before = st->problems;
	bool		r;
	int			i;

	CHECK_FOR_INTERRUPTS();
	check_stack_depth();
	if (evo_exhausted(st))
		return false;
	if (sub->nothing)
		return true;
	if (!evo_resolve(st, true, sup_node, &sup))
	{
		JsonbValue	ref;

		if (evo_is_object(sup_node) &&
			evo_get(sup_node->val.binary.data, "$ref", &ref) &&
			ref.type == jbvString)
			evo_problem(st, "$ref", "cannot resolve $ref %s%s",
						evo_value_text(&ref),
						st->sup.refs_ok ? "" : " (the schema has an $id below its root)");
		else
			evo_problem(st, "$ref", "cannot resolve $ref");
		return false;
	}
	if (sup.type == jbvBool)
	{
		if (sup.val.boolean)
			return true;
		evo_problem(st, NULL, "nothing was accepted here before, now something is");
		return false;
	}
	if (!evo_is_object(&sup))
	{
		evo_problem(st, NULL, "not a schema");
		return false;
	}
	supc = sup.val.binary.data;
	if (evo_trivial_container(supc))
		return true;

	/* the same comparison in progress */
	for (i = st->nstack - 1; i >= 0; i--)
		if (st->stack[i].sup == supc && evo_conj_same(st->stack[i].sub, sub))
		{
			if (st->descent > st->stack[i].descent)
				return true;
			evo_problem(st, NULL, "a $ref cycle with no nested document in it: cannot prove it safe");
			return false;
		}
	if (sub->n == 1 && evo_same_schema(sub->member[0], supc, true))
		return true;

	if (st->nstack == st->maxstack)
	{
		st->maxstack = st->maxstack > 0 ? st->maxstack * 2 : 16;
		st->stack = st->stack ? repalloc(st->stack, sizeof(EvoPair) * st->maxstack) :
			palloc(sizeof(EvoPair) * st->maxstack);
	}
	st->stack[st->nstack].sup = supc;
	st->stack[st->nstack].sub = sub;
	st->stack[st->nstack].descent = st->descent;
	st->nstack++;

	if (evo_conj_disjunction(sub, &flag, &list) >= 0)
	{
		/* as it is, else split; say why from as it is */
		st->quiet++;
		r = evo_direct(st, sub, supc) || evo_split(st, sub, &sup);
		st->quiet--;
		if (!r && st->quiet == 0)
			(void) evo_direct(st, sub, supc);
	}
	else
		r = evo_direct(st, sub, supc);

	st->nstack--;
	if (!r && st->quiet == 0 && st->problems == before)
		evo_problem(st, NULL, "cannot prove it safe");
	return r;
}

/*
 * ERROR unless every document new_schema accepts, old_schema accepts too.
 * successor, when not NULL, is the event type the hint proposes instead.
 */
void
outbox_schema_check_evolution(Jsonb *old_schema, Jsonb *new_schema,
							  const char *event_type, const char *successor)
{
	EvoState	st;
	JsonbValue	old_root,
				new_root;
	EvoConj    *sub;
	MemoryContext cxt;
	MemoryContext oldcxt;

	memset(&st, 0, sizeof(st));
	evo_root(old_schema, &old_root);
	evo_root(new_schema, &new_root);

	/*
	 * The same schema but for its annotations: nothing changes, references
	 * included, unless a new $id moves what they resolve against.
	 */
	if (old_root.type == jbvBool && new_root.type == jbvBool &&
		old_root.val.boolean == new_root.val.boolean)
		return;
	if (evo_is_object(&old_root) && evo_is_object(&new_root) &&
		evo_same_schema(old_root.val.binary.data, new_root.val.binary.data,
						false))
	{
		JsonbValue	old_id,
					new_id;
		bool		has_old = evo_get(old_root.val.binary.data, "$id", &old_id);
		bool		has_new = evo_get(new_root.val.binary.data, "$id", &new_id);

		if (has_old == has_new && (!has_old || outbox_json_equal(&old_id, &new_id)))
			return;
	}

	/* what the comparison allocates goes with it, unless it fails */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "schema evolution",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	evo_doc_init(&st.sup, &old_root);
	evo_doc_init(&st.sub, &new_root);
	initStringInfo(&st.path);
	initStringInfo(&st.detail);
	sub = evo_conj_of(&st, &new_root);
	if (evo_subset(&st, sub, &old_root))
	{
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		return;
	}
	MemoryContextSwitchTo(oldcxt);

	Assert(st.problems > 0);
	if (st.problems > EVO_MAX_PROBLEMS)
		appendStringInfo(&st.detail, "; and %d more",
						 st.problems - EVO_MAX_PROBLEMS);
	if (successor != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("new schema of event type \"%s\" would break its consumers",
						event_type),
				 errdetail("%s", st.detail.data),
				 errhint("A breaking change is a new event type: register it as \"%s\".",
						 successor)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("new schema of event type \"%s\" would break its consumers",
						event_type),
				 errdetail("%s", st.detail.data),
				 errhint("A breaking change is a new event type, e.g. with the next version number.")));
}
