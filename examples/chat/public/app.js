/* global io */
// The chat page: plain browser JavaScript, no build step. The Socket.IO client comes from the server
// itself (/socket.io/socket.io.js). The session cookie is HttpOnly: the page never sees it, the browser
// sends it with the login request, and with every Socket.IO handshake.
'use strict'

const $ = (selector) => document.querySelector(selector)

let socket = null
let loggingOut = false
/** Why the server ended this tab's socket: the plugin's 'session:end' event arrives just before the disconnect. */
let endReason = null

/** What each reason of 'session:end' means to the person in front of this tab. */
const endMessages = {
  logout: 'You logged out in another tab.',
  regenerated: 'You logged in again in another tab.',
  expired: 'Your session expired.',
  destroyed: 'Your session was closed on the server.',
  unauthorized: 'You no longer have access.',
  overloaded: 'This tab sent too many messages at once.'
}

// ------------------------------------------------------------------ page state

function showLogin () {
  // This tab receives nothing any more: forget who is online and this user's notifications.
  $('#presence').innerHTML = '<li class="muted">Log in to see who is online</li>'
  $('#notices').innerHTML = '<li class="muted">Messages for your user only appear here</li>'
  $('#chat').hidden = true
  $('#login').hidden = false
  $('#name').focus()
}

function showChat (user) {
  $('#me').textContent = user.name
  $('#login').hidden = true
  $('#chat').hidden = false
  $('#message').focus()
}

function setStatus (state, text) {
  $('#status').dataset.state = state
  $('#status').textContent = text
}

/** The banner: what happened to this tab's socket. `kind` 'alert' (red) or 'info' (blue). */
function showBanner (text, { kind = 'alert', reconnect = false } = {}) {
  $('#banner').className = kind
  $('#banner-text').textContent = text
  $('#reconnect').hidden = !reconnect
  $('#banner').hidden = false
}

function hideBanner () {
  $('#banner').hidden = true
}

function append (list, node) {
  list.querySelector('.muted')?.remove()
  list.append(node)
  list.scrollTop = list.scrollHeight
}

const time = (at) => new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })

// ------------------------------------------------------------------ the socket

function connect () {
  if (socket === null) {
    socket = io({ autoConnect: false })
    listen(socket)
  }
  setStatus('connecting', 'Connecting…')
  socket.connect()
}

function listen (socket) {
  socket.on('connect', () => {
    endReason = null
    hideBanner()
  })

  // The plugin says why it ends this socket, before it disconnects it.
  socket.on('session:end', ({ reason }) => {
    endReason = reason
    // An expired or destroyed session closes the transport, and Socket.IO would try to reconnect (to be
    // refused): this tab knows better, and stops.
    if (reason === 'expired' || reason === 'destroyed') socket.disconnect()
  })

  // The server's first message: the user of the session it loaded during the handshake.
  socket.on('hello', ({ user }) => {
    setStatus('connected', `Connected as ${user.name}`)
    showChat(user)
  })

  socket.on('disconnect', (reason) => {
    if (reason === 'io server disconnect' || endReason !== null) {
      // The server ended this socket, and said why (session:end): logged out in this or another tab,
      // on any instance, an expired session... Socket.IO does not reconnect by itself after this.
      setStatus('session-ended', 'Disconnected: session ended')
      if (loggingOut) {
        showBanner('You logged out: the server disconnected the sockets of every tab of your session.', { kind: 'info' })
      } else {
        const message = endMessages[endReason] ?? 'The server disconnected this tab.'
        showBanner(`Your session ended: ${message} (session:end "${endReason ?? 'none'}", then ${reason})`, { reconnect: true })
      }
      showLogin()
    } else if (reason !== 'io client disconnect') {
      setStatus('connecting', `Connection lost (${reason}), reconnecting…`)
    }
  })

  socket.on('connect_error', (err) => {
    if (err.data?.code === 'SESSION_UNAUTHORIZED') {
      // The namespace middleware of the plugin refused the socket: `authorize` said no.
      setStatus('refused', 'Refused: not logged in')
      showBanner('The server refused this socket: SESSION_UNAUTHORIZED (no logged-in session). Log in again.', { reconnect: true })
      showLogin()
    } else if (err.data?.code === 'SESSION_ERROR') {
      setStatus('refused', 'Refused: session error')
      showBanner('The server could not load the session (SESSION_ERROR).', { reconnect: true })
    } else {
      setStatus('connecting', `Cannot reach the server (${err.message}), retrying…`)
    }
  })

  socket.on('chat', ({ from, text, at }) => {
    const item = document.createElement('li')
    const who = document.createElement('span')
    who.className = 'from'
    who.textContent = from
    const when = document.createElement('span')
    when.className = 'at'
    when.textContent = time(at)
    item.append(who, document.createTextNode(text), when)
    append($('#messages'), item)
  })

  socket.on('presence', (users) => {
    const list = $('#presence')
    list.replaceChildren(...users.map(({ name, tabs }) => {
      const item = document.createElement('li')
      item.textContent = `${name} (${tabs} ${tabs === 1 ? 'tab' : 'tabs'})`
      return item
    }))
    if (users.length === 0) list.innerHTML = '<li class="muted">Nobody yet</li>'
  })

  socket.on('notice', ({ text, at }) => {
    const item = document.createElement('li')
    item.textContent = `${time(at)} · ${text}`
    append($('#notices'), item)
  })
}

// ------------------------------------------------------------------ HTTP: login, logout

async function api (path, body) {
  return await fetch(path, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
}

$('#login-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const response = await api('/api/login', { name: $('#name').value, password: $('#password').value })
  if (!response.ok) {
    $('#login-error').textContent = response.status === 401 ? 'Unknown name or wrong password.' : `Login failed (${response.status}).`
    $('#login-error').hidden = false
    return
  }
  $('#login-error').hidden = true
  $('#password').value = ''
  loggingOut = false
  const { user } = await response.json()
  showChat(user)
  connect() // the handshake carries the new session cookie
})

$('#logout').addEventListener('click', async () => {
  loggingOut = true
  const response = await api('/api/logout')
  if (response.ok) {
    setStatus('session-ended', 'Logged out')
    showBanner('You logged out: the server disconnected the sockets of every tab of your session.', { kind: 'info' })
    showLogin()
  }
})

$('#chat-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const text = $('#message').value.trim()
  if (text === '' || socket?.connected !== true) return
  socket.emit('chat', text)
  $('#message').value = ''
})

$('#ping').addEventListener('click', () => {
  socket?.emit('ping-me')
})

$('#reconnect').addEventListener('click', () => {
  connect()
})

// ------------------------------------------------------------------ start

async function start () {
  const response = await fetch('/api/me')
  const { user, demoUsers } = await response.json()
  $('#demo-users tbody').replaceChildren(...demoUsers.map(({ name, password }) => {
    const row = document.createElement('tr')
    for (const value of [name, password]) {
      const cell = document.createElement('td')
      cell.textContent = value
      row.append(cell)
    }
    return row
  }))
  if (user === null) {
    setStatus('offline', 'Not logged in')
    showLogin()
  } else {
    showChat(user)
    connect()
  }
}

start().catch((err) => {
  showBanner(`Cannot load the page: ${err.message}`)
})
