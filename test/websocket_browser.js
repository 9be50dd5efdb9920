// Browser side of test/t/016_websocket.pl: Debian's chromium, headless,
// driven by playwright-core, opens the example page served by
// examples/websocket/gateway.js and reports what it shows.
//
//   node test/websocket_browser.js URL KEY
//
// Prints "ready" once the page's websocket is connected; then waits (20 s
// at most) for an event with key KEY to be shown and prints
// "shown <ms since the epoch when the page showed it>"; one second later
// prints "keys <every key shown, comma-separated>" and exits 0.  Exit 1
// when the page does not connect or KEY never shows.
'use strict';

const path = require('path');
const { chromium } = require(path.join(__dirname, '..', 'examples', 'websocket',
  'node_modules', 'playwright-core'));

async function main() {
  const [url, key] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // root may run this (the suite runs as root); chromium's sandbox refuses root
    args: ['--no-sandbox'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForSelector('#status[data-state="connected"]', { timeout: 20000 });
    console.log('ready');
    const li = await page.waitForSelector('li[data-key="' + key + '"]', { timeout: 20000 });
    console.log('shown ' + await li.getAttribute('data-shown-at'));
    await page.waitForTimeout(1000);
    const keys = await page.$$eval('li', (items) => items.map((i) => i.dataset.key));
    console.log('keys ' + keys.join(','));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
