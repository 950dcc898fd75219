import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import type { Socket as ServerSocket } from 'socket.io'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { freePort, skipWithoutRedis, startRedis } from './helpers/redis'

// The chat demo on two nodes behind a real load balancer: examples/cluster (nginx from Debian, with the
// configuration of examples/cluster/nginx.conf, in front of two nodes of the demo sharing Redis), driven
// in Chromium on Socket.IO's default transports (HTTP long-polling, then the upgrade to WebSocket),
// through nginx only. The demo is built on the plugin's package export: `npm run build` first.

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

interface ClusterNode { name: string, app: FastifyInstance, url: string }
interface ClusterModule {
  startCluster (options: { port: number, redisUrl: string }): Promise<{ url: string, nodes: ClusterNode[], accessLog: () => string, stop: () => Promise<void> }>
}

function hasNginx (): boolean {
  const probe = spawnSync('nginx', ['-v'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}

// Without nginx or Chromium the test is skipped with a message, except in CI (.ci/run installs both).
const missing = [!hasNginx() && 'nginx (apt-get install nginx)', !existsSync(chromiumPath) && `Chromium at ${chromiumPath} (apt-get install chromium)`].filter(Boolean)
const skip = skipWithoutRedis || (process.env.CI === undefined && missing.length > 0 ? `no ${missing.join(', no ')}: the nginx cluster test is skipped` : false)

t.test('the chat demo on two nodes behind nginx, in Chromium: login, a second tab on the other node, chat across nodes, logout ending the other tab', { skip }, async (t) => {
  const redis = await startRedis(t)
  const specifier = '../examples/cluster/cluster.mjs' // not a literal import: tsc has no types for it
  const { startCluster } = await import(specifier) as ClusterModule
  const cluster = await startCluster({ port: await freePort(), redisUrl: redis.url })
  t.teardown(() => cluster.stop())

  // Which node holds each socket: every connection of the browser comes through nginx.
  const connections: Array<{ node: string, socket: ServerSocket }> = []
  for (const node of cluster.nodes) {
    node.app.io.on('connection', (socket: ServerSocket) => { connections.push({ node: node.name, socket }) })
  }
  const nodeOf = (i: number): string => connections[i].node
  /** Waits until the i-th socket's connection has upgraded from polling to WebSocket. */
  async function upgraded (i: number): Promise<void> {
    const deadline = Date.now() + 5000
    while (connections[i].socket.conn.transport.name !== 'websocket') {
      if (Date.now() > deadline) throw new Error(`socket ${i} did not upgrade to WebSocket within 5 s`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  const browser: Browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, timeout: 20_000 })
  t.teardown(() => browser.close())
  const ada = await browser.newContext()
  const alan = await browser.newContext()
  async function open (context: BrowserContext): Promise<Page> {
    const page = await context.newPage()
    page.setDefaultTimeout(5000)
    await page.goto(cluster.url)
    return page
  }
  async function login (page: Page, name: string, password: string): Promise<void> {
    await page.bringToFront()
    await page.fill('#name', name)
    await page.fill('#password', password)
    await page.click('#login-form button[type=submit]')
  }
  async function say (page: Page, text: string): Promise<void> {
    await page.bringToFront()
    await page.fill('#message', text)
    await page.press('#message', 'Enter')
  }

  // 1. Tab 1 logs in through nginx; its socket opens with polling, then upgrades to WebSocket.
  const tab1 = await open(ada)
  await login(tab1, 'Ada', 'lovelace')
  await tab1.locator('#status', { hasText: 'Connected as Ada' }).waitFor()
  t.equal(connections.length, 1, 'one socket')
  t.equal(connections[0].socket.handshake.query.transport, 'polling', 'its handshake: HTTP long-polling')
  await upgraded(0)
  t.pass(`tab 1: on node ${nodeOf(0)}, upgraded to WebSocket through nginx`)

  // 2. Tab 2 shares the session; its socket lands on the other node.
  const tab2 = await open(ada)
  await tab2.locator('#status', { hasText: 'Connected as Ada' }).waitFor()
  t.equal(connections.length, 2, 'a second socket')
  t.not(nodeOf(1), nodeOf(0), `tab 2: on node ${nodeOf(1)}, the other node`)
  t.equal(connections[1].socket.request.session.sessionId, connections[0].socket.request.session.sessionId, 'the same session on both nodes')
  await upgraded(1)
  await tab1.locator('#presence', { hasText: 'Ada (2 tabs)' }).waitFor()
  t.pass('each node sees both tabs (presence from fetchSockets across nodes)')

  // Another user, in another browser.
  const alanTab = await open(alan)
  await login(alanTab, 'Alan', 'turing')
  await alanTab.locator('#status', { hasText: 'Connected as Alan' }).waitFor()

  // 3. Chat across nodes, both ways.
  await say(tab1, `Hello from tab 1 on node ${nodeOf(0)}`)
  await tab2.locator('#messages', { hasText: `Hello from tab 1 on node ${nodeOf(0)}` }).waitFor()
  await alanTab.locator('#messages', { hasText: `Hello from tab 1 on node ${nodeOf(0)}` }).waitFor()
  await say(tab2, `Hello from tab 2 on node ${nodeOf(1)}`)
  await tab1.locator('#messages', { hasText: `Hello from tab 2 on node ${nodeOf(1)}` }).waitFor()
  t.pass('messages cross the nodes both ways')

  // 4. Logout in tab 1 (the request goes to either node) ends tab 2, on the other node.
  await tab1.bringToFront()
  const started = Date.now()
  await tab1.click('#logout')
  await tab2.locator('#banner', { hasText: 'Your session ended' }).waitFor({ timeout: 5000 })
  t.comment(`tab 2 showed the end of the session ${Date.now() - started} ms after the click`)
  t.match(await tab2.locator('#banner-text').innerText(), /You logged out in another tab\./, 'tab 2 says why')
  t.equal((await tab2.locator('#status').innerText()).trim(), 'Disconnected: session ended')
  await tab1.locator('#banner', { hasText: 'You logged out' }).waitFor()
  t.equal((await alanTab.locator('#status').innerText()).trim(), 'Connected as Alan', 'the other user stays connected')

  // What nginx did: the nodes served the Engine.IO requests, and none was refused as an unknown connection.
  const log = cluster.accessLog()
  const engine = log.split('\n').filter((line) => line.includes(' /socket.io/" '))
  for (const node of cluster.nodes) {
    t.ok(engine.some((line) => line.includes(`upstream=${new URL(node.url).host}`)), `nginx sent Engine.IO requests to node ${node.name}`)
  }
  t.same(engine.filter((line) => line.includes('" 400 ')), [], 'no Engine.IO request reached a node that does not hold its connection (HTTP 400)')
})

t.test('the README shows the nginx configuration that this test runs', async (t) => {
  const root = join(__dirname, '..')
  const config = readFileSync(join(root, 'examples', 'cluster', 'nginx.conf'), 'utf8')
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const shown = /```nginx\n([\s\S]*?)\n```/.exec(readme)?.[1]
  t.equal(shown, config.slice(config.indexOf('worker_processes')).trimEnd(), 'README.md\'s nginx block is examples/cluster/nginx.conf, after its opening comment')
})
