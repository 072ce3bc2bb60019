// Browser tests of lintel's web UI: Debian's headless Chromium, driven by playwright-core,
// against a real `lintel serve` on loopback (the binary cargo built: target/debug/lintel,
// or LINTEL_BIN). Beside it run a fake door (an HTTP lock API) and a fake OpenID issuer.
//
//   npm ci && node --test
//
// Screenshots of every page go to $LINTEL_UI_SCREENSHOTS (default: a temporary folder);
// with LINTEL_UI_DOCS=1 the dashboard's also replaces docs/dashboard.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { generateKeyPairSync, sign, randomBytes, createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, existsSync, rmSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../../..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target');
const lintelBin = process.env.LINTEL_BIN || join(targetDir, 'debug', 'lintel');
const chromiumBin = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = process.env.LINTEL_UI_SCREENSHOTS || mkdtempSync(join(tmpdir(), 'lintel-ui-shots-'));
mkdirSync(shots, { recursive: true });

const TOKEN = 'ui-test-' + randomBytes(16).toString('hex');
const AUDIENCE = 'lintel-ui';

let work, lintel, base, browser, door, idp, smtp;

// ---- helpers ----

function listen(server) {
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port)));
}

async function api(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const b64url = (b) => Buffer.from(b).toString('base64url');

/** A fake lock API: records every call and answers 200. */
function fakeDoor() {
  const calls = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      calls.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return { server, calls };
}

/** A fake OpenID issuer with the authorization-code flow: discovery, JWKS, an
 *  authorization page whose Approve button sends the browser back with `code` and `state`
 *  (Deny: `error=access_denied`), and a token endpoint that checks the client's secret
 *  (Basic auth), the redirect URI and the PKCE verifier against the S256 challenge, takes
 *  each code once, and answers an ID token for `user`, signed with EdDSA. */
function fakeIssuer() {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'EdDSA', use: 'sig' };
  const me = { url: '', user: null, secret: 'idp-client-secret', requests: [], tokenRequests: [], answers: [] };
  const codes = new Map();
  const json = (res, status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const idToken = (claims) => {
    const header = b64url(JSON.stringify({ alg: 'EdDSA', kid: 'k1', typ: 'JWT' }));
    const payload = b64url(JSON.stringify(claims));
    return `${header}.${payload}.${b64url(sign(null, Buffer.from(`${header}.${payload}`), privateKey))}`;
  };
  const token = (req, body, res) => {
    const form = Object.fromEntries(new URLSearchParams(body));
    me.tokenRequests.push({ ...form, authorization: req.headers.authorization });
    const grant = codes.get(form.code);
    codes.delete(form.code);
    const basic = 'Basic ' + Buffer.from(`${encodeURIComponent(AUDIENCE)}:${encodeURIComponent(me.secret)}`).toString('base64');
    if (req.headers.authorization !== basic) return json(res, 401, { error: 'invalid_client' });
    const challenge = form.code_verifier && createHash('sha256').update(form.code_verifier).digest('base64url');
    if (form.grant_type !== 'authorization_code' || !grant || grant.redirect_uri !== form.redirect_uri
      || grant.code_challenge_method !== 'S256' || challenge !== grant.code_challenge) {
      return json(res, 400, { error: 'invalid_grant' });
    }
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: me.url, aud: grant.client_id, iat: now, exp: now + 300, nonce: grant.nonce, ...grant.user };
    json(res, 200, { access_token: 'at-' + randomBytes(8).toString('hex'), token_type: 'Bearer', expires_in: 300, id_token: idToken(claims) });
  };
  me.server = createServer((req, res) => {
    const url = new URL(req.url, me.url);
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer: me.url, authorization_endpoint: me.url + '/authorize', token_endpoint: me.url + '/token',
        jwks_uri: me.url + '/jwks', response_types_supported: ['code'], subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['EdDSA'], code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
      });
    }
    if (url.pathname === '/jwks') return json(res, 200, { keys: [jwk] });
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (c) => (body += c));
      return req.on('end', () => token(req, body, res));
    }
    if (url.pathname === '/authorize') {
      const q = Object.fromEntries(url.searchParams);
      me.requests.push(q);
      const code = 'code-' + randomBytes(16).toString('hex');
      codes.set(code, { ...q, user: me.user });
      const back = (params) => {
        const to = new URL(q.redirect_uri);
        for (const [k, v] of Object.entries({ ...params, state: q.state })) to.searchParams.set(k, v);
        return to.href;
      };
      me.answers.push(back({ code }));
      const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
      const answer = (name, params) => `<form method="get" action="${esc(q.redirect_uri)}">${
        Object.entries({ ...params, state: q.state }).map(([k, v]) => `<input type="hidden" name="${k}" value="${esc(v)}">`).join('')
      }<button type="submit">${name}</button></form>`;
      res.writeHead(200, { 'Content-Type': 'text/html' });
      return res.end(`<!doctype html><title>Fake issuer</title><link rel="icon" href="data:,">
        ${answer('Approve', { code })}${answer('Deny', { error: 'access_denied' })}`);
    }
    res.writeHead(404);
    res.end();
  });
  return me;
}

/** A minimal SMTP server that keeps each message's text. */
function smtpSink() {
  const mail = [];
  const server = createTcpServer((socket) => {
    let buffered = '';
    let data = null;
    socket.write('220 sink ready\r\n');
    socket.on('data', (chunk) => {
      buffered += chunk;
      let end;
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (data !== null) {
          if (line === '.') {
            // Bodies travel quoted-printable: undo soft line breaks and `=3D`.
            mail.push(data.replace(/=\n/g, '').replace(/=3D/g, '='));
            data = null;
            socket.write('250 kept\r\n');
          } else {
            data += line + '\n';
          }
          continue;
        }
        const verb = line.split(' ')[0].toUpperCase();
        if (verb === 'DATA') {
          data = '';
          socket.write('354 go on\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 bye\r\n');
        } else {
          socket.write('250 ok\r\n');
        }
      }
    });
  });
  return { server, mail };
}

let lintelEnv;

/** A token with this role (limited to `site` when given), made by the CLI on the server's database. */
async function roleToken(role, name = `ui-${role}`, site = null) {
  const limit = site ? ['--site', site] : [];
  const made = spawnSync(lintelBin, ['token', 'create', '--name', name, '--role', role, ...limit,
    '--database-url', `sqlite://${work}/l.db`], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const token = made.stdout.trim();
  // The server loads new tokens within seconds; until then they are unknown (401).
  for (let i = 0; i < 100; i++) {
    const res = await fetch(base + '/api/v1/sites', { headers: { Authorization: `Bearer ${token}` } });
    if (res.status !== 401) return token;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error(`the ${role} token was not loaded`);
}

async function signInWith(page, token) {
  await page.goto(base + '/ui/login');
  await page.getByLabel('Operator token').fill(token);
  await page.getByLabel('Operator token').press('Enter');
  await page.waitForLoadState();
}

/** Posts a form as the page's own session would (with its CSRF token); the status. */
async function postAs(page, path) {
  return page.evaluate(async (path) => {
    const csrf = JSON.parse(document.body.getAttribute('hx-headers') || '{}')['X-CSRF-Token'] || '';
    const res = await fetch(path, { method: 'POST', headers: { 'X-CSRF-Token': csrf } });
    return res.status;
  }, path);
}

/** A port nothing listens on now (lintel's public address must be known before it starts). */
async function freePort() {
  const probe = createServer();
  const port = await listen(probe);
  await new Promise((ok) => probe.close(ok));
  return port;
}

function startLintel(env) {
  const address = env.LINTEL_PUBLIC_URL.replace('http://', '');
  return new Promise((ok, fail) => {
    const child = spawn(lintelBin, ['serve', '--listen', address, '--database-url', `sqlite://${work}/l.db`], {
      env: { ...process.env, ...env, RUST_LOG: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`lintel did not start:\n${out}\n${err}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/lintel listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        ok({ child, url: m[1] });
      }
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => fail(new Error(`lintel exited (${code}):\n${err}`)));
  });
}

/** A page that fails the test on any console error or uncaught exception. */
async function newPage(context) {
  const page = await (context || (await browser.newContext())).newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  return page;
}

function clean(page) {
  assert.deepEqual(page.problems, [], 'no console errors or page errors');
}

async function signIn(page) {
  await page.goto(base + '/ui/');
  await page.getByLabel('Operator token').fill(TOKEN);
  await page.getByLabel('Operator token').press('Enter');
  await page.waitForURL(base + '/ui/');
}

async function shoot(page, name) {
  const file = join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// ---- setup ----

before(async () => {
  assert.ok(existsSync(lintelBin), `${lintelBin} is missing: build it first (cargo build -p lintel)`);
  assert.ok(existsSync(chromiumBin), `${chromiumBin} is missing: apt-get install chromium`);
  work = mkdtempSync(join(tmpdir(), 'lintel-ui-'));
  door = fakeDoor();
  const doorPort = await listen(door.server);
  idp = fakeIssuer();
  idp.url = `http://127.0.0.1:${await listen(idp.server)}`;
  smtp = smtpSink();
  const smtpPort = await listen(smtp.server);
  lintelEnv = {
    // The public address (visitors' links, the OpenID redirect) is where lintel listens.
    LINTEL_PUBLIC_URL: `http://127.0.0.1:${await freePort()}`,
    LINTEL_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
    LINTEL_SMTP_FROM: 'lintel <doors@example.org>',

    LINTEL_ADMIN_TOKEN: TOKEN,
    LINTEL_OIDC_ISSUER: idp.url,
    LINTEL_OIDC_JWKS_URL: idp.url + '/jwks',
    LINTEL_OIDC_AUDIENCE: AUDIENCE,
    LINTEL_OIDC_CLIENT_SECRET: idp.secret,
  };
  const started = await startLintel(lintelEnv);
  lintel = started.child;
  base = started.url;

  await api('POST', '/api/v1/doors', {
    id: 'front', name: 'Front door',
    driver: { kind: 'http', url: `http://127.0.0.1:${doorPort}/locks/17/unlock`, method: 'POST',
      headers: { Authorization: 'Bearer lock-cloud-secret' }, body: { duration: '{seconds}' } },
  });
  await api('POST', '/api/v1/doors', { id: 'workshop', name: 'Workshop', required_skill: 'lathe' });
  await api('POST', '/api/v1/groups', { id: 'members', name: 'Members', doors: ['front'] });
  await api('POST', '/api/v1/groups', { id: 'staff', name: 'Staff', doors: ['front', 'workshop'] });
  await api('POST', '/api/v1/grants', { group_id: 'members' });
  await api('POST', '/api/v1/grants', { group_id: 'staff' });
  await api('POST', '/api/v1/people', { id: 'alice', name: 'Alice Liddell', email: 'alice@example.org' });
  await api('POST', '/api/v1/people/alice/credentials', { kind: 'card', uid: '04A1B2C3', revocation_code: '7' });
  await api('POST', '/api/v1/grants', {
    person_id: 'alice', doors: ['front'],
    schedule: { tz: 'Europe/Berlin', rules: [{ weekdays: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], from: '00:00', to: '24:00' }] },
  });
  await api('POST', '/api/v1/people', { id: 'bob', name: 'Bob Builder', skills: ['lathe'] });
  await api('PUT', '/api/v1/groups/members/members/bob');
  await api('POST', '/api/v1/people/bob/credentials', { kind: 'card', uid: 'B0B0B0B0' });
  await api('POST', '/api/v1/people', { id: 'carol', name: 'Carol <script>alert(1)</script>' });
  await api('PUT', '/api/v1/groups/staff/members/carol');
  await api('POST', '/api/v1/people/carol/credentials', { kind: 'card', uid: 'CA201CA2' });
  await api('POST', '/api/v1/people', {
    id: 'olga', name: 'Olga Operator', email: 'olga@example.org', attributes: { ui_operator: true },
  });
  await api('POST', '/api/v1/people', { id: 'mallory', name: 'Mallory', email: 'mallory@example.org' });
  // Some history: entries today by Alice and Bob, a refusal for an unknown card.
  for (const [uid, code] of [['04A1B2C3', '7'], ['B0B0B0B0', undefined], ['FFFF0001', undefined]]) {
    await api('POST', '/api/v1/decisions', { door: 'front', credential: { kind: 'card', uid, revocation_code: code } });
  }

  browser = await chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  lintel?.kill('SIGTERM');
  door?.server.close();
  idp?.server.close();
  smtp?.server.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---- the flows ----

test('signing in: the UI asks for a token, refuses a wrong one, accepts the admin token', async () => {
  const page = await newPage();
  await page.goto(base + '/');
  await page.waitForURL(/\/ui\/login\?next=/);
  await page.getByLabel('Operator token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByText('That is not a valid operator token.').waitFor();
  await shoot(page, 'login');
  await page.getByLabel('Operator token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(base + '/ui/');
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'lintel_ui');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict cookie');
  assert.ok(!session.value.includes(TOKEN), 'the cookie is not the token');
  // Signing out ends the session on the server, not just in the browser.
  const stolen = session.value;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/ui\/login/);
  const replay = await fetch(base + '/ui/', { headers: { Cookie: `lintel_ui=${stolen}` }, redirect: 'manual' });
  assert.equal(replay.status, 303);
  clean(page);
  await page.context().close();
});

test('dashboard: doors with state and last activity, today\'s count, integrations, events', async () => {
  const page = await newPage();
  await signIn(page);
  const doors = page.locator('table.doors');
  await doors.getByRole('link', { name: 'Front door' }).waitFor();
  assert.match(await doors.locator('tr[data-door="front"]').innerText(), /not heard from yet/);
  assert.match(await doors.locator('tr[data-door="workshop"]').innerText(), /no device/);
  assert.equal(await page.getByTestId('present-today').innerText(), '2');
  const health = await page.locator('.health').innerText();
  assert.match(health, /OpenID Connect/);
  assert.match(health, /Slack\s*not configured|not configured\s*Slack/);
  const feed = page.locator('#feed');
  await feed.getByText('Alice Liddell entered at Front door').waitFor();
  await feed.getByText(/Unknown card FFFF0001 was refused at Front door/).waitFor();
  await shoot(page, 'dashboard');
  clean(page);
  await page.context().close();
});

test('people: search as you type, a person\'s page, keyboard only', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/people');
  const search = page.getByLabel('Search by name, email or id');
  await search.pressSequentially('lidd', { delay: 40 });
  // No Enter: the list narrows as the operator types.
  await page.locator('#results').getByText('Alice Liddell').waitFor();
  await page.waitForFunction(() => !document.querySelector('#results').innerText.includes('Bob Builder'));
  assert.equal(page.url(), base + '/ui/people', 'still on the same page');
  await shoot(page, 'people');
  // Keyboard: from the search box, Tab (past the button) to the first result and open it.
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.includes('Alice Liddell')), true);
  await page.keyboard.press('Enter');
  await page.waitForURL(base + '/ui/people/alice');
  await page.getByRole('heading', { name: 'Alice Liddell', level: 1 }).waitFor();
  assert.match(await page.locator('tr[data-status="active"]').innerText(), /04A1B2C3/);
  const grants = await page.locator('table.grants').innerText();
  assert.match(grants, /Mon–Sun|every day/);
  assert.match(grants, /Europe\/Berlin time/);
  assert.match(await page.locator('table.why tr[data-door="front"]').innerText(), /Can enter now[\s\S]*card 04A1B2C3/);
  assert.match(await page.locator('table.why tr[data-door="workshop"]').innerText(), /Cannot enter now[\s\S]*needs the skill "lathe"/);
  await shoot(page, 'person');
  // A name with markup stays text.
  await page.goto(base + '/ui/people/carol');
  await page.getByRole('heading', { name: 'Carol <script>alert(1)</script>', level: 1 }).waitFor();
  assert.match(await page.locator('table.why tr[data-door="workshop"]').innerText(), /Cannot enter now[\s\S]*lathe/);
  clean(page);
  await page.context().close();
});

test('revoking a card: confirmed, and the decision changes at once', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/people/alice');
  const front = page.locator('table.why tr[data-door="front"]');
  assert.match(await front.innerText(), /Can enter now/);
  let asked = '';
  page.once('dialog', (d) => {
    asked = d.message();
    d.accept();
  });
  await page.locator('tr.cred', { hasText: '04A1B2C3' }).getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('Revoked card 04A1B2C3. It stops working at once.').waitFor();
  assert.match(asked, /Revoke this card\?/);
  assert.equal(await page.locator('tr.cred', { hasText: '04A1B2C3' }).getAttribute('data-status'), 'revoked');
  // The "why" table was refreshed with the credentials (no reload).
  await page.waitForFunction(() => document.querySelector('table.why tr[data-door="front"]').innerText.includes('Cannot enter now'));
  assert.match(await front.innerText(), /no credential of Alice Liddell works: card 04A1B2C3 was revoked/);
  // And a reader gets the same answer.
  const asReader = await api('POST', '/api/v1/decisions', {
    door: 'front', dry_run: true, credential: { kind: 'card', uid: '04A1B2C3', revocation_code: '7' },
  });
  assert.equal(asReader.reason, 'credential_revoked');
  // A new card for her: she gets in again.
  await page.getByText('Issue a credential').click();
  await page.getByLabel('Card UID (hex)').fill('04D5E6F7');
  await page.getByRole('button', { name: 'Issue' }).click();
  await page.getByText('Issued card 04D5E6F7.').waitFor();
  await page.waitForFunction(() => document.querySelector('table.why tr[data-door="front"]').innerText.includes('Can enter now'));
  // A personal secret: shown once, and regenerating replaces it.
  await page.getByText('Issue a credential').click();
  await page.getByLabel('Personal secret').check();
  await page.getByRole('button', { name: 'Issue' }).click();
  const first = await page.getByTestId('shown-once').innerText();
  assert.match(first, /^lsk_/);
  page.once('dialog', (d) => d.accept());
  await page.locator('tr.cred[data-status="active"]', { hasText: 'Personal secret' }).getByRole('button', { name: 'Regenerate' }).click();
  await page.getByText(/^Replaced personal secret/).waitFor();
  const second = await page.getByTestId('shown-once').innerText();
  assert.match(second, /^lsk_/);
  assert.notEqual(first, second);
  await page.reload();
  assert.equal(await page.getByTestId('shown-once').count(), 0, 'a secret is shown once only');
  clean(page);
  await page.context().close();
});

test('a form without the session\'s CSRF token is refused', async () => {
  const page = await newPage();
  await signIn(page);
  const creds = await api('GET', '/api/v1/people/bob/credentials');
  const target = `${base}/ui/people/bob/credentials/${creds[0].id}/revoke`;
  const forged = await page.request.post(target, { form: { _csrf: 'forged' }, maxRedirects: 0 });
  assert.equal(forged.status(), 403);
  const missing = await page.request.post(target, { form: {}, maxRedirects: 0 });
  assert.equal(missing.status(), 403);
  const after = await api('GET', `/api/v1/credentials/${creds[0].id}`);
  assert.equal(after.status, 'active', 'nothing was revoked');
  const anonymous = await fetch(target, { method: 'POST', redirect: 'manual' });
  assert.equal(anonymous.status, 401);
  clean(page);
  await page.context().close();
});

test('doors: list, detail with driver status, open with confirmation', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/doors');
  await shoot(page, 'doors');
  await page.getByRole('link', { name: 'Front door' }).click();
  await page.waitForURL(base + '/ui/doors/front');
  const driver = await page.locator('section', { hasText: 'Driver' }).first().innerText();
  assert.match(driver, /http/);
  assert.ok(!driver.includes('lock-cloud-secret'), 'header secrets are not shown');
  const before = door.calls.length;
  await page.getByRole('link', { name: 'Open the door…' }).click();
  await page.getByText('Open Front door now?').waitFor();
  assert.equal(door.calls.length, before, 'nothing happens before the confirmation');
  await shoot(page, 'door-confirm');
  await page.getByRole('button', { name: 'Yes, open it' }).click();
  await page.getByTestId('open-outcome').getByText('Opened. The device confirmed.').waitFor();
  assert.equal(door.calls.length, before + 1);
  const call = door.calls.at(-1);
  assert.equal(call.method, 'POST');
  assert.equal(call.url, '/locks/17/unlock');
  assert.equal(call.auth, 'Bearer lock-cloud-secret');
  assert.deepEqual(JSON.parse(call.body), { duration: '5' });
  await page.reload();
  assert.equal(await page.getByTestId('door-state').innerText(), 'online');
  await page.locator('.feed').getByText(/Front door opened \(the device confirmed\)/).waitFor();
  await shoot(page, 'door');
  clean(page);
  await page.context().close();
});

test('webhooks: add an endpoint (its secret shown once), disable it, remove it', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/webhooks');
  await page.getByText('Add an endpoint').click();
  await page.getByLabel('URL').fill(base + '/receiver');
  await page.getByLabel('Event kinds').fill('decision, door.*');
  await page.getByLabel(/Allow plain http/).check();
  await page.getByRole('button', { name: 'Add' }).click();
  const secret = await page.getByTestId('shown-once').innerText();
  assert.match(secret, /^whsec_[A-Za-z0-9+/=]+$/);
  const [endpoint] = await api('GET', '/api/v1/webhooks');
  assert.deepEqual(endpoint.kinds, ['decision', 'door.*']);
  assert.equal(endpoint.enabled, true);
  await page.goto(base + '/ui/webhooks');
  assert.equal(await page.getByTestId('shown-once').count(), 0, 'the secret is shown once only');
  const row = page.locator(`tr[data-endpoint="${endpoint.id}"]`);
  await row.getByRole('button', { name: 'Disable' }).click();
  await page.locator(`tr[data-endpoint="${endpoint.id}"]`).getByText('disabled').waitFor();
  assert.equal((await api('GET', `/api/v1/webhooks/${endpoint.id}`)).enabled, false);
  page.once('dialog', (d) => d.accept());
  await page.locator(`tr[data-endpoint="${endpoint.id}"]`).getByRole('button', { name: 'Remove' }).click();
  await page.getByText(`Removed ${endpoint.id}.`).waitFor();
  assert.deepEqual(await api('GET', '/api/v1/webhooks'), []);
  clean(page);
  await page.context().close();
});

test('live: an event arrives on the dashboard and a check-in on the facility display', async () => {
  const context = await browser.newContext();
  const dash = await newPage(context);
  await signIn(dash);
  await dash.locator('[data-live-status]').getByText('live').waitFor();
  const wall = await newPage(context);
  await wall.setViewportSize({ width: 1920, height: 1080 });
  await wall.goto(base + '/ui/display');
  await wall.locator('#check-ins .tile').first().waitFor();
  assert.equal(await wall.locator('#check-ins .tile', { hasText: 'Carol' }).count(), 0);
  // Wait until the display's stream is open, then let Carol in.
  await wall.locator('#check-ins[data-live-state="open"]').waitFor({ state: 'attached' });
  // Carol's page follows her events too.
  const carol = await newPage(context);
  await carol.goto(base + '/ui/people/carol');
  await carol.locator('[data-live-status]').getByText('live').waitFor();
  const before = Number(await dash.getByTestId('present-today').innerText());
  const decision = await api('POST', '/api/v1/decisions', { door: 'front', credential: { kind: 'card', uid: 'CA201CA2' } });
  assert.equal(decision.allowed, true);
  await dash.locator('#feed li.fresh', { hasText: 'Carol <script>alert(1)</script> entered at Front door' }).waitFor();
  await carol.locator('ol.feed li.fresh', { hasText: 'entered at Front door' }).waitFor();
  // Today's count follows without a reload (Carol had not come in today).
  await dash.waitForFunction((n) => Number(document.querySelector('[data-testid="present-today"]').textContent) === n + 1, before);
  const tile = wall.locator('#check-ins .tile.fresh', { hasText: 'Carol' });
  await tile.waitFor();
  assert.equal(await tile.locator('.avatar').innerText(), 'CS', 'initials stand in for a photo');
  assert.match(await tile.innerText(), /Front door/);
  await shoot(wall, 'display');
  clean(dash);
  clean(wall);
  clean(carol);
  await context.close();
});

test('a station\'s check-in appears on the facility display with the person\'s photo', async () => {
  const context = await browser.newContext();
  const wall = await newPage(context);
  await signIn(wall);
  // A real JPEG of Alice, made by the browser itself, in the photos folder beside the database.
  const jpeg = await wall.evaluate(() => {
    const canvas = document.createElement('canvas');
    canvas.width = 64;
    canvas.height = 64;
    const g = canvas.getContext('2d');
    g.fillStyle = '#c0392b';
    g.fillRect(0, 0, 64, 64);
    return canvas.toDataURL('image/jpeg').split(',')[1];
  });
  mkdirSync(join(work, 'photos'), { recursive: true });
  writeFileSync(join(work, 'photos', 'alice.jpg'), Buffer.from(jpeg, 'base64'));
  await wall.setViewportSize({ width: 1920, height: 1080 });
  await wall.goto(base + '/ui/display');
  await wall.locator('#check-ins[data-live-state="open"]').waitFor({ state: 'attached' });
  // Alice gets a station card (her earlier one was revoked above); the station at the
  // front door reads it: her id and its revocation code.
  await api('POST', '/api/v1/people/alice/credentials', { kind: 'card', uid: '5A5A5A5A', revocation_code: 'S1' });
  const answer = await api('POST', '/api/v1/decisions', {
    door: 'front', credential: { kind: 'member', person_id: 'alice', revocation_code: 'S1' },
  });
  assert.equal(answer.allowed, true);
  assert.equal(answer.name, 'Alice Liddell');
  const tile = wall.locator('#check-ins .tile.fresh', { hasText: 'Alice Liddell' });
  await tile.waitFor();
  const photo = tile.locator('img.avatar');
  assert.equal(await photo.getAttribute('src'), '/ui/people/alice/photo');
  // The image loaded (through the session, under the CSP): it has pixels.
  await wall.waitForFunction((img) => img.complete && img.naturalWidth === 64, await photo.elementHandle());
  assert.match(await tile.innerText(), /Front door/);
  // Bob has no photo: his check-in shows initials.
  await api('POST', '/api/v1/decisions', { door: 'front', credential: { kind: 'card', uid: 'B0B0B0B0' } });
  const bob = wall.locator('#check-ins .tile.fresh', { hasText: 'Bob Builder' });
  await bob.waitFor();
  assert.equal(await bob.locator('img').count(), 0);
  assert.equal(await bob.locator('.avatar').innerText(), 'BB');
  await shoot(wall, 'display-photo');
  clean(wall);
  await context.close();
});

test('attendance: a chart per day, split by group, exported as CSV', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/attendance');
  const bars = page.getByTestId('chart').locator('rect.bar');
  assert.ok((await bars.count()) >= 1, 'a bar for today');
  await page.getByLabel('Split by group').check();
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/by=group/);
  const legend = await page.locator('.legend').innerText();
  assert.match(legend, /Members/);
  assert.match(legend, /in no group/);
  await shoot(page, 'attendance');
  const href = await page.getByTestId('csv').getAttribute('href');
  const csv = await page.request.get(base + href);
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()['content-type'], /text\/csv/);
  const text = await csv.text();
  assert.match(text, /^date,group,person_id,name,first_entry,last_entry,entries\n/);
  assert.match(text, /,members,bob,Bob Builder,/);
  assert.match(text, /,,alice,Alice Liddell,/);
  clean(page);
  await page.context().close();
});

test('a phone screen: no sideways scrolling, the menu fits', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await newPage(context);
  await signIn(page);
  for (const path of ['/ui/', '/ui/people/alice', '/ui/doors/front', '/ui/attendance']) {
    await page.goto(base + path);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${path} scrolls sideways by ${overflow}px`);
  }
  await page.goto(base + '/ui/people/alice');
  await shoot(page, 'phone-person');
  clean(page);
  await context.close();
});

test('OpenID sign-in: an operator gets in, anyone else does not', async () => {
  const page = await newPage();
  idp.user = { sub: 'idp-olga', email: 'olga@example.org', email_verified: true, name: 'Olga O.' };
  await page.goto(base + '/ui/doors');
  await page.getByRole('link', { name: 'Sign in with OpenID Connect' }).click();
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForURL(base + '/ui/doors');
  await page.getByRole('heading', { name: 'Doors' }).waitFor();
  assert.match(await page.locator('.who').innerText(), /Olga Operator/);
  const sent = idp.requests.at(-1);
  assert.equal(sent.client_id, AUDIENCE);
  assert.equal(sent.response_type, 'code');
  assert.equal(sent.code_challenge_method, 'S256');
  assert.match(sent.code_challenge, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(sent.redirect_uri, base + '/ui/login/oidc');
  assert.equal(sent.response_mode, undefined);
  assert.ok(sent.nonce && sent.state && sent.state !== sent.nonce);
  // The code was redeemed with the verifier and the client's secret (the fake checks both).
  const redeemed = idp.tokenRequests.at(-1);
  assert.ok(redeemed.code_verifier && redeemed.authorization.startsWith('Basic '));
  assert.equal(redeemed.client_secret, undefined);
  clean(page);
  await page.context().close();

  // The answer again, with the browser's state cookie: the state was used, so it fails.
  const answer = new URL(idp.answers.at(-1));
  const cookie = `lintel_oidc=${answer.searchParams.get('state')}`;
  const replayed = await fetch(answer, { headers: { Cookie: cookie }, redirect: 'manual' });
  assert.equal(replayed.status, 400);
  assert.match(await replayed.text(), /was used already/);
  assert.equal(replayed.headers.get('set-cookie')?.includes('lintel_ui='), false);
  // A state lintel never gave out; one that is not this browser's.
  const wrong = `${base}/ui/login/oidc?code=x&state=made-up`;
  assert.equal((await fetch(wrong, { headers: { Cookie: 'lintel_oidc=made-up' }, redirect: 'manual' })).status, 400);
  assert.equal((await fetch(wrong, { redirect: 'manual' })).status, 400);

  // The user says no at the issuer: a page that says so, no session.
  const start = await fetch(base + '/ui/login/oidc', { redirect: 'manual' });
  assert.equal(start.status, 303);
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  const denied = await fetch(`${base}/ui/login/oidc?error=access_denied&state=${state}`,
    { headers: { Cookie: `lintel_oidc=${state}` }, redirect: 'manual' });
  assert.equal(denied.status, 403);
  assert.match(await denied.text(), /did not sign you in/);

  // A verified address that is no operator's.
  const other = await newPage();
  idp.user = { sub: 'idp-mallory', email: 'mallory@example.org', email_verified: true, name: 'Mallory' };
  await other.goto(base + '/ui/login');
  await other.getByRole('link', { name: 'Sign in with OpenID Connect' }).click();
  await other.getByRole('button', { name: 'Approve' }).click();
  await other.getByText('you are not an operator of this lintel').waitFor();
  // An operator's address, but not verified by the issuer.
  idp.user = { sub: 'idp-eve', email: 'olga@example.org', email_verified: false, name: 'Eve' };
  await other.getByRole('link', { name: 'Sign in with OpenID Connect' }).click();
  await other.getByRole('button', { name: 'Approve' }).click();
  await other.getByText('you are not an operator of this lintel').waitFor();
  clean(other);
  await other.context().close();
});

test('the README\'s screenshot of the dashboard', async () => {
  // Names are read when a page is drawn: the escaping test's name would look odd there.
  await api('PATCH', '/api/v1/people/carol', { name: 'Carol Danvers' });
  const page = await newPage(await browser.newContext({ viewport: { width: 1280, height: 860 } }));
  await signIn(page);
  await page.locator('[data-live-status]').getByText('live').waitFor();
  await page.screenshot({ path: join(shots, 'dashboard-readme.png') });
  if (process.env.LINTEL_UI_DOCS === '1') {
    copyFileSync(join(shots, 'dashboard-readme.png'), join(repo, 'docs', 'dashboard.png'));
  }
  clean(page);
  await page.context().close();
});

test('enrolling a card by tapping it: the operator sees the UID arrive', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/people/mallory');
  await page.getByText('Enrol a card by tapping it').click();
  await page.getByLabel('At the reader of').selectOption('front');
  await page.getByRole('button', { name: 'Wait for a tap' }).click();
  await page.getByText(/Tap the card at/).waitFor();
  await api('POST', '/api/v1/decisions', { door: 'front', credential: { kind: 'card', uid: '0E0E0E0F' } });
  await page.getByTestId('enrolled').getByText('0E0E0E0F').waitFor({ timeout: 10000 });
  const cards = await api('GET', '/api/v1/people/mallory/credentials');
  assert.deepEqual(cards.map((c) => c.uid), ['0E0E0E0F']);
  await shoot(page, 'enrolled');
  clean(page);
  await page.context().close();
});

test('guest passes: mailed to a visitor, the link opens the door, revoking stops it', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/guests');
  const form = page.locator('form[action="/ui/guests"]');
  await form.getByLabel('Name').fill('Gus Guest');
  await form.getByLabel('Email').fill('gus@example.org');
  await form.getByLabel('Front door').check();
  await form.getByRole('button', { name: 'Issue pass' }).click();
  await page.getByTestId('issued').getByText('is on its way to gus@example.org').waitFor();
  const shown = await page.getByTestId('shown-once').innerText();
  assert.ok(shown.startsWith(`${base}/visit#doors=front&secret=lsk_`), shown);
  await shoot(page, 'guests');
  for (let i = 0; i < 100 && smtp.mail.length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
  const mail = smtp.mail.find((m) => m.includes('gus@example.org'));
  assert.ok(mail, 'the pass was mailed');
  const link = mail.match(/http:\/\/127\.0\.0\.1:\d+\/visit#\S+/)[0];
  assert.equal(link, shown, 'the mail carries the link the operator saw');

  // The visitor, with no session, opens the door from the link.
  const visitor = await newPage();
  await visitor.goto(link);
  const opened = door.calls.length;
  await visitor.getByRole('button', { name: 'Open front' }).click();
  await visitor.getByText('The door is open.').waitFor();
  assert.equal(door.calls.length, opened + 1, 'the door was driven');

  // Revoked from the Guests page: the same link opens nothing.
  page.once('dialog', (d) => d.accept());
  await page.locator('tr', { hasText: 'Gus Guest' }).getByRole('button', { name: 'Revoke' }).click();
  await page.getByText("Revoked Gus Guest's pass").waitFor();
  assert.match(await page.locator('tr', { hasText: 'Gus Guest' }).innerText(), /revoked/);
  await visitor.getByRole('button', { name: 'Open front' }).click();
  await visitor.waitForFunction(() => !/Opening|open\./.test(document.getElementById('status').textContent));
  assert.notEqual(await visitor.locator('#status').innerText(), 'The door is open.');
  assert.equal(door.calls.length, opened + 1, 'the door was not driven again');
  const audit = await api('GET', '/api/v1/audit?kind=guest_pass.revoked');
  assert.equal(audit.items[0].actor, 'token:environment');
  clean(page);
  await page.context().close();
  await visitor.context().close();
});

test('running a site from the browser: a door, a person, a group, a grant, its hours, a suspension', async () => {
  const page = await newPage();
  await signIn(page);
  const whyAtLab = () => page.locator('table.why tr[data-door="lab"]').getAttribute('data-allowed');

  // A door with a Shelly driver.
  await page.goto(base + '/ui/doors');
  await page.getByText('Add a door').click();
  const doorForm = page.locator('form[action="/ui/doors"]');
  await doorForm.getByLabel('Id', { exact: true }).fill('lab');
  await doorForm.getByLabel('Name', { exact: true }).fill('Lab');
  await doorForm.getByLabel('Driver').selectOption('shelly');
  await doorForm.getByLabel('Device URL').fill(`http://127.0.0.1:${door.server.address().port}`);
  await doorForm.getByRole('button', { name: 'Add door' }).click();
  await page.waitForURL(base + '/ui/doors/lab');
  assert.match(await page.locator('main').innerText(), /shelly/i);
  // A refusal is the API's problem text, beside the form.
  await page.goto(base + '/ui/doors');
  await page.getByText('Add a door').click();
  await doorForm.getByLabel('Id', { exact: true }).fill('lab');
  await doorForm.getByLabel('Name', { exact: true }).fill('Lab again');
  await doorForm.getByRole('button', { name: 'Add door' }).click();
  await page.locator('.form-error').getByText(/exists/).waitFor();
  // The browser logs the refusal's 422 as a console error: expected here.
  page.problems = page.problems.filter((p) => !p.includes('422'));

  // A person, in a new group whose doors are the lab.
  await page.goto(base + '/ui/people');
  await page.getByText('Add a person').click();
  const personForm = page.locator('form[action="/ui/people"]');
  await personForm.getByLabel('Name', { exact: true }).fill('Pat Person');
  await personForm.getByLabel('Id', { exact: true }).fill('pat');
  await personForm.getByRole('button', { name: 'Add person' }).click();
  await page.waitForURL(base + '/ui/people/pat');
  await api('POST', '/api/v1/people/pat/credentials', { kind: 'card', uid: '7A7A7A7A' });
  await page.goto(base + '/ui/groups');
  await page.getByText('Add a group').click();
  const groupForm = page.locator('form[action="/ui/groups"]');
  await groupForm.getByLabel('Id', { exact: true }).fill('lab-users');
  await groupForm.getByLabel('Name', { exact: true }).fill('Lab users');
  await groupForm.getByLabel('Lab', { exact: true }).check();
  await groupForm.getByRole('button', { name: 'Add group' }).click();
  await page.waitForURL(base + '/ui/groups/lab-users');
  await page.getByLabel('Add a member').fill('pat');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.locator('ul.members').getByText('Pat Person').waitFor();

  // A weekday grant for every day but today (UTC), then its hours edited to take today in.
  const days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
  const today = days[new Date().getUTCDay()];
  await page.getByText('Give this group a grant').click();
  const grantForm = page.locator('form[action="/ui/grants"]');
  for (const d of days.filter((d) => d !== today)) {
    await grantForm.locator(`input[name="days_0"][value="${d}"]`).check();
  }
  await grantForm.locator('input[name="from_0"]').fill('00:00');
  await grantForm.locator('input[name="to_0"]').fill('24:00');
  await grantForm.getByLabel('Time zone').fill('UTC');
  await grantForm.getByRole('button', { name: 'Add grant' }).click();
  await page.locator('.grant').first().waitFor();
  const grantId = await page.locator('.grant').first().getAttribute('data-grant');
  await page.goto(base + '/ui/people/pat');
  assert.equal(await whyAtLab(), 'false', 'not today');

  await page.goto(base + '/ui/groups/lab-users');
  await page.getByText('Edit hours').click();
  const editForm = page.locator(`form[action="/ui/grants/${grantId}/edit"]`);
  await editForm.locator(`input[name="days_0"][value="${today}"]`).check();
  // Saved, the page comes back (htmx follows the answer's HX-Redirect).
  await Promise.all([page.waitForEvent('load'), editForm.getByRole('button', { name: 'Save hours' }).click()]);
  const grant = await api('GET', `/api/v1/grants/${grantId}`);
  assert.equal(grant.schedule.rules[0].weekdays.length, 7, 'edited in place, same id');
  await page.goto(base + '/ui/people/pat');
  assert.equal(await whyAtLab(), 'true', 'the edited hours take today in');
  let answer = await api('POST', '/api/v1/decisions', { door: 'lab', credential: { kind: 'card', uid: '7A7A7A7A' } });
  assert.equal(answer.reason, 'granted');

  // Suspended from their page: the door refuses them.
  await page.getByRole('button', { name: 'Suspend' }).click();
  await page.getByRole('button', { name: 'Reactivate' }).waitFor();
  assert.equal(await whyAtLab(), 'false');
  answer = await api('POST', '/api/v1/decisions', { door: 'lab', credential: { kind: 'card', uid: '7A7A7A7A' } });
  assert.equal(answer.reason, 'person_suspended');

  // Each change is in the audit trail as the admin token's.
  const audit = await api('GET', '/api/v1/audit?limit=200');
  const kinds = audit.items.filter((e) => e.actor === 'token:environment').map((e) => e.kind);
  for (const kind of ['door.created', 'person.created', 'group.created', 'group.member_added', 'grant.created', 'grant.updated', 'person.updated']) {
    assert.ok(kinds.includes(kind), `${kind} in ${kinds}`);
  }
  await shoot(page, 'person-edit');
  // The audit page tells the same story, in words, by who.
  await page.goto(base + '/ui/audit?person=pat');
  const story = await page.getByTestId('changes').innerText();
  assert.match(story, /Person updated: Pat Person \(status\), by token:environment/);
  assert.match(story, /Group member added: Pat Person, by token:environment/);
  assert.match(story, /Person created: Pat Person, by token:environment/);
  await page.goto(base + '/ui/audit?door=lab');
  assert.match(await page.getByTestId('changes').innerText(), /Door created: Lab, by token:environment/);
  const csv = await (await page.request.get(base + '/ui/audit.csv?person=pat')).text();
  assert.match(csv, /,token:environment,person\.updated,pat,/);
  clean(page);
  await page.context().close();

  // A front desk finds no door settings, and the API refuses them too.
  const deskToken = await roleToken('front_desk');
  const desk = await newPage();
  await signInWith(desk, deskToken);
  await desk.goto(base + '/ui/doors/lab');
  assert.equal(await desk.getByText('Edit settings and driver').count(), 0);
  await desk.goto(base + '/ui/doors');
  assert.equal(await desk.getByText('Add a door').count(), 0);
  const patched = await fetch(base + '/api/v1/doors/lab', {
    method: 'PATCH', headers: { Authorization: `Bearer ${deskToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'Mine now' }),
  });
  assert.equal(patched.status, 403);
  assert.equal(await postAs(desk, '/ui/doors/lab/delete'), 403, 'nor does the UI take the form');
  // The browser logs that refusal as a console error: expected here.
  desk.problems = desk.problems.filter((p) => !p.includes('403'));
  clean(desk);
  await desk.context().close();
});

test('importing people from a CSV: bad rows listed by line, the rest in; people and events exported', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/people');
  await page.getByText('Import or export a CSV').click();
  const csv = [
    'id,name,email,card_uid,groups',
    'imp-1,Ida Import,ida@example.org,0A0B0C01,members',
    'imp-2,,nobody@example.org,0A0B0C02,',
    'imp-3,Ivo Import,not-an-email,,',
    'imp-4,Ina Import,,0A0B0C04,',
  ].join('\n');
  await page.getByLabel('People CSV').setInputFiles({ name: 'people.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await page.getByRole('button', { name: 'Import', exact: true }).click();
  const report = page.getByTestId('import-report');
  await report.waitFor();
  const text = await report.innerText();
  assert.match(text, /2 new/);
  assert.match(text, /2 rejected/);
  assert.match(text, /line 3: .*name/);
  assert.match(text, /line 4: .*email/);
  // In at once: the imported member's card opens the members' door.
  const answer = await api('POST', '/api/v1/decisions', { door: 'front', credential: { kind: 'card', uid: '0A0B0C01' } });
  assert.equal(answer.reason, 'granted');
  const rejected = await fetch(base + '/api/v1/people/imp-3', { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(rejected.status, 404, 'a rejected row changes nothing');
  await shoot(page, 'import');

  // A front desk's import leaves operators alone (changing them is an owner's business).
  const desk = await newPage();
  await signInWith(desk, await roleToken('front_desk', 'ui-desk-import'));
  await desk.goto(base + '/ui/people');
  await desk.getByText('Import or export a CSV').click();
  const takeover = 'id,name,email,card_uid\nolga,Olga Operator,desk@example.org,\nimp-5,Ivy Import,,\n';
  await desk.getByLabel('People CSV').setInputFiles({ name: 'p.csv', mimeType: 'text/csv', buffer: Buffer.from(takeover) });
  await desk.getByRole('button', { name: 'Import', exact: true }).click();
  const refused = await desk.getByTestId('import-report').innerText();
  assert.match(refused, /1 new/);
  assert.match(refused, /line 2: "olga" is an operator/);
  assert.equal((await api('GET', '/api/v1/people/olga')).email, 'olga@example.org', 'the operator is unchanged');
  clean(desk);
  await desk.context().close();

  // The export has the import's columns, so it can be imported again.
  const people = await (await page.request.get(base + '/ui/people.csv')).text();
  assert.match(people, /^id,name,email,card_uid,revocation_code,groups,status\n/);
  assert.match(people, /\nimp-1,Ida Import,ida@example.org,0A0B0C01,,members,active\n/);
  const events = await (await page.request.get(base + '/ui/events.csv?kind=people.imported&from=2000-01-01')).text();
  assert.match(events, /,token:environment,people\.imported,.*""created"":2/, 'recorded as the operator\'s import');
  assert.doesNotMatch(events, /,decision,/, 'only the kind asked for');
  clean(page);
  await page.context().close();
});

test('sites: the doors and attendance of one site, and a webhook endpoint limited to it', async () => {
  await api('POST', '/api/v1/sites', { id: 'annex', name: 'Annex' });
  await api('POST', '/api/v1/doors', { id: 'annex-door', name: 'Annex door', site: 'annex' });
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/doors');
  await page.locator('form.range').getByLabel('Site').selectOption('annex');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/site=annex/);
  const rows = page.locator('table.doors tbody tr');
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.door)), ['annex-door']);
  // The dashboard of one site: its doors, its entries today.
  await page.goto(base + '/ui/');
  await page.locator('form.range').getByLabel('Site').selectOption('annex');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/site=annex/);
  const dashDoors = page.locator('#dashboard-doors tbody tr');
  assert.deepEqual(await dashDoors.evaluateAll((trs) => trs.map((tr) => tr.dataset.door)), ['annex-door']);
  assert.equal(await page.getByTestId('present-today').innerText(), '0', 'nobody came in at the annex');
  await page.goto(base + '/ui/attendance');
  await page.getByLabel('Site').selectOption('annex');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/site=annex/);
  assert.match(await page.locator('main').innerText(), /0 different people came in/, 'nobody entered at the annex');
  assert.match(await page.getByTestId('csv').getAttribute('href'), /site=annex/);
  await page.goto(base + '/ui/webhooks');
  await page.getByText('Add an endpoint').click();
  await page.getByLabel('URL').fill(base + '/receiver');
  await page.getByLabel(/Allow plain http/).check();
  await page.getByLabel('Site').selectOption('annex');
  await page.getByRole('button', { name: 'Add' }).click();
  await page.getByTestId('shown-once').waitFor();
  const [endpoint] = await api('GET', '/api/v1/webhooks');
  assert.equal(endpoint.site, 'annex');
  await page.locator(`tr[data-endpoint="${endpoint.id}"]`).getByText('at site annex only').waitFor();
  await api('DELETE', `/api/v1/webhooks/${endpoint.id}`);
  await api('DELETE', '/api/v1/doors/annex-door');
  await api('DELETE', '/api/v1/sites/annex');
  clean(page);
  await page.context().close();
});

test('a site-scoped admin sees only their site: its doors, its dashboard, its events; the rest is refused', async () => {
  await api('POST', '/api/v1/sites', { id: 'east', name: 'East building' });
  await api('POST', '/api/v1/doors', { id: 'east-door', name: 'East door', site: 'east' });
  await api('POST', '/api/v1/doors/east-door/open', { note: 'east opened' });
  await api('POST', '/api/v1/doors/front/open', { note: 'front opened' });
  const eastAdmin = await roleToken('admin', 'ui-east-admin', 'east');
  const page = await newPage();
  await signInWith(page, eastAdmin);
  assert.match(await page.locator('.who').innerText(), /· east/, 'the header says which site');
  // The dashboard: only the east building's doors and events.
  const dashDoors = page.locator('#dashboard-doors tbody tr');
  assert.deepEqual(await dashDoors.evaluateAll((trs) => trs.map((tr) => tr.dataset.door)), ['east-door']);
  const dashboard = await page.locator('main').innerText();
  assert.match(dashboard, /East door/);
  assert.doesNotMatch(dashboard, /Front door/, 'nothing of the main site');
  // Asking for another site's dashboard is refused, not quietly widened.
  assert.equal((await page.goto(base + '/ui/?site=main')).status(), 403);
  await page.goto(base + '/ui/doors');
  const rows = page.locator('table.doors tbody tr');
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.door)), ['east-door']);
  assert.equal((await page.goto(base + '/ui/doors/front')).status(), 403);
  assert.equal((await page.goto(base + '/ui/doors/%66ront')).status(), 403, 'percent-encoded, the same door');
  // A person's page shows only what concerns their site.
  await page.goto(base + '/ui/people/alice');
  assert.doesNotMatch(await page.locator('main').innerText(), /Front door/);
  await page.goto(base + '/ui/doors/east-door');
  const calls = door.calls.length;
  assert.equal(await postAs(page, '/ui/doors/front/open'), 403, 'another site\'s door does not open');
  assert.equal(door.calls.length, calls, 'the main site\'s door was not driven');
  // The audit trail and the events export: the east building's only.
  await page.goto(base + '/ui/audit');
  const audit = await page.locator('main').innerText();
  assert.match(audit, /East door/);
  assert.doesNotMatch(audit, /Front door/);
  const csv = await page.evaluate(async () => (await fetch('/ui/events.csv')).text());
  assert.match(csv, /east-door/);
  assert.doesNotMatch(csv, /,front,/, 'no event at the main site\'s door');
  // What reaches every site is not theirs: no Webhooks in the menu, and refused.
  assert.equal(await page.getByRole('link', { name: 'Webhooks' }).count(), 0);
  assert.equal((await page.goto(base + '/ui/webhooks')).status(), 403);
  await page.goto(base + '/ui/people/alice');
  await page.getByRole('heading', { name: 'Credentials' }).waitFor();
  // The refusals above are the browser's 403s; nothing else may have gone wrong.
  page.problems = page.problems.filter((p) => !/status of 403/.test(p));
  clean(page);
  await page.context().close();
  const revoked = spawnSync(lintelBin, ['token', 'revoke', '--name', 'ui-east-admin',
    '--database-url', `sqlite://${work}/l.db`], { encoding: 'utf8' });
  assert.equal(revoked.status, 0, revoked.stderr);
  await api('DELETE', '/api/v1/doors/east-door');
  await api('DELETE', '/api/v1/sites/east');
});

test('lockdown: one action after a warning, every credential refused, the banner live; lifted the same way', async () => {
  // A member of this test's own (earlier tests revoke Alice's card).
  await api('POST', '/api/v1/people', { id: 'lena', name: 'Lena Lock' });
  await api('POST', '/api/v1/people/lena/credentials', { kind: 'card', uid: '1E000001' });
  await api('POST', '/api/v1/grants', { person_id: 'lena', doors: ['front'] });
  const page = await newPage();
  await signIn(page);
  const decide = async () => (await api('POST', '/api/v1/decisions',
    { door: 'front', credential: { kind: 'card', uid: '1E000001' }, dry_run: true })).reason;
  assert.equal(await decide(), 'granted');
  await page.getByRole('link', { name: 'Lockdown…' }).click();
  await page.waitForURL(/\/ui\/lockdown/);
  assert.match(await page.getByRole('note').innerText(), /No one will be able to enter with a credential/);
  assert.equal(await decide(), 'granted', 'the warning alone changes nothing');
  await page.getByRole('button', { name: 'Lock down now' }).click();
  await page.waitForURL(/\/ui\/\?site=main/);
  await page.getByTestId('lockdown-banner').waitFor();
  assert.match(await page.getByTestId('lockdown-banner').innerText(), /Front door/);
  assert.equal(await decide(), 'lockdown');
  const locked = page.locator('#dashboard-doors tr[data-door="front"]');
  assert.match(await locked.innerText(), /lockdown/);
  await page.goto(base + '/ui/doors/front');
  assert.match(await page.getByTestId('door-mode').innerText(), /lockdown/);
  // The audit trail names who did it.
  await page.goto(base + '/ui/audit');
  assert.match(await page.locator('main').innerText(), /Front door put in lockdown, by token:environment/);
  await page.goto(base + '/ui/');
  await page.getByRole('link', { name: 'Lift lockdown…' }).click();
  await page.getByRole('button', { name: 'Lift lockdown' }).click();
  await page.waitForURL(/\/ui\/\?site=main/);
  assert.equal(await page.getByTestId('lockdown-banner').count(), 0);
  assert.equal(await decide(), 'granted', 'lifted');
  await api('DELETE', '/api/v1/people/lena');
  clean(page);
  await page.context().close();
});

test('a door held unlocked from its page: free passage shown, then the hold ended', async () => {
  const page = await newPage();
  await signIn(page);
  await api('POST', '/api/v1/doors', { id: 'lobby', name: 'Lobby' });
  await page.goto(base + '/ui/doors/lobby');
  assert.match(await page.getByTestId('door-mode').innerText(), /secure/);
  await page.getByLabel('Hold the door').selectOption('unlocked');
  await page.getByLabel('Minutes').fill('30');
  await page.getByRole('button', { name: 'Hold', exact: true }).click();
  await page.getByTestId('door-hold').waitFor();
  assert.match(await page.getByTestId('door-hold').innerText(), /unlocked until .*by token:environment/);
  // The mode worker puts the door in its mode within a second or two.
  for (let i = 0; i < 50 && (await api('GET', '/api/v1/doors/lobby')).state.mode !== 'unlocked'; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.goto(base + '/ui/doors/lobby');
  assert.match(await page.getByTestId('door-mode').innerText(), /unlocked/);
  await page.getByRole('button', { name: 'End the hold' }).click();
  await page.waitForFunction(() => !document.querySelector('[data-testid="door-hold"]'));
  assert.equal((await api('GET', '/api/v1/doors/lobby')).state.hold, undefined);
  // A door is removed once it has locked again (within a second or two).
  for (let i = 0; i < 50 && (await api('GET', '/api/v1/doors/lobby')).state.mode !== 'secure'; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1500));
  await api('DELETE', '/api/v1/doors/lobby');
  clean(page);
  await page.context().close();
});

test('alarms: a forced door appears on the dashboard at once and is acknowledged with a note', async () => {
  const page = await newPage();
  await signIn(page);
  await api('POST', '/api/v1/doors', { id: 'store', name: 'Storeroom' });
  await page.goto(base + '/ui/');
  assert.equal(await page.getByTestId('alarms').count(), 0);
  // The door's position switch says open, with no entry before: forced.
  const taken = await api('POST', '/api/v1/doors/store/inputs', { input: 'door', state: 'open' });
  assert.equal(taken.alarm.kind, 'forced_open');
  await page.getByTestId('alarms').waitFor();
  const row = page.locator(`[data-alarm="${taken.alarm.id}"]`);
  assert.match(await row.innerText(), /Storeroom: forced open/);
  await row.getByLabel('Note').fill('the cleaner, with a key');
  // The door closes while the note is written: the live refresh keeps what was typed.
  await api('POST', '/api/v1/doors/store/inputs', { input: 'door', state: 'closed' });
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await row.getByLabel('Note').inputValue(), 'the cleaner, with a key');
  await row.getByRole('button', { name: 'Acknowledge' }).click();
  await page.waitForFunction(() => !document.querySelector('[data-testid="alarms"]'));
  const [acked] = (await api('GET', '/api/v1/alarms?all=true')).filter((a) => a.id === taken.alarm.id);
  assert.equal(acked.note, 'the cleaner, with a key');
  assert.match(acked.acked_by, /^token:/);
  await api('DELETE', '/api/v1/doors/store');
  clean(page);
  await page.context().close();
});

test('anti-passback: a zone set up from the page, a second entry refused, the person forgiven', async () => {
  await api('POST', '/api/v1/doors', { id: 'gym-in', name: 'Gym in' });
  await api('POST', '/api/v1/doors', { id: 'gym-out', name: 'Gym out' });
  await api('POST', '/api/v1/people', { id: 'pia', name: 'Pia Pass' });
  await api('POST', '/api/v1/people/pia/credentials', { kind: 'card', uid: '1F000001' });
  await api('POST', '/api/v1/grants', { person_id: 'pia', doors: ['gym-in', 'gym-out'] });
  const decide = async (door) => (await api('POST', '/api/v1/decisions',
    { door, credential: { kind: 'card', uid: '1F000001' } })).reason;
  const page = await newPage();
  await signIn(page);
  await page.goto(base + '/ui/doors');
  await page.getByRole('link', { name: 'Anti-passback zones' }).click();
  await page.waitForURL(/\/ui\/zones/);
  const form = page.locator('form[action="/ui/zones"]');
  await form.getByLabel('Id').fill('gym');
  await form.getByLabel('Name').fill('Gym');
  await form.locator('fieldset', { hasText: 'Entry doors' }).getByLabel('Gym in').check();
  await form.locator('fieldset', { hasText: 'Exit doors' }).getByLabel('Gym out').check();
  await form.getByRole('button', { name: 'Save the zone' }).click();
  const zone = page.locator('[data-zone="gym"]');
  await zone.waitFor();
  assert.match(await zone.innerText(), /In: gym-in; out: gym-out/);
  assert.equal(await decide('gym-in'), 'granted');
  assert.equal(await decide('gym-in'), 'anti_passback');
  await page.reload();
  const inside = zone.locator('[data-inside="pia"]');
  await inside.waitFor();
  await inside.getByRole('button', { name: 'Forgive' }).click();
  await zone.getByTestId('nobody-inside').waitFor();
  assert.equal(await decide('gym-in'), 'granted', 'forgiven: in again');
  // A door both ways is refused on the page, and nothing changes.
  await form.getByLabel('Id').fill('gym');
  await form.getByLabel('Name').fill('Gym');
  await form.locator('fieldset', { hasText: 'Entry doors' }).getByLabel('Gym in').check();
  await form.locator('fieldset', { hasText: 'Exit doors' }).getByLabel('Gym in').check();
  await form.getByRole('button', { name: 'Save the zone' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /named twice/);
  assert.deepEqual((await api('GET', '/api/v1/zones/gym')).exit, ['gym-out']);
  // The browser logs the refusal's 422 as a console error: expected here.
  page.problems = page.problems.filter((p) => !p.includes('422'));
  await api('DELETE', '/api/v1/zones/gym');
  await api('DELETE', '/api/v1/doors/gym-in');
  await api('DELETE', '/api/v1/doors/gym-out');
  clean(page);
  await page.context().close();
});

test('roles: a viewer sees and changes nothing, a wall display shows only the display and outlives a restart', async () => {
  const viewer = await roleToken('viewer');
  const wall = await roleToken('display');
  const page = await newPage();
  await signInWith(page, viewer);
  await page.goto(base + '/ui/people/alice');
  await page.getByRole('heading', { name: 'Credentials' }).waitFor();
  assert.equal(await page.getByText('Issue a credential').count(), 0, 'no issuing for a viewer');
  assert.equal(await page.getByRole('button', { name: 'Revoke' }).count(), 0);
  await page.goto(base + '/ui/doors/front');
  assert.equal(await page.getByRole('link', { name: 'Open the door…' }).count(), 0, 'no opening for a viewer');
  const calls = door.calls.length;
  assert.equal(await postAs(page, '/ui/doors/front/open'), 403, 'and the server refuses it too');
  assert.equal(door.calls.length, calls, 'the door was not driven');
  await page.goto(base + '/ui/webhooks');
  assert.equal(await page.getByText('Add an endpoint').count(), 0);
  assert.equal(await postAs(page, '/ui/webhooks'), 403);
  await page.context().close();

  const screen = await newPage();
  await signInWith(screen, wall);
  await screen.waitForURL(base + '/ui/display');
  const people = await screen.goto(base + '/ui/people');
  assert.equal(people.status(), 403);
  assert.match(await screen.locator('body').innerText(), /Your role \(display\) may not/);
  await screen.goto(base + '/ui/display');
  assert.equal(await postAs(screen, '/ui/doors/front/open'), 403, 'a wall display opens nothing');
  assert.equal(door.calls.length, calls);

  // A restart keeps the display's session (it is in the database, and it does not expire).
  lintel.kill('SIGTERM');
  await new Promise((ok) => lintel.once('exit', ok));
  const started = await startLintel(lintelEnv);
  lintel = started.child;
  base = started.url;
  const again = await screen.goto(base + '/ui/display');
  assert.equal(again.status(), 200);
  assert.equal(new URL(screen.url()).pathname, '/ui/display', 'still signed in, no login page');
  screen.problems = [];
  await screen.context().close();
});

test('the console\'s pages at desktop and phone widths: no sideways scrolling (docs/screens with LINTEL_UI_DOCS=1)', async () => {
  const pages = [
    ['people', '/ui/people', 'summary'],
    ['person', '/ui/people/pat', 'summary'],
    ['groups', '/ui/groups', null],
    ['group', '/ui/groups/lab-users', 'summary'],
    ['doors', '/ui/doors', 'details.issue > summary'],
    ['door', '/ui/doors/lab', 'summary'],
    ['guests', '/ui/guests', 'details.issue > summary'],
    ['audit', '/ui/audit', null],
  ];
  const docs = join(repo, 'docs', 'screens');
  if (process.env.LINTEL_UI_DOCS === '1') mkdirSync(docs, { recursive: true });
  for (const [width, height, mobile, suffix] of [[1280, 860, false, 'desktop'], [390, 844, true, 'phone']]) {
    const context = await browser.newContext({ viewport: { width, height }, isMobile: mobile, hasTouch: mobile });
    const page = await newPage(context);
    await signIn(page);
    for (const [name, path, open] of pages) {
      await page.goto(base + path);
      if (open) await page.locator(open).first().click();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 1, `${path} at ${width}px scrolls sideways by ${overflow}px`);
      // The menu is reachable: every link of it is within the screen.
      const cut = await page.evaluate(() => [...document.querySelectorAll('header nav a')]
        .filter((a) => a.getBoundingClientRect().right > document.documentElement.clientWidth + 1).map((a) => a.textContent));
      assert.deepEqual(cut, [], `${path} at ${width}px: menu links off the screen`);
      const file = await shoot(page, `${name}-${suffix}`);
      if (process.env.LINTEL_UI_DOCS === '1') copyFileSync(file, join(docs, `${name}-${suffix}.png`));
    }
    clean(page);
    await context.close();
  }
});
