// (a) Bare Socket.IO on node:http: no session, no authorization, no origin check.
// POST /logout disconnects the room `session:bench` with `io.in(room).disconnectSockets(true)`: the
// reference for the logout fan-out. Sockets join that room only when their handshake asks for it
// (`?room=1`), so the other metrics measure Socket.IO with nothing added.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { listenWithControl } from './control.mjs'

const room = 'session:bench'

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/logout') {
    io.in(room).disconnectSockets(true)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('ok')
    return
  }
  res.writeHead(404)
  res.end()
})
const io = new Server(server)
io.of('/chat') // a second namespace, as in the other servers
io.on('connection', (socket) => {
  if (socket.handshake.query.room !== undefined) socket.join(room)
})

listenWithControl(server, io)
