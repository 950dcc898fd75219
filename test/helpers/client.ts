import type { Test } from 'tap'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { io as ioClient, type Socket } from 'socket.io-client'

export type Transports = ['websocket'] | ['polling', 'websocket']

/** Both transports: websocket-only, and Socket.IO's default polling then upgrade. */
export const transportModes: Array<{ name: string, transports: Transports }> = [
  { name: 'websocket', transports: ['websocket'] },
  { name: 'polling', transports: ['polling', 'websocket'] }
]

export interface ConnectOptions {
  cookie?: string
  transports?: Transports
  namespace?: string
  headers?: Record<string, string>
  reconnection?: boolean
}

/** A real socket.io-client socket, disconnected by the test's teardown. */
export function client (t: Test, url: string, options: ConnectOptions = {}): Socket {
  const headers = { ...options.headers, ...(options.cookie === undefined ? {} : { cookie: options.cookie }) }
  const socket = ioClient(url + (options.namespace ?? '/'), {
    forceNew: true,
    reconnection: options.reconnection ?? false,
    transports: options.transports ?? ['websocket'],
    extraHeaders: headers
  })
  t.teardown(() => { socket.disconnect() })
  return socket
}

/** Resolves once the socket is connected; rejects with the connect_error. */
export async function connected (socket: Socket): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    socket.once('connect', () => { socket.off('connect_error'); resolve(socket) })
    socket.once('connect_error', (err) => { socket.off('connect'); reject(err) })
  })
}

/** Connects and resolves with the socket once connected. */
export async function connect (t: Test, url: string, options: ConnectOptions = {}): Promise<Socket> {
  return await connected(client(t, url, options))
}

/** Resolves with the connect_error the socket gets (fails if it connects instead). */
export async function refused (t: Test, url: string, options: ConnectOptions = {}): Promise<Error & { data?: { code?: string }, description?: unknown }> {
  const socket = client(t, url, options)
  return await new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error('connected, but a refusal was expected')))
    socket.once('connect_error', (err) => resolve(err))
  })
}

/** Resolves with the first arguments of `event`, or rejects after `ms`. */
export async function once<T = unknown> (emitter: { once (event: string, fn: (...args: any[]) => void): unknown }, event: string, ms = 3000): Promise<T> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms)
    emitter.once(event, (value: T) => { clearTimeout(timer); resolve(value) })
  })
}

/** The reason of the socket's next 'disconnect' (within 2 s). */
export const disconnectReason = async (socket: Socket): Promise<string> => await once<string>(socket, 'disconnect', 2000)

export const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Emits `event` with an acknowledgement until the answer passes `check` (bounded: 40 tries, 25 ms
 * apart: what the server does after a response may land a little later), and returns the last answer.
 */
export async function askUntil<T> (socket: { emitWithAck (event: string): Promise<unknown> }, event: string, check: (answer: T) => boolean): Promise<T> {
  let answer = await socket.emitWithAck(event) as T
  for (let i = 0; i < 40 && !check(answer); i++) {
    await sleep(25)
    answer = await socket.emitWithAck(event) as T
  }
  return answer
}

export interface Handshake { status: number, upgraded: boolean, headers: IncomingHttpHeaders }

/**
 * A raw engine.io handshake with the given headers: on polling, a GET; on websocket, an upgrade.
 * A header given as an array is sent once per value; `query` is appended to the engine.io query as it
 * is. Rejects if the server does not answer within `timeoutMs`.
 */
export async function handshake (url: string, transport: 'polling' | 'websocket', headers: Record<string, string | string[]>, query = '', timeoutMs = 5000): Promise<Handshake> {
  const websocket = transport === 'websocket'
  return await new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/socket.io/?EIO=4&transport=${transport}${query}`, {
      agent: false, // a connection of its own: a refused handshake's connection is not reused
      headers: websocket
        ? { ...headers, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }
        : headers
    })
    req.setTimeout(timeoutMs, () => { req.destroy(new Error(`no answer to the ${transport} handshake within ${timeoutMs} ms`)) })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode ?? 0, upgraded: true, headers: res.headers }) })
    req.on('response', (res) => { res.resume(); resolve({ status: res.statusCode ?? 0, upgraded: false, headers: res.headers }) })
    req.on('error', reject)
    req.end()
  })
}
