-- Event contracts: register_event_type(), drop_event_type(), event_schema(),
-- publish() of registered types, every error a caller can cause, privileges.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;

-- the issue's example
SELECT outbox.register_event_type(
    event_type  => 'order.placed.v2',
    topic       => 'order.placed',
    description => 'An order was placed',
    schema      => '{"type": "object",
                     "required": ["order_id", "total"],
                     "properties": {"order_id": {"type": "integer"},
                                    "total": {"type": "number", "minimum": 0},
                                    "coupon": {"type": "string", "maxLength": 32}},
                     "additionalProperties": false}');
SELECT event_type, topic, description, deprecated_after, derived_from, derive_with,
       created_at = updated_at AS never_changed
  FROM outbox.event_types;

-- a NULL topic takes the registry's; the payload is checked
SELECT outbox.publish(topic => NULL, event_type => 'order.placed.v2',
                      payload => '{"order_id": 42, "total": 9.5}', key => '42') IS NOT NULL AS published;
SELECT outbox.publish(topic => NULL, event_type => 'order.placed.v2',
                      payload => '{"order_id": "42"}', key => '42');
-- every violation, each with its JSON pointer; payload values are not shown
SELECT outbox.publish(NULL, '{"order_id": 4.5, "total": -1, "coupon": "WINTER-SALE-2026-EVERYTHING-MUST-GO", "gift": true}',
                      event_type => 'order.placed.v2');
SELECT outbox.publish(NULL, '[1, 2]', event_type => 'order.placed.v2');
-- an explicit topic wins over the registry's
SELECT outbox.publish('order.placed.eu', '{"order_id": 43, "total": 0}',
                      event_type => 'order.placed.v2') IS NOT NULL AS published;
-- ce_dataschema names the contract; the caller's headers stay
SELECT outbox.publish(NULL, '{"order_id": 44, "total": 1}', event_type => 'order.placed.v2',
                      headers => '{"x-tenant": "acme"}') IS NOT NULL AS published;
SELECT topic, key, convert_from(payload, 'UTF8') AS payload, headers
  FROM outbox.events WHERE event_type = 'order.placed.v2' ORDER BY id;
-- outbox sets ce_dataschema for a type with a schema; ce_derivedfrom always
SELECT outbox.publish(NULL, '{"order_id": 45, "total": 1}', event_type => 'order.placed.v2',
                      headers => '{"CE_DataSchema": "urn:forged"}');
SELECT outbox.publish('t', '{}', headers => '{"ce_derivedfrom": "x"}');
-- for an unregistered type, ce_dataschema is the caller's own
SELECT outbox.publish('other', '{}', event_type => 'other.thing.v1',
                      headers => '{"ce_dataschema": "https://example.com/other.json"}') IS NOT NULL AS published;
-- the prefix is a setting; empty sends no ce_dataschema
SET outbox.schema_uri_prefix = 'https://schemas.example.com/';
SELECT outbox.publish(NULL, '{"order_id": 46, "total": 1}', event_type => 'order.placed.v2') IS NOT NULL AS published;
SET outbox.schema_uri_prefix = '';
SELECT outbox.publish(NULL, '{"order_id": 47, "total": 1}', event_type => 'order.placed.v2') IS NOT NULL AS published;
SET outbox.schema_uri_prefix = 'has space';
RESET outbox.schema_uri_prefix;
SELECT headers FROM outbox.events WHERE event_type = 'order.placed.v2' ORDER BY id DESC LIMIT 2;
-- a tombstone is not checked: it has no payload
SELECT outbox.publish(NULL, NULL, key => '42', event_type => 'order.placed.v2') IS NOT NULL AS published;
-- bytes cannot be checked against a JSON schema
SELECT outbox.publish_binary(NULL, '\x00'::bytea, event_type => 'order.placed.v2');

-- a type without a schema: the topic alone, and bytes may go
SELECT outbox.register_event_type('invoice.sent.v1', topic => 'invoices');
SELECT outbox.publish_binary(NULL, '\x0102'::bytea, event_type => 'invoice.sent.v1',
                             content_type => 'application/avro') IS NOT NULL AS published;
SELECT topic, headers FROM outbox.events WHERE event_type = 'invoice.sent.v1';
-- a type without a topic needs one at publish
SELECT outbox.register_event_type('audit.logged.v1', '{"type": "object"}');
SELECT outbox.publish(NULL, '{}', event_type => 'audit.logged.v1');
SELECT outbox.publish(NULL, '{}', event_type => 'not.registered.v1');

-- re-registering the same definition changes nothing, not even updated_at
SELECT updated_at AS before FROM outbox.event_types WHERE event_type = 'invoice.sent.v1' \gset
SELECT outbox.register_event_type('invoice.sent.v1', topic => 'invoices');
SELECT updated_at = :'before' AS unchanged FROM outbox.event_types WHERE event_type = 'invoice.sent.v1';
-- the description may change; so may the deprecation date
SELECT outbox.register_event_type('invoice.sent.v1', topic => 'invoices', description => 'Sent to the customer');
SELECT description, updated_at > created_at OR updated_at = created_at AS stamped
  FROM outbox.event_types WHERE event_type = 'invoice.sent.v1';
-- the topic may be set where there was none, not changed or removed
SELECT outbox.register_event_type('audit.logged.v1', '{"type": "object"}', topic => 'audit');
SELECT outbox.register_event_type('audit.logged.v1', '{"type": "object"}', topic => 'audit2');
SELECT outbox.register_event_type('audit.logged.v1', '{"type": "object"}');
-- a schema may be added to a type that had none, not taken away
SELECT outbox.register_event_type('invoice.sent.v1', '{"type": "object"}', topic => 'invoices');
SELECT outbox.register_event_type('invoice.sent.v1', topic => 'invoices');

-- registering is transactional
BEGIN;
SELECT outbox.register_event_type('rolled.back.v1', '{"type": "string"}');
SELECT count(*) FROM outbox.event_types WHERE event_type = 'rolled.back.v1';
-- the transaction's own publish sees it
SELECT outbox.publish('t', '1', event_type => 'rolled.back.v1');
ROLLBACK;
SELECT count(*) FROM outbox.event_types WHERE event_type = 'rolled.back.v1';
SELECT outbox.publish('t', '1', event_type => 'rolled.back.v1') IS NOT NULL AS unchecked_again;
-- a change seen by this session's cached schema at once
SELECT outbox.register_event_type('cache.check.v1', '{"type": "object"}');
SELECT outbox.publish('t', '{"a": 1}', event_type => 'cache.check.v1') IS NOT NULL AS published;
SELECT outbox.register_event_type('cache.check.v1', '{"type": "object", "required": ["b"]}');
SELECT outbox.publish('t', '{"a": 1}', event_type => 'cache.check.v1');
SELECT outbox.drop_event_type('cache.check.v1');
SELECT outbox.publish('t', '{"a": 1}', event_type => 'cache.check.v1') IS NOT NULL AS published;

-- invalid arguments
SELECT outbox.register_event_type(NULL);
SELECT outbox.register_event_type('');
SELECT outbox.register_event_type(repeat('x', 1025));
SELECT outbox.register_event_type('x.v1', topic => 'bad topic');
SELECT outbox.register_event_type('x.v1', derived_from => 'order.placed.v2');
SELECT outbox.register_event_type('x.v1', derive_with => 'pg_catalog.jsonb_strip_nulls(jsonb)');

-- schemas that are not valid JSON Schema, or not what outbox implements
SELECT outbox.register_event_type('x.v1', '"object"');
SELECT outbox.register_event_type('x.v1', '{"type": "objekt"}');
SELECT outbox.register_event_type('x.v1', '{"type": ["string", "string"]}');
SELECT outbox.register_event_type('x.v1', '{"properties": {"a": {"frobnicate": 1}}}');
SELECT outbox.register_event_type('x.v1', '{"properties": {"a": {"format": "hostname"}}}');
SELECT outbox.register_event_type('x.v1', '{"items": [{"type": "integer"}, {"minLength": -1}]}');
SELECT outbox.register_event_type('x.v1', '{"minItems": 1.5}');
SELECT outbox.register_event_type('x.v1', '{"multipleOf": 0}');
SELECT outbox.register_event_type('x.v1', '{"required": ["a", "a"]}');
SELECT outbox.register_event_type('x.v1', '{"required": "a"}');
SELECT outbox.register_event_type('x.v1', '{"anyOf": []}');
SELECT outbox.register_event_type('x.v1', '{"enum": 1}');
SELECT outbox.register_event_type('x.v1', '{"pattern": "(("}');
SELECT outbox.register_event_type('x.v1', '{"patternProperties": {"[": {}}}');
SELECT outbox.register_event_type('x.v1', '{"$ref": "#/definitions/missing"}');
SELECT outbox.register_event_type('x.v1', '{"$ref": "https://example.com/schema.json"}');
SELECT outbox.register_event_type('x.v1', '{"$ref": "#"}');
SELECT outbox.register_event_type('x.v1', '{"definitions": {"a": {"allOf": [{"$ref": "#/definitions/a"}]}}}');
SELECT outbox.register_event_type('x.v1', '{"$schema": "http://json-schema.org/draft-04/schema#"}');
SELECT outbox.register_event_type('x.v1', '{"dependencies": {"a": 1}}');
-- a schema nested too deeply for the stack is an error, not a crash
SELECT outbox.register_event_type('x.v1', (repeat('{"not": ', 10000) || '{}' || repeat('}', 10000))::jsonb);
SELECT count(*) AS nothing_registered FROM outbox.event_types WHERE event_type = 'x.v1';
-- annotations are accepted and ignored; definitions and $ref work
SELECT outbox.register_event_type('annotated.v1', '{
    "$schema": "http://json-schema.org/draft-07/schema#", "$id": "https://example.com/annotated.json",
    "title": "t", "description": "d", "default": {}, "examples": [{}], "$comment": "c",
    "definitions": {"id": {"type": "integer", "readOnly": true, "writeOnly": false}},
    "properties": {"id": {"$ref": "#/definitions/id"},
                   "blob": {"type": "string", "contentMediaType": "image/png", "contentEncoding": "base64"}}}');
SELECT outbox.publish('t', '{"id": "x"}', event_type => 'annotated.v1');

-- lengths count characters, not bytes; formats
SELECT outbox.register_event_type('text.v1', '{"properties": {
    "name": {"type": "string", "minLength": 2, "maxLength": 3},
    "at": {"format": "date-time"}, "day": {"format": "date"}, "time": {"format": "time"},
    "mail": {"format": "email"}, "id": {"format": "uuid"}, "v4": {"format": "ipv4"},
    "v6": {"format": "ipv6"}, "link": {"format": "uri"}}}');
SELECT outbox.publish('t', '{"name": "äöü", "at": "2026-12-02T10:00:00.5+01:00", "day": "2024-02-29",
    "time": "23:59:60Z", "mail": "a.b@example.com", "id": "0190d7a4-6e0b-7c3e-9a51-3f1f3e0c2b11",
    "v4": "10.0.0.1", "v6": "::1", "link": "https://example.com/a?b#c"}', event_type => 'text.v1') IS NOT NULL AS published;
SELECT outbox.publish('t', '{"name": "äöüß", "at": "2026-12-02 10:00:00", "day": "2023-02-29",
    "time": "12:00:60Z", "mail": "a..b@example.com", "id": "0190d7a4-6e0b-7c3e-9a51",
    "v4": "10.0.0.256", "v6": "1::2::3", "link": "/relative"}', event_type => 'text.v1');
-- at most ten violations are listed
SELECT outbox.register_event_type('many.v1', '{"additionalProperties": false}');
SELECT outbox.publish('t', '{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12}',
                      event_type => 'many.v1');

-- require_registered_types: superuser-only, refuses unregistered types
SET outbox.require_registered_types = on;
SELECT outbox.publish('t', '{}', event_type => 'not.registered.v1');
SELECT outbox.publish('t', '{}');
SELECT outbox.publish(NULL, '{"order_id": 48, "total": 2}', event_type => 'order.placed.v2') IS NOT NULL AS published;
RESET outbox.require_registered_types;

-- deprecation: warn (default), error, allow; the hint names the successor
SELECT outbox.register_event_type('order.placed.v1', '{"type": "object"}', topic => 'order.placed',
                                  deprecated_after => '2026-01-01 00:00+00');
SELECT outbox.publish(NULL, '{}', event_type => 'order.placed.v1') IS NOT NULL AS published;
SET outbox.deprecated_types = 'error';
SELECT outbox.publish(NULL, '{}', event_type => 'order.placed.v1');
SET outbox.deprecated_types = 'allow';
SELECT outbox.publish(NULL, '{}', event_type => 'order.placed.v1') IS NOT NULL AS published;
SET outbox.deprecated_types = 'sometimes';
RESET outbox.deprecated_types;
-- not yet past its date: no warning
SELECT outbox.register_event_type('order.placed.v1', '{"type": "object"}', topic => 'order.placed',
                                  deprecated_after => now() + interval '1 day');
SELECT outbox.publish(NULL, '{}', event_type => 'order.placed.v1') IS NOT NULL AS published;

-- derived types: V1 published with V2 during a migration
CREATE SCHEMA shop;
CREATE FUNCTION shop.v2_to_v1(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT jsonb_build_object('order', p->'order_id', 'amount', p->'total') $$;
CREATE FUNCTION shop.broken(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT jsonb_build_object('amount', 'lots') $$;
CREATE FUNCTION shop.nothing(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION shop.wrong(p text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION shop.raises(p jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'no V1 for order %', p->>'order_id'; END $$;
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["order", "amount"],
      "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'order.placed', deprecated_after => now() + interval '1 day',
    derived_from => 'order.placed.v2', derive_with => 'shop.v2_to_v1(jsonb)');
DELETE FROM outbox.events;
SELECT outbox.publish(NULL, '{"order_id": 50, "total": 12.5}', key => '50',
                      event_type => 'order.placed.v2', source => '/shop',
                      headers => '{"x-tenant": "acme"}') AS v2_id \gset
SELECT event_type, topic, key, convert_from(payload, 'UTF8') AS payload, source,
       headers - 'ce_derivedfrom' AS headers, headers->>'ce_derivedfrom' = :'v2_id' AS derived_from_v2,
       event_id = :'v2_id' AS is_v2
  FROM outbox.events ORDER BY id;
-- a tombstone derives a tombstone
SELECT outbox.publish(NULL, NULL, key => '50', event_type => 'order.placed.v2') IS NOT NULL AS published;
SELECT event_type, payload IS NULL AS tombstone FROM outbox.events WHERE key = '50' AND payload IS NULL ORDER BY id;
-- bytes cannot be derived
SELECT outbox.register_event_type('blob.v2');
SELECT outbox.register_event_type('blob.v1', derived_from => 'blob.v2', derive_with => 'shop.v2_to_v1(jsonb)');
SELECT outbox.publish_binary('t', '\x00'::bytea, event_type => 'blob.v2');
SELECT outbox.drop_event_type('blob.v1'), outbox.drop_event_type('blob.v2');
-- a derivation that returns an invalid payload, or NULL, fails the publish
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["order", "amount"],
      "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'order.placed', deprecated_after => now() + interval '1 day',
    derived_from => 'order.placed.v2', derive_with => 'shop.broken(jsonb)');
SELECT count(*) AS before FROM outbox.events \gset
SELECT outbox.publish(NULL, '{"order_id": 51, "total": 1}', event_type => 'order.placed.v2');
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["order", "amount"],
      "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'order.placed', deprecated_after => now() + interval '1 day',
    derived_from => 'order.placed.v2', derive_with => 'shop.nothing(jsonb)');
SELECT outbox.publish(NULL, '{"order_id": 51, "total": 1}', event_type => 'order.placed.v2');
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["order", "amount"],
      "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'order.placed', deprecated_after => now() + interval '1 day',
    derived_from => 'order.placed.v2', derive_with => 'shop.raises(jsonb)');
SELECT outbox.publish(NULL, '{"order_id": 51, "total": 1}', event_type => 'order.placed.v2');
SELECT count(*) = :before AS nothing_written FROM outbox.events;
-- after its deprecation date, the derived type is no longer published
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["order", "amount"],
      "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'order.placed', deprecated_after => '2026-01-01 00:00+00',
    derived_from => 'order.placed.v2', derive_with => 'shop.v2_to_v1(jsonb)');
SELECT outbox.publish(NULL, '{"order_id": 52, "total": 1}', key => '52', event_type => 'order.placed.v2') IS NOT NULL AS published;
SELECT event_type FROM outbox.events WHERE key = '52';
-- derivations: wrong functions, chains and cycles are refused
SELECT outbox.register_event_type('order.placed.v0', derived_from => 'order.placed.v2',
                                  derive_with => 'shop.wrong(text)');
SELECT outbox.register_event_type('order.placed.v0', derived_from => 'order.placed.v1',
                                  derive_with => 'shop.v2_to_v1(jsonb)');
SELECT outbox.register_event_type('order.placed.v2', '{"type": "object",
                     "required": ["order_id", "total"],
                     "properties": {"order_id": {"type": "integer"},
                                    "total": {"type": "number", "minimum": 0},
                                    "coupon": {"type": "string", "maxLength": 32}},
                     "additionalProperties": false}', topic => 'order.placed',
    description => 'An order was placed',
    derived_from => 'order.placed.v1', derive_with => 'shop.v2_to_v1(jsonb)');
SELECT outbox.register_event_type('order.placed.v2', derived_from => 'order.placed.v2',
                                  derive_with => 'shop.v2_to_v1(jsonb)');
SELECT outbox.register_event_type('order.placed.v9', derived_from => 'nothing.v1',
                                  derive_with => 'shop.v2_to_v1(jsonb)');
-- a source cannot be dropped while a type derives from it
SELECT outbox.drop_event_type('order.placed.v2');
-- a function dropped behind the registry's back fails the publish clearly
DROP FUNCTION shop.v2_to_v1(jsonb);
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["order", "amount"],
      "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'order.placed', deprecated_after => now() + interval '1 day',
    derived_from => 'order.placed.v2', derive_with => 'shop.broken(jsonb)');
DROP FUNCTION shop.broken(jsonb);
SELECT outbox.publish(NULL, '{"order_id": 53, "total": 1}', event_type => 'order.placed.v2');

-- event_schema()
SELECT outbox.event_schema('audit.logged.v1');
SELECT outbox.event_schema('invoice.sent.v1');
SELECT outbox.event_schema('not.registered.v1') IS NULL AS unknown;

-- privileges: outbox_admin registers; publishers and consumers read
CREATE ROLE plain_role LOGIN;
CREATE ROLE registry_admin LOGIN IN ROLE outbox_admin;
CREATE ROLE registry_publisher LOGIN IN ROLE outbox_publisher;
CREATE ROLE registry_consumer LOGIN IN ROLE outbox_consumer;
SET ROLE registry_publisher;
SELECT outbox.register_event_type('p.v1');
SELECT outbox.drop_event_type('audit.logged.v1');
UPDATE outbox.event_types SET topic = 'hijacked';
SELECT count(*) > 0 AS can_read FROM outbox.event_types;
SELECT outbox.event_schema('audit.logged.v1');
SELECT outbox.publish(NULL, '{}', event_type => 'audit.logged.v1') IS NOT NULL AS published;
RESET ROLE;
SET ROLE registry_consumer;
SELECT outbox.register_event_type('c.v1');
SELECT outbox.event_schema('audit.logged.v1');
RESET ROLE;
SET ROLE plain_role;
SELECT outbox.event_schema('audit.logged.v1');
SELECT * FROM outbox.event_types;
RESET ROLE;
CREATE SCHEMA admin_tricks AUTHORIZATION registry_admin;
SET ROLE registry_admin;
SELECT outbox.register_event_type('admin.made.v1', '{"type": "object"}', topic => 'admin');
-- the admin's search_path and operators do not reach the registry's SQL
CREATE FUNCTION admin_tricks.eq(text, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT true $$;
CREATE OPERATOR admin_tricks.= (LEFTARG = text, RIGHTARG = text, FUNCTION = admin_tricks.eq);
SET search_path = admin_tricks, pg_catalog;
SELECT outbox.register_event_type('admin.made.v2', '{"type": "object"}', topic => 'admin');
RESET search_path;
SELECT event_type, topic FROM outbox.event_types WHERE event_type LIKE 'admin.%' ORDER BY 1;
-- derive_with must be a function the registering role may execute
CREATE FUNCTION admin_tricks.map(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
SELECT outbox.register_event_type('admin.made.v0', derived_from => 'admin.made.v2',
                                  derive_with => 'admin_tricks.map(jsonb)');
SELECT outbox.drop_event_type('admin.made.v1'), outbox.drop_event_type('admin.made.v1');
RESET ROLE;
-- a publisher without EXECUTE on a derive_with function cannot publish the source
REVOKE EXECUTE ON FUNCTION admin_tricks.map(jsonb) FROM PUBLIC;
GRANT USAGE ON SCHEMA admin_tricks TO registry_publisher;
SET ROLE registry_publisher;
SELECT outbox.publish(NULL, '{}', event_type => 'admin.made.v2');
RESET ROLE;
GRANT EXECUTE ON FUNCTION admin_tricks.map(jsonb) TO registry_publisher;
SET ROLE registry_publisher;
SELECT outbox.publish(NULL, '{"a": 1}', event_type => 'admin.made.v2') IS NOT NULL AS published;
RESET ROLE;
SELECT event_type, convert_from(payload, 'UTF8') AS payload FROM outbox.events
 WHERE topic = 'admin' ORDER BY id;

-- clean up
DELETE FROM outbox.events;
SELECT outbox.drop_event_type(event_type) FROM outbox.event_types
 WHERE derived_from IS NOT NULL ORDER BY event_type;
SELECT outbox.drop_event_type(event_type) FROM outbox.event_types ORDER BY event_type;
DROP SCHEMA shop CASCADE;
DROP SCHEMA admin_tricks CASCADE;
DROP ROLE plain_role;
DROP ROLE registry_admin;
DROP ROLE registry_publisher;
DROP ROLE registry_consumer;
