import type { Test } from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient, type RedisClientOptions } from 'redis'
import { Redis as IORedis } from 'ioredis'
import { RedisStore } from 'connect-redis'
import { createAdapter } from '@socket.io/redis-adapter'
import { Server } from 'socket.io'
import type { SessionStore } from '@fastify/session'
import type { FastifySocketIoSessionOptions } from '../../types/index'
import { startServer, type BuildOptions, type TestServer } from './server'

/** A real `redis-server` on a loopback port, with no persistence, in a temporary directory. */
export interface RedisServer {
  url: string
  port: number
  /** Stops the server (SIGTERM): clients see their connection closed. */
  stop (): Promise<void>
  /**
   * Stops the server if it runs, then starts it again on the same port: empty, or, with
   * `persistence`, with what its append-only file holds.
   */
  restart (): Promise<void>
  /** Kills the server at once (SIGKILL), as a crash would: no shutdown, no final write. */
  kill (): Promise<void>
}

export interface RedisOptions {
  /** An append-only file written on every command (appendonly yes, appendfsync always): a crash loses nothing. */
  persistence?: boolean
}

const installHint = 'redis-server is not on PATH (Debian: apt-get install redis-server)'

function hasRedisServer (): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}

/**
 * `{ skip: skipWithoutRedis }` on a test: without `redis-server` it is skipped with the reason in the
 * output, except in CI (the CI env var is set), where it runs and `startRedis` fails it.
 */
export const skipWithoutRedis: string | false = process.env.CI === undefined && !hasRedisServer()
  ? `${installHint}: skipping the tests that need a real Redis`
  : false

/**
 * The node-redis client settings of the session store: a command fails at once while the connection
 * is down (no offline queue: a handshake gets SESSION_ERROR instead of waiting for Redis), and the
 * client reconnects every 50 to 500 ms, so the nodes recover as soon as Redis is back.
 */
export const storeClientOptions = {
  disableOfflineQueue: true,
  socket: { reconnectStrategy: (retries: number) => Math.min(retries * 50, 500) }
} satisfies RedisClientOptions

/**
 * The adapter's clients keep the offline queue: @socket.io/redis-adapter publishes without handling
 * a rejected promise, so a broadcast while Redis is down must wait, not fail.
 */
export const adapterClientOptions = {
  socket: { reconnectStrategy: (retries: number) => Math.min(retries * 50, 500) }
} satisfies RedisClientOptions

/** A connected node-redis client; errors (Redis down) are recorded instead of crashing the process. */
export async function redisClient (url: string, options: RedisClientOptions = {}, errors: Error[] = []) {
  const client = createClient({ ...options, url })
  client.on('error', (err: Error) => { errors.push(err) })
  await client.connect()
  return client
}

/** Closes a client gracefully when it is connected, at once otherwise. */
export async function closeClient (client: { isOpen: boolean, isReady: boolean, close (): Promise<unknown>, destroy (): void }): Promise<void> {
  if (!client.isOpen) return
  if (client.isReady) await client.close()
  else client.destroy()
}

/** A free TCP port on 127.0.0.1 (free when probed: starting a server on it may still race). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address === null || typeof address === 'string') reject(new Error('no TCP address'))
        else resolve(address.port)
      })
    })
  })
}

/** Resolves once the server answers PING with PONG. */
async function ping (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let answer = ''
    const finish = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(500, () => finish(false))
    socket.once('error', () => finish(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      answer += chunk.toString()
      if (answer.includes('\r\n')) finish(answer.startsWith('+PONG'))
    })
  })
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts a `redis-server` on a free 127.0.0.1 port, stopped (and its directory removed) by the
 * test's teardown. Throws when `redis-server` is missing: guard the test with `skipWithoutRedis`.
 */
export async function startRedis (t: Test, options: RedisOptions = {}): Promise<RedisServer> {
  if (!hasRedisServer()) throw new Error(`${installHint}; the Redis tests must run in CI`)
  const dir = mkdtempSync(join(tmpdir(), 'fastify-socket.io-session-redis-'))
  let port = await freePort()
  let child: ChildProcess | undefined
  // Never leave a redis-server behind, even when the test process dies.
  const killOnExit = (): void => { child?.kill('SIGKILL') }
  process.once('exit', killOnExit)

  async function start (): Promise<void> {
    const persistence = options.persistence === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir, '--loglevel', 'warning']
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    let output = ''
    proc.stdout.on('data', (chunk) => { output += chunk.toString() })
    proc.stderr.on('data', (chunk) => { output += chunk.toString() })
    let exited = false
    proc.once('exit', () => { exited = true })
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      if (exited) throw new Error(`redis-server exited on port ${port}: ${output.trim()}`)
      if (await ping(port)) return
      await sleep(20)
    }
    proc.kill('SIGKILL')
    throw new Error(`redis-server did not answer PING on port ${port} within 5 s: ${output.trim()}`)
  }

  async function stop (): Promise<void> {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => proc.kill('SIGKILL'), 2000)
      proc.once('exit', () => { clearTimeout(force); resolve() })
      proc.kill('SIGTERM')
    })
  }

  // Another process may take the free port between the probe and the start: try another one.
  for (let attempt = 1; ; attempt++) {
    try {
      await start()
      break
    } catch (err) {
      if (attempt === 3 || !String(err).includes('in use')) throw err
      port = await freePort()
    }
  }

  t.teardown(async () => {
    await stop()
    process.removeListener('exit', killOnExit)
    rmSync(dir, { recursive: true, force: true })
  })

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    async kill () {
      const proc = child
      child = undefined
      if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
      await new Promise<void>((resolve) => {
        proc.once('exit', () => resolve())
        proc.kill('SIGKILL')
      })
    },
    async restart () {
      await stop()
      await start()
    }
  }
}

/** One Fastify node of a cluster: sessions in Redis (connect-redis) and Socket.IO's Redis adapter. */
export interface RedisNode extends TestServer {
  /** Errors the node's Redis clients emitted (connection lost, ...). */
  redisErrors: Error[]
  /**
   * The adapter's publishing client, for checks such as PUBSUB NUMSUB (a node-redis client: with
   * `adapterClients: 'ioredis'`, the store's client).
   */
  pubClient: Awaited<ReturnType<typeof redisClient>>
}

export type RedisClient = Awaited<ReturnType<typeof redisClient>>

/** Which clients and store a Redis node uses; by default node-redis everywhere and connect-redis 9. */
export interface RedisNodeClients {
  /** The session store, built on the node's store client (default: connect-redis's `RedisStore`). */
  store?: (client: RedisClient) => SessionStore
  /**
   * The Redis adapter's pub/sub clients: node-redis (default) or ioredis, as @socket.io/redis-adapter's
   * documentation shows it (`const pub = new Redis(); const sub = pub.duplicate()`).
   */
  adapterClients?: 'redis' | 'ioredis'
}

/** ioredis clients for the adapter, retrying every 50 to 500 ms; errors recorded instead of crashing. */
async function ioredisClients (url: string, errors: Error[]): Promise<IORedis[]> {
  const pub = new IORedis(url, { retryStrategy: (times: number) => Math.min(times * 50, 500), lazyConnect: true })
  const sub = pub.duplicate()
  for (const client of [pub, sub]) client.on('error', (err: Error) => { errors.push(err) })
  await Promise.all([pub.connect(), sub.connect()])
  return [pub, sub]
}

/** Closes an ioredis client gracefully when it is connected, at once otherwise. */
async function closeIORedis (client: IORedis): Promise<void> {
  if (client.status === 'ready') await client.quit()
  else client.disconnect()
}

/**
 * A node as the README configures it: @fastify/session with a connect-redis `RedisStore`, the plugin
 * with `serverOptions.adapter` from @socket.io/redis-adapter. Its Redis clients are closed in an
 * onClose hook registered before the plugin, so they close after the plugin's `io.close()` (which
 * unsubscribes the adapter), and the test's teardown closes the node.
 */
export async function startRedisNode (t: Test, redis: RedisServer, plugin: FastifySocketIoSessionOptions = {}, build: BuildOptions = {}, clients: RedisNodeClients = {}): Promise<RedisNode> {
  const redisErrors: Error[] = []
  const storeClient = await redisClient(redis.url, storeClientOptions, redisErrors)
  const ioredis = clients.adapterClients === 'ioredis'
  const [pubClient, subClient] = ioredis
    ? await ioredisClients(redis.url, redisErrors)
    : [await redisClient(redis.url, adapterClientOptions, redisErrors), await redisClient(redis.url, adapterClientOptions, redisErrors)]
  const closeClients = async (): Promise<void> => {
    await Promise.all([storeClient, pubClient, subClient].map((client) => client instanceof IORedis ? closeIORedis(client) : closeClient(client)))
  }
  try {
    const store = clients.store?.(storeClient) ?? new RedisStore({ client: storeClient })
    const server = await startServer(t, { ...plugin, serverOptions: { ...plugin.serverOptions, adapter: createAdapter(pubClient, subClient) } }, {
      ...build,
      session: { store, ...build.session },
      before: async (app) => {
        app.addHook('onClose', closeClients)
        await build.before?.(app)
      }
    })
    return { ...server, redisErrors, pubClient: pubClient instanceof IORedis ? storeClient : pubClient }
  } catch (err) {
    await closeClients()
    throw err
  }
}

/**
 * Bare Socket.IO on the same Redis adapter, listening on 127.0.0.1: a node without the plugin. Closed,
 * with its Redis clients, by the test's teardown.
 */
export async function startBareNode (t: Test, redis: RedisServer): Promise<Server> {
  const pub = await redisClient(redis.url, adapterClientOptions)
  const sub = await redisClient(redis.url, adapterClientOptions)
  const httpServer = createHttpServer()
  const bare = new Server(httpServer, { adapter: createAdapter(pub, sub) })
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    await bare.close()
    await Promise.all([pub, sub].map(closeClient))
  })
  return bare
}

/**
 * Waits until `nodes` servers subscribe to the adapter's request channel of each namespace: the
 * adapter subscribes without waiting, and a broadcast sent before that would miss a node.
 */
export async function adapterReady (node: RedisNode, namespaces: string[], nodes: number): Promise<void> {
  const deadline = Date.now() + 3000
  for (const nsp of namespaces) {
    const channel = `socket.io-request#${nsp}#`
    while (true) {
      const counts = await node.pubClient.PUBSUB_NUMSUB(channel)
      if (Number(counts[channel]) >= nodes) break
      if (Date.now() > deadline) throw new Error(`only ${counts[channel]} of ${nodes} nodes subscribed to ${channel}`)
      await sleep(10)
    }
  }
}
