import t from 'tap'
import { Manager } from 'socket.io-client'
import { client, connect, connected, once, sleep, transportModes } from './helpers/client'
import { sessionIdOf, setup } from './helpers/lifecycle'
import { captureLogs, login, me, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

// lib/session-sweep.ts: every validateInterval, the sessions of the connected sockets are checked (expiry) and kept alive.

t.test('sweep: a session destroyed while connected ends its sockets in every namespace', async (t) => {
  const ended: Array<[string, string]> = []
  const server = await setup(t, { validateInterval: 30, onSessionEnd: (id, reason) => { ended.push([id, reason]) } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const sockets = [await connect(t, server.url, { cookie }), await connect(t, server.url, { cookie, namespace: '/admin' })]
  const bystander = await connect(t, server.url, { cookie: await login(server.url, 'Bob') })
  const reasons = Promise.all(sockets.map(async (socket) => await once(socket, 'disconnect')))
  server.store.data.delete(id)
  t.same(await reasons, ['transport close', 'transport close'])
  t.same(ended, [[id, 'destroyed']], 'onSessionEnd once for the session')
  t.ok(bystander.connected)
})

for (const { name, transports } of transportModes) {
  t.test(`${name}: sweep: an expired session ends its sockets, which reconnect and are refused`, async (t) => {
    const ended: Array<[string, string]> = []
    const server = await setup(t, {
      validateInterval: 40,
      keepAlive: false,
      authorize: (session) => session.user !== undefined,
      onSessionEnd: (id, reason) => { ended.push([id, reason]) }
    }, { cookie: { secure: false, maxAge: 300 } })
    const cookie = await login(server.url)
    const id = await sessionIdOf(server.url, cookie)
    const socket = client(t, server.url, { cookie, transports, reconnection: true })
    await once(socket, 'connect')
    t.equal(await once(socket, 'disconnect', 2000), 'transport close', 'closed when the session expired')
    const err = await once<{ data?: { code?: string } }>(socket, 'connect_error', 3000)
    t.equal(err.data?.code, 'SESSION_UNAUTHORIZED', 'the reconnection is refused')
    t.same(ended, [[id, 'expired']])
    t.notOk(server.store.data.has(id), 'the expired session is gone from the store')
  })
}

t.test('keepAlive: a connected socket keeps its session alive past maxAge; a disconnected one expires', async (t) => {
  const server = await setup(t, { validateInterval: 50 }, { cookie: { secure: false, maxAge: 400 }, rolling: false })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  await sleep(1000)
  t.ok(socket.connected, 'still connected')
  t.ok(new Date(server.store.read(id)?.cookie.expires).getTime() > Date.now(), 'the stored expiry moved')
  const sessionNow = await me(server.url, cookie)
  t.equal(sessionNow.user?.name, 'Ada', 'still logged in for HTTP, 2.5 maxAge later')
  socket.disconnect()
  await sleep(600)
  t.equal((await me(server.url, cookie)).user, null, 'expired on schedule once nobody is connected')
})

t.test('keepAlive never overwrites newer data', async (t) => {
  const server = await setup(t, { validateInterval: 30 }, { cookie: { secure: false, maxAge: 300 }, rolling: false })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  await connect(t, server.url, { cookie })
  for (let i = 0; i < 5; i++) {
    await fetch(`${server.url}/note`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ note: `v${i}` }) })
    await sleep(40)
    t.equal(server.store.read(id)?.note, `v${i}`)
  }
})

t.test('sweep: one store read per distinct session per interval, not one per socket', async (t) => {
  const server = await setup(t, { validateInterval: 300, keepAlive: false })
  const ada = await login(server.url, 'Ada')
  const bob = await login(server.url, 'Bob')
  for (let i = 0; i < 4; i++) await connect(t, server.url, { cookie: ada, namespace: i % 2 === 0 ? '/' : '/admin' })
  for (let i = 0; i < 3; i++) await connect(t, server.url, { cookie: bob })
  await connect(t, server.url) // a fresh, unsaved session: nothing to check
  // Measure one whole interval, between two sweeps (connecting may take longer than one on a busy machine).
  const start = server.store.calls.get
  for (let i = 0; i < 100 && server.store.calls.get === start; i++) await sleep(10)
  await sleep(100)
  const reads = server.store.calls.get
  await sleep(300)
  t.equal(server.store.calls.get - reads, 2, 'two sessions, two reads')
})

t.test('sweep: an unreachable store disconnects nobody, and the next interval works again', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 30 }, { session: { store }, fastify: { logger } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  store.failing = true
  await sleep(150)
  t.ok(socket.connected, 'nobody disconnected while the store is down')
  t.ok(lines.some((line) => line.level === 40 && line.msg.includes('the store failed')), 'logged')
  store.failing = false
  const closed = once(socket, 'disconnect')
  store.data.delete(id)
  t.equal(await closed, 'transport close', 'once back, the sweep works again')
})

t.test('keepAlive renews a session once it has used half its maxAge, not at every check', async (t) => {
  const server = await setup(t, { validateInterval: 30 }, { cookie: { secure: false, maxAge: 60_000 } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  await connect(t, server.url, { cookie })
  const writes = server.store.calls.set
  const expires = server.store.read(id)?.cookie.expires
  await sleep(200)
  t.equal(server.store.calls.set, writes, 'a fresh session is not rewritten')
  t.equal(server.store.read(id)?.cookie.expires, expires)
})

t.test('sweep: with more than a thousand sockets (gathered a slice at a time), a session seen after the first slice is still checked', async (t) => {
  const server = await setup(t, { validateInterval: 100, keepAlive: false })
  server.app.io.of(/^\/n\d+$/) // one namespace per socket: 1000 sockets over one connection
  const ada = await login(server.url, 'Ada')
  const manager = new Manager(server.url, { transports: ['websocket'], extraHeaders: { cookie: ada }, reconnection: false })
  const many = Array.from({ length: 1000 }, (_, i) => manager.socket(`/n${i}`))
  t.teardown(() => { for (const socket of many) socket.disconnect() })
  await Promise.all(many.map(async (socket) => await connected(socket.connect())))
  // Bob's socket is in a namespace created after Ada's: the sweep reaches it after yielding once.
  const bob = await login(server.url, 'Bob')
  const bobId = await sessionIdOf(server.url, bob)
  const late = await connect(t, server.url, { cookie: bob, namespace: '/n1000' })
  t.equal([...server.app.io._nsps.values()].reduce((count, nsp) => count + nsp.sockets.size, 0), 1001, 'the node holds 1001 sockets')
  const closed = once(late, 'disconnect', 3000)
  server.store.data.delete(bobId)
  t.equal(await closed, 'transport close', 'the session seen after the first thousand sockets was checked and ended')
  await sleep(250) // two more sweeps
  t.ok(many.every((socket) => socket.connected), 'Ada\'s thousand sockets are all still connected')
})

t.test('sweep: a store that does not answer holds no sweep for good: logged after the timeout, nobody disconnected, its late answer still used', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const store = new HangingStore()
  t.teardown(() => { store.answer() })
  const server = await startServer(t, { validateInterval: 50, keepAlive: false }, { session: { store }, fastify: { logger } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  store.hanging = true
  const message = 'socket.io session: sweep skipped, the store failed and nobody was disconnected for it'
  let warning: typeof lines[number] | undefined
  for (let i = 0; i < 80 && warning === undefined; i++) { // 8 s at most: the sweep waits 5 s (its floor)
    await sleep(100)
    warning = lines.find((line) => line.msg === message)
  }
  t.equal((warning?.err as { message?: string } | undefined)?.message, 'the session store did not answer within 5000 ms', 'logged with the timeout')
  t.equal(warning?.failures, 1, 'one session not checked')
  t.ok(socket.connected, 'nobody disconnected')
  const closed = once(socket, 'disconnect')
  store.data.delete(id)
  store.answer() // the store comes back, and answers: the session is gone
  t.equal(await closed, 'transport close', 'the late answer ends the destroyed session')
})

/** A store whose reads wait, while `hanging`, until `answer()`: a store that stopped answering. */
class HangingStore extends TestStore {
  hanging = false
  private readonly waiting: Array<() => void> = []

  override get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
    if (this.hanging) this.waiting.push(() => { super.get(sessionId, callback) })
    else super.get(sessionId, callback)
  }

  answer (): void {
    this.hanging = false
    for (const read of this.waiting.splice(0)) read()
  }
}
