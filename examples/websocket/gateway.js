// outbox websocket gateway: the frontend push of seed 000.
//
// LISTENs on outbox.notify_channel in the application's database and
// forwards every delivered event the relay notifies to every browser
// connected over a websocket, as one JSON message per event:
//   {"event_id", "topic", "key", "partition", "offset", "event_type"}
// A browser sees an event only once Kafka has it, and never one whose
// transaction rolled back (the relay notifies after it recorded the
// delivery).  It also serves index.html, the page that shows them.
//
// Settings (environment): PGHOST, PGPORT, PGDATABASE, PGUSER (libpq's),
// OUTBOX_CHANNEL (default outbox_delivered, as set in postgresql.conf),
// OUTBOX_TOPIC_PREFIX (only topics starting with it; default: all),
// PORT (default 8080).  Prints "listening on <port>" once it is ready.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { Client } = require('pg');
const { WebSocketServer } = require('ws');

const channel = process.env.OUTBOX_CHANNEL || 'outbox_delivered';
const prefix = process.env.OUTBOX_TOPIC_PREFIX || '';
const port = Number(process.env.PORT || 8080);
const page = fs.readFileSync(path.join(__dirname, 'index.html'));

// a channel name is an identifier: quote it for LISTEN
function quoteIdent(name) {
  return '"' + name.replace(/"/g, '""') + '"';
}

const server = http.createServer((req, res) => {
  if (req.url === '/' || req.url === '/index.html') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  } else {
    res.writeHead(404);
    res.end();
  }
});
const wss = new WebSocketServer({ server, path: '/events' });

function broadcast(event) {
  const text = JSON.stringify(event);
  for (const ws of wss.clients) {
    if (ws.readyState === ws.OPEN) ws.send(text);
  }
}

async function main() {
  const db = new Client();
  db.on('notification', (msg) => {
    if (msg.channel !== channel) return;
    let events;
    try {
      events = JSON.parse(msg.payload);
    } catch (e) {
      console.error('not a JSON payload on ' + channel + ': ' + e.message);
      return;
    }
    for (const ev of events) {
      if (ev.topic.startsWith(prefix)) broadcast(ev);
    }
  });
  db.on('error', (e) => {
    // the page keeps its websocket; a restart of the gateway reconnects
    console.error('database connection lost: ' + e.message);
    process.exit(1);
  });
  await db.connect();
  await db.query('LISTEN ' + quoteIdent(channel));
  server.listen(port, '127.0.0.1', () => console.log('listening on ' + server.address().port));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
