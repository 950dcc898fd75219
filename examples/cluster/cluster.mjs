// The chat demo on two nodes behind nginx, on this machine's loopback:
//
//   npm run start:cluster        http://127.0.0.1:8080: nginx, in front of two nodes of the demo (ports 3001
//                                and 3002) that share sessions and Socket.IO through a Redis on port 6390
//
// Needs `nginx` and `redis-server` (Debian: apt-get install nginx redis-server). Ctrl-C stops everything.
// Environment: PORT (nginx, 8080), NODE_PORTS (3001,3002), REDIS_PORT (6390), or REDIS_URL to use a Redis
// that is already running. test/demo-cluster.test.ts runs this in Chromium; nginx.conf beside this file is the
// configuration, explained there and in the README ("Several nodes").

import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildDemo } from '../chat/server.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const host = '127.0.0.1'
const names = ['a', 'b']

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves once something accepts TCP connections on the port, or rejects after `ms`. */
async function listening (port, ms, exited) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (exited()) throw new Error(`the process that should listen on port ${port} exited`)
    const ok = await new Promise((resolve) => {
      const socket = createConnection({ host, port })
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(25)
  }
  throw new Error(`nothing listens on ${host}:${port} after ${ms} ms`)
}

/** A child process that is killed with its process group (nginx's workers too) when it must stop. */
function child (command, args, options = {}) {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...options })
  let output = ''
  proc.stdout.on('data', (chunk) => { output += chunk })
  proc.stderr.on('data', (chunk) => { output += chunk })
  let exited = false
  const done = new Promise((resolve) => proc.once('exit', () => { exited = true; resolve() }))
  proc.once('error', (err) => { output += String(err); exited = true })
  const killGroup = (signal) => { try { process.kill(-proc.pid, signal) } catch {} }
  const onExit = () => killGroup('SIGKILL') // never leave it behind, even if this process dies
  process.once('exit', onExit)
  return {
    output: () => output,
    exited: () => exited,
    async stop (signal = 'SIGTERM') {
      if (!exited) {
        killGroup(signal)
        const force = setTimeout(() => killGroup('SIGKILL'), 3000)
        await done
        clearTimeout(force)
      }
      process.removeListener('exit', onExit)
    }
  }
}

/**
 * Starts Redis (unless `redisUrl` is given), two nodes of the chat demo in this process (two Fastify
 * servers that share only Redis), and nginx in front of them, all on 127.0.0.1.
 * @param {{ port: number, nodePorts?: number[], redisUrl?: string, redisPort?: number, logger?: boolean | object }} options
 */
export async function startCluster ({ port, nodePorts = [0, 0], redisUrl, redisPort = 6390, logger = false }) {
  const stops = []
  const dirs = [] // removed by stop(), and at exit if this process ends before
  const removeDirs = () => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }) }
  process.once('exit', removeDirs)
  const stop = async () => {
    for (const fn of stops.reverse()) await fn().catch(() => {})
    removeDirs()
    process.removeListener('exit', removeDirs)
  }
  try {
    // Redis: no persistence, in a temporary directory.
    if (redisUrl === undefined) {
      const dir = mkdtempSync(join(tmpdir(), 'chat-cluster-redis-'))
      dirs.push(dir)
      const redis = child('redis-server', ['--port', String(redisPort), '--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir])
      stops.push(() => redis.stop())
      await listening(redisPort, 5000, redis.exited).catch((err) => { throw new Error(`${err.message}: ${redis.output()}`) })
      redisUrl = `redis://${host}:${redisPort}`
    }

    // The nodes. Each names its Engine.IO connections after itself: nginx routes a connection's
    // requests to its node by that prefix (see nginx.conf).
    const nodes = []
    for (const [i, name] of names.entries()) {
      const app = await buildDemo({ redisUrl, logger })
      app.io.engine.generateId = () => `${name}.${randomBytes(15).toString('base64url')}`
      stops.push(() => app.close())
      await app.listen({ host, port: nodePorts[i] })
      nodes.push({ name, app, url: `http://${host}:${app.server.address().port}`, port: app.server.address().port })
    }

    // nginx, in the foreground, with its configuration, logs and temporary files in a directory of its own.
    const dir = mkdtempSync(join(tmpdir(), 'chat-cluster-nginx-'))
    dirs.push(dir)
    chmodSync(dir, 0o755) // nginx's workers run as another user when nginx is started as root
    const config = readFileSync(join(here, 'nginx.conf'), 'utf8')
      .replaceAll('{{DIR}}', dir)
      .replaceAll('{{LISTEN}}', `${host}:${port}`)
      .replaceAll('{{NODE_A}}', `${host}:${nodes[0].port}`)
      .replaceAll('{{NODE_B}}', `${host}:${nodes[1].port}`)
    writeFileSync(join(dir, 'nginx.conf'), config)
    const nginx = child('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'])
    stops.push(() => nginx.stop())
    await listening(port, 5000, nginx.exited).catch((err) => {
      let log = ''
      try { log = readFileSync(join(dir, 'error.log'), 'utf8') } catch {}
      throw new Error(`${err.message}: ${nginx.output()}${log}`)
    })

    return {
      url: `http://${host}:${port}`,
      nodes,
      redisUrl,
      /** nginx's access log: one line per request, with the node that served it. */
      accessLog: () => readFileSync(join(dir, 'access.log'), 'utf8'),
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}

async function main () {
  const port = Number(process.env.PORT || 8080)
  const nodePorts = (process.env.NODE_PORTS || '3001,3002').split(',').map(Number)
  const redisPort = Number(process.env.REDIS_PORT || 6390)
  if (process.env.SESSION_SECRET === undefined) {
    console.warn('SESSION_SECRET is not set: using the demo secret, fine for trying the demo only.')
  }
  const cluster = await startCluster({
    port,
    nodePorts,
    redisPort,
    redisUrl: process.env.REDIS_URL || undefined,
    logger: { level: process.env.LOG_LEVEL || 'warn' }
  })
  console.log(`Chat demo behind nginx: ${cluster.url}`)
  for (const node of cluster.nodes) console.log(`  node ${node.name}: ${node.url}`)
  console.log(`  Redis: ${cluster.redisUrl}`)
  console.log('Ctrl-C stops nginx, both nodes and Redis.')
  let stopping = false
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      cluster.stop().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })
    })
  }
}

function isMain () {
  if (process.argv[1] === undefined) return false
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isMain()) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
