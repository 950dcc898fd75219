import t from 'tap'
import { connect, disconnectReason } from './helpers/client'
import { login, startServer } from './helpers/server'

// lib/session-binding.ts: a request that ends on another session id than it began with ends the old id's sockets.

t.test('a request that regenerates or destroys the session by other means disconnects the old id\'s sockets', async (t) => {
  const server = await startServer(t, {}, {
    after: (app) => {
      app.post('/raw-regenerate', async (request) => {
        await request.session.regenerate()
        request.session.user = { id: 'x', name: 'X' }
        return { ok: true }
      })
      app.post('/raw-destroy', async (request) => {
        await request.session.destroy()
        return { ok: true }
      })
      app.get('/untouched', async () => ({ ok: true }))
    }
  })
  for (const route of ['/raw-regenerate', '/raw-destroy']) {
    const cookie = await login(server.url)
    const socket = await connect(t, server.url, { cookie })
    await fetch(`${server.url}/untouched`, { headers: { cookie } })
    t.ok(socket.connected, 'a request that keeps the id leaves the sockets alone')
    const reason = disconnectReason(socket)
    await fetch(`${server.url}${route}`, { method: 'POST', headers: { cookie } })
    t.equal(await reason, 'io server disconnect', route)
  }
})
