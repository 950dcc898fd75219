import t, { type Test } from 'tap'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Socket as ServerSocket } from 'socket.io'
import { chromium, type Browser, type Page } from 'playwright-core'

// End to end, in a real browser: the chat demo of examples/chat (built on the plugin's package
// export, so `npm run build` first), driven by playwright-core in Debian's Chromium.

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const shots = join(__dirname, '..', 'test-results', 'demo')

// Headless, and off the network: no updates, no sync, no background requests, no QUIC.
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

interface DemoModule {
  buildDemo (options?: { redisUrl?: string, logger?: boolean }): Promise<FastifyInstance>
}

interface RefusedHandshake { origin?: string, cookie?: string, code: number, message: string }

// Without Chromium the test is skipped with a message, except in CI (.ci/run installs it), where it must run.
const available = existsSync(chromiumPath) || process.env.CI !== undefined
if (!available) t.comment(`${chromiumPath} not found: the browser test of the demo is skipped (CI installs the chromium package)`)

t.test('the chat demo in Chromium: login, shared session, chat, logout everywhere, refusals', {
  skip: available ? false : `no Chromium at ${chromiumPath}`
}, async (t) => {
  rmSync(shots, { recursive: true, force: true })
  mkdirSync(shots, { recursive: true })

  // The demo server, in this process, so the test can see what its Socket.IO server sees.
  const specifier = '../examples/chat/server.mjs' // not a literal import: tsc has no types for it
  const { buildDemo } = await import(specifier) as DemoModule
  const app = await buildDemo()
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const demoPort = (app.server.address() as AddressInfo).port
  const demoUrl = `http://127.0.0.1:${demoPort}`

  const connections: ServerSocket[] = []
  app.io.on('connection', (socket: ServerSocket) => { connections.push(socket) })
  const refusedHandshakes: RefusedHandshake[] = []
  app.io.engine.on('connection_error', (err: { req: { headers: Record<string, string | undefined> }, code: number, message: string }) => {
    refusedHandshakes.push({ origin: err.req.headers.origin, cookie: err.req.headers.cookie, code: err.code, message: err.message })
  })

  // The browser: one context is one user's browser (one cookie jar), its pages are tabs.
  const browser: Browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, timeout: 20_000 })
  const pages = new Map<string, Page>()
  t.teardown(async () => {
    if (!t.passing()) {
      for (const [name, page] of pages) {
        await page.screenshot({ path: join(shots, `FAILED-${name}.png`) }).catch(() => {})
      }
      t.comment(`screenshots kept in ${shots}`)
    }
    await browser.close()
  })
  const ada = await browser.newContext({ viewport: { width: 1000, height: 700 } })
  const alan = await browser.newContext({ viewport: { width: 1000, height: 700 } })

  async function open (name: string, context: typeof ada, url = demoUrl): Promise<Page> {
    const page = await context.newPage()
    pages.set(name, page)
    page.setDefaultTimeout(5000)
    await page.goto(url)
    return page
  }
  const shot = async (page: Page, name: string): Promise<void> => {
    await page.screenshot({ path: join(shots, `${name}.png`) })
  }
  const text = async (page: Page, selector: string): Promise<string> => (await page.locator(selector).innerText()).trim()
  // A user acts in the tab in front; Chromium throttles background tabs (Playwright's clicks there wait ~1 s).
  async function login (page: Page, name: string, password: string): Promise<void> {
    await page.bringToFront()
    await page.fill('#name', name)
    await page.fill('#password', password)
    await page.click('#login-form button[type=submit]')
  }

  // 1. Tab 1 logs in; its socket connects with the session and shows the user's name.
  const tab1 = await open('tab1', ada)
  await tab1.locator('#login').waitFor()
  t.match(await text(tab1, '#demo-users'), /Ada\s+lovelace/, 'the login page lists the demo users')
  await shot(tab1, '01-login')
  await login(tab1, 'Ada', 'lovelace')
  await tab1.locator('#status', { hasText: 'Connected as Ada' }).waitFor()
  t.equal(await text(tab1, '#me'), 'Ada', 'tab 1 shows the user')
  t.equal(connections.length, 1, 'one socket')
  t.same(connections[0].request.session.user, { id: 'ada', name: 'Ada' }, 'the socket carries the logged-in session')
  await shot(tab1, '02-tab1-logged-in')

  // 2. Tab 2 of the same browser shares the session: connected at once, without logging in.
  const tab2 = await open('tab2', ada)
  await tab2.locator('#status', { hasText: 'Connected as Ada' }).waitFor()
  t.ok(await tab2.locator('#login').isHidden(), 'tab 2 shows no login form')
  t.equal(connections.length, 2, 'a second socket')
  t.equal(connections[1].request.session.sessionId, connections[0].request.session.sessionId, 'both tabs have the same session')
  await tab1.locator('#presence', { hasText: 'Ada (2 tabs)' }).waitFor()
  await tab1.locator('#notices', { hasText: 'A new tab of Ada connected: 2 open now.' }).waitFor()
  await shot(tab2, '03-tab2-shares-session')

  // Another user, in another browser: Alan.
  const alanTab = await open('alan', alan)
  await login(alanTab, 'Alan', 'turing')
  await alanTab.locator('#status', { hasText: 'Connected as Alan' }).waitFor()
  await tab2.locator('#presence', { hasText: 'Alan (1 tab)' }).waitFor()

  // 3. A chat message from tab 1 appears in tab 2, and in Alan's tab.
  await tab1.bringToFront()
  await tab1.fill('#message', 'Hello from tab 1')
  await tab1.press('#message', 'Enter')
  await tab2.locator('#messages', { hasText: 'Hello from tab 1' }).waitFor()
  await alanTab.locator('#messages', { hasText: 'Hello from tab 1' }).waitFor()
  t.pass('the message from tab 1 reached tab 2 and the other user')

  // The user room: a ping from tab 2 reaches both of Ada's tabs, not Alan's.
  await tab2.bringToFront()
  await tab2.click('#ping')
  await tab1.locator('#notices', { hasText: 'Ping!' }).waitFor()
  await tab2.locator('#notices', { hasText: 'Ping!' }).waitFor()
  t.notMatch(await text(alanTab, '#notices'), /Ping!/, 'the other user does not get the notice')
  await shot(tab2, '04-chat-in-tab2')

  // 4. Logging out in tab 1 disconnects tab 2's socket, and tab 2 shows it within a second.
  await tab1.bringToFront()
  const started = Date.now()
  await tab1.click('#logout')
  await tab2.locator('#banner', { hasText: 'Your session ended' }).waitFor({ timeout: 3000 })
  const elapsed = Date.now() - started
  t.ok(elapsed < 1000, `tab 2 shows the end of the session ${elapsed} ms after the click (under 1000 ms)`)
  t.equal(await text(tab2, '#status'), 'Disconnected: session ended', 'tab 2: disconnected')
  t.match(await text(tab2, '#banner-text'), /io server disconnect/, 'tab 2 names the reason')
  t.match(await text(tab2, '#banner-text'), /You logged out in another tab\./, 'tab 2 says why, from the session:end event')
  t.ok(await tab2.locator('#login').isVisible(), 'tab 2 offers to log in again')
  await tab1.locator('#banner', { hasText: 'You logged out' }).waitFor()
  await shot(tab1, '05-tab1-logged-out')
  await shot(tab2, '06-tab2-session-ended')
  t.equal(await text(alanTab, '#status'), 'Connected as Alan', 'the other user stays connected')
  await alanTab.locator('#presence li', { hasText: 'Ada' }).waitFor({ state: 'detached' })

  // 5. After logout a new socket is refused: connect_error SESSION_UNAUTHORIZED.
  const before = connections.length
  await tab2.bringToFront()
  await tab2.click('#reconnect')
  await tab2.locator('#banner', { hasText: 'SESSION_UNAUTHORIZED' }).waitFor()
  t.equal(await text(tab2, '#status'), 'Refused: not logged in', 'tab 2: refused')
  t.equal(connections.length, before, 'the server admitted no socket')
  await shot(tab2, '07-tab2-refused-after-logout')

  // 6. Ada logs in again; a page of another origin (same host, another port: same site, so the
  // browser sends Ada's cookie) opens sockets to the demo. The origin check refuses them.
  await login(tab1, 'Ada', 'lovelace')
  await tab1.locator('#status', { hasText: 'Connected as Ada' }).waitFor()
  const attacker = await startAttacker(t, demoUrl)
  const admitted = connections.length
  const attackerTab = await open('attacker', ada, attacker.url)
  await attackerTab.locator('#done').waitFor({ state: 'attached' })
  const results = JSON.parse(await text(attackerTab, '#results')) as Record<string, string>
  t.match(results, { websocket: /^connect_error/, polling: /^connect_error/ }, 'both transports get connect_error in the foreign page')
  t.equal(connections.length, admitted, 'the server admitted no socket from the foreign page')
  const foreign = refusedHandshakes.filter((refused) => refused.origin === attacker.url)
  t.equal(foreign.length, 2, 'two handshakes refused at the engine, one per transport')
  for (const refused of foreign) {
    t.match(refused, { code: 4, message: 'Forbidden', cookie: /sessionId=/ }, 'refused with the user\'s session cookie attached')
  }
  await shot(attackerTab, '08-foreign-origin-refused')
})

/**
 * A page of another origin (another port of 127.0.0.1) that tries to open sockets to the demo,
 * with the socket.io client the demo serves: websocket only, then polling (cross-origin XHR with
 * credentials). It writes what happened to #results, then adds #done.
 */
async function startAttacker (t: Test, demoUrl: string): Promise<{ url: string, server: Server }> {
  const html = `<!doctype html><meta charset="utf-8"><title>Another site</title>
<h1>Another origin</h1><p>Trying to open sockets to ${demoUrl} with the visitor's cookies…</p>
<pre id="results">{}</pre>
<script src="${demoUrl}/socket.io/socket.io.js"></script>
<script>
  const results = {}
  function attempt (name, options) {
    return new Promise((resolve) => {
      const socket = io(${JSON.stringify(demoUrl)}, { forceNew: true, reconnection: false, withCredentials: true, ...options })
      socket.on('connect', () => { results[name] = 'connected ' + socket.id; socket.disconnect(); resolve() })
      socket.on('connect_error', (err) => { results[name] = 'connect_error: ' + err.message; resolve() })
    })
  }
  attempt('websocket', { transports: ['websocket'] })
    .then(() => attempt('polling', { transports: ['polling'] }))
    .then(() => {
      document.getElementById('results').textContent = JSON.stringify(results, null, 2)
      const done = document.createElement('p'); done.id = 'done'; done.textContent = 'done'; document.body.append(done)
    })
</script>`
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(html)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}
