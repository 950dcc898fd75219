import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { assertOrigins, canonicalOrigin, createOriginCheck } from '../lib/origin'
import { createTrustedProxy } from '../lib/trust-proxy'
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

// Table tests of the pure functions (no server): the edge cases the handshakes above reach only indirectly.

/** A handshake request as the origin check reads it: its headers and the peer's address. */
function request (headers: Record<string, string>): IncomingMessage {
  return { headers, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage
}

t.test('default check (table): the Origin must name the host and port the handshake was sent to', async (t) => {
  const check = createOriginCheck(undefined, createTrustedProxy(undefined))
  const cases: Array<[origin: string, host: string | undefined, allowed: boolean, why: string]> = [
    ['http://app.example:3000', 'app.example:3000', true, 'same host and port'],
    ['https://app.example:3000', 'app.example:3000', true, 'the scheme is not compared'],
    ['HTTP://APP.Example:3000', 'app.example:3000', true, 'case of the Origin'],
    ['http://app.example:3000', 'APP.EXAMPLE:3000', true, 'case of the Host'],
    ['http://app.example:3000/', 'app.example:3000', true, 'a trailing slash'],
    ['http://app.example:3001', 'app.example:3000', false, 'another port'],
    ['http://evil.example:3000', 'app.example:3000', false, 'another host'],
    ['http://app.example.evil:3000', 'app.example:3000', false, 'a host that only starts alike'],
    ['http://app.example', 'app.example', true, 'both without a port'],
    ['http://app.example:80', 'app.example', true, 'default port 80 written out in the Origin'],
    ['https://app.example', 'app.example:443', true, 'default port 443 written out in the Host'],
    ['http://app.example', 'app.example:80', true, 'default port 80 written out in the Host'],
    ['https://app.example', 'app.example:80', false, 'https (443) to port 80'],
    ['http://app.example:8080', 'app.example', false, 'a non-default port against a Host without one'],
    ['http://app.example', 'app.example:8080', false, 'a Host with a non-default port against an Origin without one'],
    ['http://[::1]:8080', '[::1]:8080', true, 'IPv6 with a port'],
    ['http://[::1]', '[::1]', true, 'IPv6 without a port'],
    ['http://[0:0:0:0:0:0:0:1]:8080', '[::1]:8080', true, 'IPv6 written out in full'],
    ['http://[::1]:8080', '[::1]', false, 'IPv6: a port against a Host without one'],
    ['http://[::1]', '[::1]:8080', false, 'IPv6: no port against a Host with a non-default one'],
    ['http://[::2]:8080', '[::1]:8080', false, 'IPv6: another address'],
    ['http://127.0.0.1:8080', '[::1]:8080', false, 'IPv4 against IPv6'],
    ['http://xn--bcher-kva.example', 'xn--bcher-kva.example', true, 'IDN: punycode on both sides'],
    ['http://b\u00fccher.example', 'xn--bcher-kva.example', true, 'IDN: a Unicode Origin against a punycode Host'],
    ['http://xn--bcher-kva.example', 'bucher.example', false, 'IDN: not the ASCII look-alike'],
    ['null', 'app.example', false, 'Origin: null (sandboxed or file page)'],
    ['not a url', 'app.example', false, 'garbage'],
    ['', 'app.example', false, 'an empty Origin'],
    ['http://app.example', undefined, false, 'no Host header'],
    ['http://app.example', '', false, 'an empty Host header']
  ]
  for (const [origin, host, allowed, why] of cases) {
    const headers: Record<string, string> = host === undefined ? {} : { host }
    t.equal(check(origin, request(headers)), allowed, `${why}: ${JSON.stringify(origin)} to Host ${JSON.stringify(host)}`)
  }
})

t.test('default check behind a proxy compares the forwarded host only when the proxy is trusted', async (t) => {
  const headers = { host: 'internal:3000', 'x-forwarded-host': 'app.example' }
  t.equal(createOriginCheck(undefined, createTrustedProxy(true))('https://app.example', request(headers)), true)
  t.equal(createOriginCheck(undefined, createTrustedProxy(false))('https://app.example', request(headers)), false)
  t.equal(createOriginCheck(undefined, createTrustedProxy(false))('http://internal:3000', request(headers)), true)
})

t.test('allowedOrigins list (table): entries and Origins compared in the form a browser sends', async (t) => {
  const check = createOriginCheck(
    ['https://App.Example/', 'http://plain.example:80', 'https://b\u00fccher.example', 'http://[0:0::1]:3000', 'capacitor://Localhost', 'null'],
    createTrustedProxy(undefined)
  )
  const cases: Array<[origin: string, allowed: boolean, why: string]> = [
    ['https://app.example', true, 'an entry in another case, with a trailing slash'],
    ['HTTPS://APP.EXAMPLE', true, 'an Origin in another case'],
    ['https://app.example/', true, 'an Origin with a trailing slash'],
    ['http://app.example', false, 'the list compares the scheme'],
    ['https://app.example:8443', false, 'another port'],
    ['http://plain.example', true, 'an entry with its default port written out'],
    ['https://xn--bcher-kva.example', true, 'an IDN entry, as the browser sends it (punycode)'],
    ['http://[::1]:3000', true, 'an IPv6 entry written out in full'],
    ['capacitor://localhost', true, 'a non-special scheme (native app shells)'],
    ['null', true, 'null, named by the list'],
    ['https://evil.example', false, 'not in the list'],
    ['', false, 'an empty Origin']
  ]
  const anyRequest = request({ host: 'app.example' })
  for (const [origin, allowed, why] of cases) {
    t.equal(check(origin, anyRequest), allowed, `${why}: ${JSON.stringify(origin)}`)
  }
  t.equal(createOriginCheck([], createTrustedProxy(undefined))('http://app.example', request({ host: 'app.example' })), false,
    'an empty list refuses every Origin, even the same one')
})

t.test('allowedOrigins function: it is the check itself', async (t) => {
  const decide = (origin: string): boolean => origin === 'https://ok.example'
  t.equal(createOriginCheck(decide, createTrustedProxy(undefined)), decide)
})

t.test('canonicalOrigin (table): an entry as a browser would send it, or undefined if it is not an origin', async (t) => {
  const cases: Array<[entry: string, canonical: string | undefined]> = [
    ['null', 'null'],
    ['https://App.Example', 'https://app.example'],
    ['https://app.example/', 'https://app.example'],
    ['https://app.example:443', 'https://app.example'],
    ['http://app.example:80', 'http://app.example'],
    ['ws://app.example:80', 'ws://app.example'],
    ['http://app.example:8080', 'http://app.example:8080'],
    ['http://[::1]:3000', 'http://[::1]:3000'],
    ['http://[0:0::1]', 'http://[::1]'],
    ['https://b\u00fccher.example', 'https://xn--bcher-kva.example'],
    ['capacitor://localhost', 'capacitor://localhost'],
    ['APP://Local', 'app://local'],
    ['NULL', undefined],
    ['', undefined],
    ['app.example', undefined],
    ['//app.example', undefined],
    ['https://app.example/path', undefined],
    ['https://app.example?query', undefined],
    ['https://app.example#fragment', undefined],
    ['https://user@app.example', undefined],
    ['https://*.app.example', undefined],
    ['https://app .example', undefined],
    ['https://app.example\\', undefined],
    ['https://app.example:99999', undefined],
    ['https://[::1', undefined],
    ['app://:80', undefined],
    ['file://localhost', undefined]
  ]
  for (const [entry, canonical] of cases) {
    t.equal(canonicalOrigin(entry), canonical, JSON.stringify(entry))
  }
})

t.test('assertOrigins: true for a list of origins, else the error for the first entry that is not one', async (t) => {
  const fail = (entry: string): Error => new Error(`bad: ${entry}`)
  t.equal(assertOrigins([], fail), true)
  t.equal(assertOrigins(['https://app.example', 'null'], fail), true)
  t.throws(() => assertOrigins(['https://app.example', 'https://*.example', 'ftp://x/y'], fail), { message: 'bad: https://*.example' })
})
