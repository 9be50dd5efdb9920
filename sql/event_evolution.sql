-- Schema evolution: a new schema for a registered event type is accepted only
-- when every payload it accepts, the old one accepted too (src/evolution.c).
-- Each case registers a type, then registers it again with the changed schema.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;

-- Schema evolution: each case registers an event type with the old schema,
-- then again with the new one; the second call must succeed (ok) or fail (error).

-- an optional property added where additionalProperties is absent
SELECT outbox.register_event_type('evo.1.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.1.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}, "note": {"type": "string"}}, "required": ["id"]}');   -- expect: ok

-- an optional property added where additionalProperties is true
SELECT outbox.register_event_type('evo.2.v1', '{"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": true}');
SELECT outbox.register_event_type('evo.2.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "note": {"type": "string"}}, "additionalProperties": true}');   -- expect: ok

-- a property made required
SELECT outbox.register_event_type('evo.3.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.3.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id", "total"]}');   -- expect: ok

-- only annotations changed (title, description, examples)
SELECT outbox.register_event_type('evo.4.v1', '{"type": "object", "properties": {"id": {"type": "string", "description": "the id"}}}');
SELECT outbox.register_event_type('evo.4.v1', '{"type": "object", "properties": {"id": {"type": "string", "description": "the order id", "examples": ["o-1"]}}, "title": "Order"}');   -- expect: ok

-- the same schema, keys in another order and 0 written as 0.0
SELECT outbox.register_event_type('evo.5.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.5.v1', '{"required": ["id"], "properties": {"total": {"minimum": 0.0, "type": "integer"}, "id": {"type": "string"}}, "type": "object"}');   -- expect: ok

-- additionalProperties false added: it only narrows
SELECT outbox.register_event_type('evo.6.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.6.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"], "additionalProperties": false}');   -- expect: ok

-- maxLength added to a string property
SELECT outbox.register_event_type('evo.7.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.7.v1', '{"type": "object", "properties": {"id": {"type": "string", "maxLength": 32}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');   -- expect: ok

-- an enum narrowed
SELECT outbox.register_event_type('evo.8.v1', '{"type": "object", "properties": {"status": {"enum": ["new", "paid", "shipped"]}}}');
SELECT outbox.register_event_type('evo.8.v1', '{"type": "object", "properties": {"status": {"enum": ["new", "paid"]}}}');   -- expect: ok

-- a property removed
SELECT outbox.register_event_type('evo.9.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.9.v1', '{"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}');   -- expect: error

-- a property renamed
SELECT outbox.register_event_type('evo.10.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.10.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}, "required": ["id"]}');   -- expect: error

-- a property's type changed from integer to string
SELECT outbox.register_event_type('evo.11.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.11.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "string"}}, "required": ["id"]}');   -- expect: error

-- a property's type widened from integer to number
SELECT outbox.register_event_type('evo.12.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.12.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "number", "minimum": 0}}, "required": ["id"]}');   -- expect: error

-- a minimum lowered
SELECT outbox.register_event_type('evo.13.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.13.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": -1}}, "required": ["id"]}');   -- expect: error

-- a maxLength raised
SELECT outbox.register_event_type('evo.14.v1', '{"type": "object", "properties": {"id": {"type": "string", "maxLength": 32}}}');
SELECT outbox.register_event_type('evo.14.v1', '{"type": "object", "properties": {"id": {"type": "string", "maxLength": 64}}}');   -- expect: error

-- an enum value added
SELECT outbox.register_event_type('evo.15.v1', '{"type": "object", "properties": {"status": {"enum": ["new", "paid"]}}}');
SELECT outbox.register_event_type('evo.15.v1', '{"type": "object", "properties": {"status": {"enum": ["new", "paid", "refunded"]}}}');   -- expect: error

-- a required name dropped
SELECT outbox.register_event_type('evo.16.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.16.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}}');   -- expect: error

-- a property added where additionalProperties was false
SELECT outbox.register_event_type('evo.17.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"], "additionalProperties": false}');
SELECT outbox.register_event_type('evo.17.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}, "note": {"type": "string"}}, "required": ["id"], "additionalProperties": false}');   -- expect: error

-- additionalProperties false removed
SELECT outbox.register_event_type('evo.18.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"], "additionalProperties": false}');
SELECT outbox.register_event_type('evo.18.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');   -- expect: error

-- a bound narrowed two objects down
SELECT outbox.register_event_type('evo.19.v1', '{"type": "object", "properties": {"customer": {"type": "object", "properties": {"address": {"type": "object", "properties": {"zip": {"type": "string", "minLength": 4}}}}}}}');
SELECT outbox.register_event_type('evo.19.v1', '{"type": "object", "properties": {"customer": {"type": "object", "properties": {"address": {"type": "object", "properties": {"zip": {"type": "string", "minLength": 5, "maxLength": 5}}}}}}}');   -- expect: ok

-- a type widened two objects down
SELECT outbox.register_event_type('evo.20.v1', '{"type": "object", "properties": {"customer": {"type": "object", "properties": {"address": {"type": "object", "properties": {"zip": {"type": "string"}}}}}}}');
SELECT outbox.register_event_type('evo.20.v1', '{"type": "object", "properties": {"customer": {"type": "object", "properties": {"address": {"type": "object", "properties": {"zip": {"type": ["string", "integer"]}}}}}}}');   -- expect: error

-- minimum 0 replaced by the tighter exclusiveMinimum 0
SELECT outbox.register_event_type('evo.21.v1', '{"type": "number", "minimum": 0}');
SELECT outbox.register_event_type('evo.21.v1', '{"type": "number", "exclusiveMinimum": 0}');   -- expect: ok

-- exclusiveMinimum 0 replaced by minimum 0: 0 is accepted now
SELECT outbox.register_event_type('evo.22.v1', '{"type": "number", "exclusiveMinimum": 0}');
SELECT outbox.register_event_type('evo.22.v1', '{"type": "number", "minimum": 0}');   -- expect: error

-- for integers, exclusiveMinimum 0 and minimum 1 are the same bound
SELECT outbox.register_event_type('evo.23.v1', '{"type": "integer", "exclusiveMinimum": 0}');
SELECT outbox.register_event_type('evo.23.v1', '{"type": "integer", "minimum": 1}');   -- expect: ok

-- exclusiveMaximum 10 raised to maximum 10
SELECT outbox.register_event_type('evo.24.v1', '{"type": "number", "exclusiveMaximum": 10}');
SELECT outbox.register_event_type('evo.24.v1', '{"type": "number", "maximum": 10}');   -- expect: error

-- multipleOf 2 narrowed to multipleOf 6
SELECT outbox.register_event_type('evo.25.v1', '{"type": "integer", "multipleOf": 2}');
SELECT outbox.register_event_type('evo.25.v1', '{"type": "integer", "multipleOf": 6}');   -- expect: ok

-- multipleOf 0.01 narrowed to 0.05, compared exactly
SELECT outbox.register_event_type('evo.26.v1', '{"type": "number", "multipleOf": 0.01}');
SELECT outbox.register_event_type('evo.26.v1', '{"type": "number", "multipleOf": 0.05}');   -- expect: ok

-- multipleOf 2 changed to 3
SELECT outbox.register_event_type('evo.27.v1', '{"type": "integer", "multipleOf": 2}');
SELECT outbox.register_event_type('evo.27.v1', '{"type": "integer", "multipleOf": 3}');   -- expect: error

-- multipleOf removed
SELECT outbox.register_event_type('evo.28.v1', '{"type": "integer", "multipleOf": 2}');
SELECT outbox.register_event_type('evo.28.v1', '{"type": "integer"}');   -- expect: error

-- an enum narrowed to a const it held
SELECT outbox.register_event_type('evo.29.v1', '{"type": "object", "properties": {"currency": {"enum": ["EUR", "USD"]}}}');
SELECT outbox.register_event_type('evo.29.v1', '{"type": "object", "properties": {"currency": {"const": "EUR"}}}');   -- expect: ok

-- a const changed
SELECT outbox.register_event_type('evo.30.v1', '{"type": "object", "properties": {"kind": {"const": "order"}}}');
SELECT outbox.register_event_type('evo.30.v1', '{"type": "object", "properties": {"kind": {"const": "invoice"}}}');   -- expect: error

-- an enum of short strings replaced a maxLength
SELECT outbox.register_event_type('evo.31.v1', '{"type": "object", "properties": {"code": {"type": "string", "maxLength": 3}}}');
SELECT outbox.register_event_type('evo.31.v1', '{"type": "object", "properties": {"code": {"enum": ["A", "BB", "CCC"]}}}');   -- expect: ok

-- $ref: the definition it points to narrowed
SELECT outbox.register_event_type('evo.32.v1', '{"definitions": {"addr": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}, "type": "object", "properties": {"ship_to": {"$ref": "#/definitions/addr"}}}');
SELECT outbox.register_event_type('evo.32.v1', '{"definitions": {"addr": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}, "required": ["city", "zip"]}}, "type": "object", "properties": {"ship_to": {"$ref": "#/definitions/addr"}}}');   -- expect: ok

-- $ref: the definition it points to lost its required city
SELECT outbox.register_event_type('evo.33.v1', '{"definitions": {"addr": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}, "type": "object", "properties": {"ship_to": {"$ref": "#/definitions/addr"}}}');
SELECT outbox.register_event_type('evo.33.v1', '{"definitions": {"addr": {"type": "object", "properties": {"city": {"type": "string"}}}}, "type": "object", "properties": {"ship_to": {"$ref": "#/definitions/addr"}}}');   -- expect: error

-- $ref replaced by the same schema inline
SELECT outbox.register_event_type('evo.34.v1', '{"definitions": {"addr": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}, "type": "object", "properties": {"ship_to": {"$ref": "#/definitions/addr"}}}');
SELECT outbox.register_event_type('evo.34.v1', '{"type": "object", "properties": {"ship_to": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}');   -- expect: ok

-- a definition no $ref uses changed
SELECT outbox.register_event_type('evo.35.v1', '{"definitions": {"unused": {"type": "string"}}, "type": "object"}');
SELECT outbox.register_event_type('evo.35.v1', '{"definitions": {"unused": {"type": "integer"}}, "type": "object"}');   -- expect: ok

-- recursion via $ref: a tree whose node names got a maxLength
SELECT outbox.register_event_type('evo.36.v1', '{"definitions": {"node": {"type": "object", "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}, "required": ["name"]}}, "$ref": "#/definitions/node"}');
SELECT outbox.register_event_type('evo.36.v1', '{"definitions": {"node": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 64}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}, "required": ["name"]}}, "$ref": "#/definitions/node"}');   -- expect: ok

-- recursion via $ref: a tree whose node names may be null now
SELECT outbox.register_event_type('evo.37.v1', '{"definitions": {"node": {"type": "object", "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}, "required": ["name"]}}, "$ref": "#/definitions/node"}');
SELECT outbox.register_event_type('evo.37.v1', '{"definitions": {"node": {"type": "object", "properties": {"name": {"type": ["string", "null"]}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}, "required": ["name"]}}, "$ref": "#/definitions/node"}');   -- expect: error

-- tuple items: additionalItems false added after the listed items
SELECT outbox.register_event_type('evo.38.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}');
SELECT outbox.register_event_type('evo.38.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false}');   -- expect: ok

-- tuple items: a third item where additionalItems was false
SELECT outbox.register_event_type('evo.39.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false}');
SELECT outbox.register_event_type('evo.39.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "integer"}, {"type": "integer"}], "additionalItems": false}');   -- expect: error

-- tuple items: one schema for all items, at most as many as the tuple had
SELECT outbox.register_event_type('evo.40.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "string"}], "additionalItems": false}');
SELECT outbox.register_event_type('evo.40.v1', '{"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2}');   -- expect: ok

-- tuple items: the second item's type widened
SELECT outbox.register_event_type('evo.41.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}');
SELECT outbox.register_event_type('evo.41.v1', '{"type": "array", "items": [{"type": "string"}, {"type": "number"}]}');   -- expect: error

-- allOf in the old schema, its members merged into one in the new
SELECT outbox.register_event_type('evo.42.v1', '{"allOf": [{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}, {"required": ["total"]}]}');
SELECT outbox.register_event_type('evo.42.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id", "total"]}');   -- expect: ok

-- allOf: a member's requirement dropped
SELECT outbox.register_event_type('evo.43.v1', '{"allOf": [{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}, {"required": ["total"]}]}');
SELECT outbox.register_event_type('evo.43.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');   -- expect: error

-- boolean schemas: a new schema of false accepts nothing, so nothing new
SELECT outbox.register_event_type('evo.44.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.44.v1', 'false');   -- expect: ok

-- boolean schemas: false replaced by true
SELECT outbox.register_event_type('evo.45.v1', 'false');
SELECT outbox.register_event_type('evo.45.v1', 'true');   -- expect: error

-- boolean schemas: an old schema of true accepted everything
SELECT outbox.register_event_type('evo.46.v1', 'true');
SELECT outbox.register_event_type('evo.46.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');   -- expect: ok

-- a property forbidden (false) instead of removed
SELECT outbox.register_event_type('evo.47.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "integer", "minimum": 0}}, "required": ["id"]}');
SELECT outbox.register_event_type('evo.47.v1', '{"type": "object", "properties": {"id": {"type": "string"}, "total": false}, "required": ["id"]}');   -- expect: ok

-- anyOf: an alternative removed
SELECT outbox.register_event_type('evo.48.v1', '{"type": "object", "properties": {"ref": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}');
SELECT outbox.register_event_type('evo.48.v1', '{"type": "object", "properties": {"ref": {"anyOf": [{"type": "string"}]}}}');   -- expect: ok

-- anyOf: an alternative added
SELECT outbox.register_event_type('evo.49.v1', '{"type": "object", "properties": {"ref": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}');
SELECT outbox.register_event_type('evo.49.v1', '{"type": "object", "properties": {"ref": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}}}');   -- expect: error

-- uniqueItems true dropped
SELECT outbox.register_event_type('evo.50.v1', '{"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}}');
SELECT outbox.register_event_type('evo.50.v1', '{"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}');   -- expect: error

-- clean up
SELECT count(outbox.drop_event_type(event_type)) FROM outbox.event_types WHERE event_type LIKE 'evo.%';
