import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { createTrustedProxy } from '../lib/trust-proxy'
import type { TrustProxy } from '../types/index'

// Table tests of the trustProxy semantics (no server): which peers may set X-Forwarded-Host and
// X-Forwarded-Proto, as Fastify's own trustProxy option decides.

interface Peer { address?: string, encrypted?: boolean, noSocket?: boolean }

/** A request as the handshake sees it: headers, and the socket of the peer that sent it. */
function request (peer: Peer, headers: Record<string, string | string[]>): IncomingMessage {
  const socket = peer.noSocket === true ? undefined : { remoteAddress: peer.address, encrypted: peer.encrypted }
  return { headers, socket } as unknown as IncomingMessage
}

const forwarded = { host: 'internal:3000', 'x-forwarded-host': 'app.example', 'x-forwarded-proto': 'https' }

t.test('which peers are trusted to forward (table)', async (t) => {
  const cases: Array<[trustProxy: TrustProxy | undefined, address: string, trusted: boolean, why: string]> = [
    [undefined, '127.0.0.1', false, 'not set: no proxy is trusted'],
    [false, '127.0.0.1', false, 'false'],
    [true, '203.0.113.9', true, 'true: every peer'],
    [1, '127.0.0.1', false, 'a hop count cannot vouch for the immediate peer, so trusts no header'],
    [0, '127.0.0.1', false, 'a hop count of 0'],
    ['127.0.0.1', '127.0.0.1', true, 'an address'],
    ['127.0.0.1', '127.0.0.2', false, 'another address'],
    ['127.0.0.1', '::ffff:127.0.0.1', true, 'an IPv4 address, the peer seen as IPv4-mapped IPv6'],
    ['10.0.0.0/8', '10.20.30.40', true, 'a subnet (CIDR)'],
    ['10.0.0.0/8', '11.0.0.1', false, 'outside the subnet'],
    ['10.0.0.0/255.0.0.0', '10.1.2.3', true, 'a subnet with a netmask'],
    ['10.0.0.1, 192.168.0.0/16', '192.168.4.5', true, 'a comma list: the second entry'],
    ['10.0.0.1,192.168.0.0/16', '10.0.0.1', true, 'a comma list without spaces: the first entry'],
    ['10.0.0.1, 192.168.0.0/16', '172.16.0.1', false, 'a comma list: in neither entry'],
    ['loopback', '::1', true, 'a named range (loopback), IPv6'],
    ['loopback', '127.0.0.1', true, 'a named range (loopback), IPv4'],
    ['uniquelocal', '10.1.1.1', true, 'a named range (uniquelocal)'],
    [['loopback', '203.0.113.0/24'], '203.0.113.77', true, 'an array of entries'],
    [['loopback', '203.0.113.0/24'], '198.51.100.1', false, 'an array: in no entry'],
    [['fd00::/8'], 'fd12::1', true, 'an IPv6 subnet'],
    [['fd00::/8'], 'fe80::1', false, 'outside the IPv6 subnet'],
    [[], '127.0.0.1', false, 'an empty list'],
    [(address) => address === '198.51.100.7', '198.51.100.7', true, 'a function that says yes'],
    [(address) => address === '198.51.100.7', '198.51.100.8', false, 'a function that says no']
  ]
  for (const [trustProxy, address, trusted, why] of cases) {
    const proxy = createTrustedProxy(trustProxy)
    const req = request({ address }, forwarded)
    t.same([proxy.host(req), proxy.protocol(req)], trusted ? ['app.example', 'https'] : ['internal:3000', 'http'],
      `${why}: ${typeof trustProxy === 'function' ? 'function' : JSON.stringify(trustProxy)} with peer ${address}`)
  }
})

t.test('a function is asked about the immediate peer, as hop 0', async (t) => {
  const asked: Array<[string, number]> = []
  const proxy = createTrustedProxy((address, hop) => { asked.push([address, hop]); return true })
  t.equal(proxy.host(request({ address: '192.0.2.1' }, forwarded)), 'app.example')
  t.equal(proxy.protocol(request({ address: '192.0.2.2' }, forwarded)), 'https')
  t.same(asked, [['192.0.2.1', 0], ['192.0.2.2', 0]])
  asked.length = 0
  t.equal(proxy.host(request({ address: '192.0.2.3' }, { host: 'direct.example' })), 'direct.example')
  t.same(asked, [], 'not asked when there is no forwarded header to trust')
})

t.test('forwarded headers with several hops: the last entry (the one the trusted proxy added) is read', async (t) => {
  const proxy = createTrustedProxy(true)
  const cases: Array<[host: string, proto: string, expected: [string, string]]> = [
    ['app.example', 'https', ['app.example', 'https']],
    ['evil.example, app.example', 'http, https', ['app.example', 'https']],
    ['evil.example,app.example', 'https,http', ['app.example', 'http']],
    ['  app.example  ', ' https ', ['app.example', 'https']],
    ['a.example, b.example, c.example:8443', 'http, http, https', ['c.example:8443', 'https']]
  ]
  for (const [host, proto, expected] of cases) {
    const req = request({ address: '127.0.0.1' }, { host: 'internal', 'x-forwarded-host': host, 'x-forwarded-proto': proto })
    t.same([proxy.host(req), proxy.protocol(req)], expected, `${JSON.stringify(host)} / ${JSON.stringify(proto)}`)
  }
})

t.test('without a trusted forwarded header: Host as sent, and the protocol of the connection itself', async (t) => {
  const trustAll = createTrustedProxy(true)
  t.equal(trustAll.host(request({ address: '127.0.0.1' }, { host: 'direct.example' })), 'direct.example', 'no X-Forwarded-Host')
  t.equal(trustAll.host(request({ address: '127.0.0.1' }, {})), undefined, 'no Host at all')
  t.equal(trustAll.protocol(request({ address: '127.0.0.1' }, {})), 'http', 'plain connection')
  t.equal(trustAll.protocol(request({ address: '127.0.0.1', encrypted: true }, {})), 'https', 'TLS connection')

  const trustNone = createTrustedProxy(undefined)
  t.equal(trustNone.protocol(request({ address: '127.0.0.1', encrypted: true }, { 'x-forwarded-proto': 'http' })), 'https',
    'an untrusted X-Forwarded-Proto cannot downgrade a TLS connection')
  t.equal(trustNone.protocol(request({ address: '127.0.0.1' }, { 'x-forwarded-proto': 'https' })), 'http',
    'nor upgrade a plain one')

  const trustLoopback = createTrustedProxy('loopback')
  t.equal(trustLoopback.host(request({}, forwarded)), 'internal:3000', 'a socket without a remote address (closed) is not trusted')
  t.equal(trustLoopback.host(request({ noSocket: true }, forwarded)), 'internal:3000', 'nor a request without a socket')
  t.equal(trustLoopback.protocol(request({ noSocket: true }, forwarded)), 'http', 'whose protocol is http')
  t.equal(trustAll.host(request({ address: '127.0.0.1' }, { host: 'direct.example', 'x-forwarded-host': ['a.example', 'b.example'] })),
    'direct.example', 'a header that is not a single string is ignored')
})
