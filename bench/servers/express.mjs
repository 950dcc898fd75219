// (c) The Express 5 + express-session recipe of Socket.IO's documentation
// (https://socket.io/how-to/use-with-express-session): the session middleware on the engine.io
// handshake only (`req._query.sid === undefined`), a 401 when the session has no user, and the
// socket joins its session's room; POST /logout destroys the session and disconnects that room.
// `resave: false, saveUninitialized: false`, as express-session recommends (the recipe's
// `resave: true` would write the session to the store on every handshake).
import express from 'express'
import session from 'express-session'
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { listenWithControl } from './control.mjs'
import { logStore } from './store-log.mjs'

const store = new session.MemoryStore()
const storeCommands = logStore(store)
const app = express()
const sessionMiddleware = session({
  store,
  secret: 'a secret with at least 32 characters of entropy',
  resave: false,
  saveUninitialized: false,
  cookie: { secure: false, maxAge: 24 * 3600 * 1000 }
})
app.use(sessionMiddleware)
app.post('/login', (req, res) => {
  req.session.user = { id: Math.random().toString(36).slice(2) }
  res.send('ok')
})
app.post('/logout', (req, res) => {
  const room = `session:${req.session.id}`
  req.session.destroy(() => {
    io.in(room).disconnectSockets(true)
    res.send('ok')
  })
})

const server = createServer(app)
const io = new Server(server)
io.of('/chat')

function onlyForHandshake (middleware) {
  return (req, res, next) => {
    const isHandshake = req._query.sid === undefined
    if (isHandshake) middleware(req, res, next)
    else next()
  }
}
io.engine.use(onlyForHandshake(sessionMiddleware))
io.engine.use(onlyForHandshake((req, res, next) => {
  if (req.session.user !== undefined) {
    next()
  } else {
    res.writeHead(401)
    res.end()
  }
}))
io.on('connection', (socket) => {
  socket.join(`session:${socket.request.session.id}`)
})

listenWithControl(server, io, storeCommands)
