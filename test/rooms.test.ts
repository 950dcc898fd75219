import t from 'tap'
import { connect, once } from './helpers/client'
import { login, me, startServer } from './helpers/server'

// lib/rooms.ts: the session room and the user room each socket joins.

t.test('rooms: each socket joins its session room, custom names and the user room', async (t) => {
  const server = await startServer(t, {
    sessionRoom: (id) => `s/${id}`,
    userRoom: (session) => session.user === undefined ? undefined : `user:${session.user.id}`
  })
  server.app.io.of('/admin')
  const firstTab = await login(server.url, 'Ada')
  const secondTab = await login(server.url, 'Ada') // another session of the same user
  const anonymous = await connect(t, server.url)
  const a = await connect(t, server.url, { cookie: firstTab })
  const b = await connect(t, server.url, { cookie: secondTab, namespace: '/admin' })
  const { sessionId } = await me(server.url, firstTab)

  const rooms = (await server.app.io.fetchSockets()).find((s) => s.id === a.id)?.rooms
  t.ok(rooms?.has(`s/${sessionId}`), 'the session room')
  t.ok(rooms?.has('user:id-Ada'), 'the user room')
  t.equal((await server.app.sessionSockets(sessionId)).length, 1, 'sessionSockets')

  const got = once(a, 'notice')
  server.app.io.to('user:id-Ada').emit('notice', 'hi')
  t.equal(await got, 'hi', 'a user room emit reaches the user')
  const gotAdmin = once(b, 'notice')
  server.app.io.of('/admin').to('user:id-Ada').emit('notice', 'hi admin')
  t.equal(await gotAdmin, 'hi admin', 'rooms are per namespace')
  let leaked = false
  anonymous.on('notice', () => { leaked = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(leaked, 'nobody else')
})
