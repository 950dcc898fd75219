import t from 'tap'
import { connect, handshake, refused } from './helpers/client'
import { captureLogs, countSessionLoads, login, startServer } from './helpers/server'

const refusedStatus = { polling: 403, websocket: 400 }

t.test('default: same host and port allowed, anything else refused before any session work', async (t) => {
  let loads = { count: 0 }
  const server = await startServer(t, {}, { before: (app) => { loads = countSessionLoads(app) } })
  const port = new URL(server.url).port
  const host = `127.0.0.1:${port}`

  for (const transport of ['polling', 'websocket'] as const) {
    const allowed = await handshake(server.url, transport, { host, origin: `http://127.0.0.1:${port}` })
    t.has(allowed, { status: transport === 'polling' ? 200 : 101, upgraded: transport === 'websocket' }, `${transport}: same origin`)
    const tlsProxied = await handshake(server.url, transport, { host, origin: `https://127.0.0.1:${port}` })
    t.equal(tlsProxied.status, transport === 'polling' ? 200 : 101, `${transport}: the scheme is not compared`)
    const noOrigin = await handshake(server.url, transport, { host })
    t.equal(noOrigin.status, transport === 'polling' ? 200 : 101, `${transport}: no Origin (not a browser) is allowed`)

    loads.count = 0
    for (const origin of [`http://evil.example:${port}`, `http://127.0.0.1:${Number(port) + 1}`, 'http://127.0.0.1', 'null', 'not a url']) {
      const result = await handshake(server.url, transport, { host, origin })
      // engine.io answers a refused upgrade with 400 and closes; a refused polling handshake gets 403
      t.has(result, { status: refusedStatus[transport], upgraded: false }, `${transport}: ${origin} refused`)
    }
    t.equal(loads.count, 0, `${transport}: refused handshakes never load a session`)
  }

  // Default ports: Origin without a port matches a Host that names the scheme's default port.
  t.equal((await handshake(server.url, 'polling', { host: 'app.example:443', origin: 'https://app.example' })).status, 200)
  t.equal((await handshake(server.url, 'polling', { host: 'app.example', origin: 'http://app.example:80' })).status, 200)
  t.equal((await handshake(server.url, 'polling', { host: 'app.example', origin: 'http://app.example:8080' })).status, 403)
  t.equal((await handshake(server.url, 'polling', { host: '[::1]:8080', origin: 'http://[::1]:8080' })).status, 200)
})

t.test('a foreign origin cannot open a socket with the user\'s cookie, on either transport', async (t) => {
  const server = await startServer(t, { authorize: (session) => session.user !== undefined })
  const cookie = await login(server.url)
  const origin = 'http://attacker.example'
  const ws = await refused(t, server.url, { cookie, transports: ['websocket'], headers: { origin } })
  t.equal(ws.message, 'websocket error', 'websocket: the upgrade is refused')
  const polling = await refused(t, server.url, { cookie, transports: ['polling', 'websocket'], headers: { origin } })
  t.equal(polling.message, 'xhr poll error', 'polling: the handshake is refused')
  t.equal((polling.description as { status?: number } | undefined)?.status ?? 403, 403)
  t.equal(server.app.io.of('/').sockets.size, 0, 'no socket was created')
})

t.test('allowedOrigins: a list replaces the default', async (t) => {
  const server = await startServer(t, { allowedOrigins: ['https://app.example', 'HTTP://Other.example/'] })
  const host = new URL(server.url).host
  t.equal((await handshake(server.url, 'polling', { host, origin: 'https://app.example' })).status, 200)
  t.equal((await handshake(server.url, 'polling', { host, origin: 'http://other.example' })).status, 200, 'case and trailing slash do not matter')
  t.equal((await handshake(server.url, 'polling', { host, origin: `http://${host}` })).status, 403, 'same origin is no longer implied')
  t.has(await handshake(server.url, 'websocket', { host, origin: 'https://evil.example' }), { status: 400, upgraded: false })
  t.equal((await handshake(server.url, 'polling', { host })).status, 200, 'no Origin: allowed')
})

t.test('allowedOrigins: a function decides, and is called only when an Origin is present', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, {
    allowedOrigins: (origin, request) => { seen.push(origin); return origin.endsWith('.trusted.example') && request.url !== undefined }
  })
  const host = new URL(server.url).host
  t.equal((await handshake(server.url, 'polling', { host, origin: 'https://a.trusted.example' })).status, 200)
  t.has(await handshake(server.url, 'websocket', { host, origin: 'https://evil.example' }), { status: 400, upgraded: false })
  t.equal((await handshake(server.url, 'polling', { host })).status, 200)
  t.same(seen, ['https://a.trusted.example', 'https://evil.example'])
})

t.test('behind a trusted proxy, the forwarded host is the one compared', async (t) => {
  const server = await startServer(t, { trustProxy: true })
  const forwarded = { host: 'internal:3000', 'x-forwarded-host': 'app.example', origin: 'https://app.example' }
  t.equal((await handshake(server.url, 'polling', forwarded)).status, 200)
  const untrusted = await startServer(t)
  t.equal((await handshake(untrusted.url, 'polling', forwarded)).status, 403, 'an untrusted X-Forwarded-Host is ignored')
})

t.test('a refused handshake is logged at info level with the origin', async (t) => {
  const { lines, logger } = captureLogs('info')
  const server = await startServer(t, {}, { fastify: { logger } })
  await handshake(server.url, 'polling', { host: new URL(server.url).host, origin: 'http://evil.example' })
  const entry = lines.find((line) => line.msg.includes('origin not allowed'))
  t.equal(entry?.level, 30, 'info')
  t.equal(entry?.origin, 'http://evil.example')
  const socket = await connect(t, server.url, { headers: { origin: server.url } })
  t.ok(socket.connected, 'the same origin still connects')
})
