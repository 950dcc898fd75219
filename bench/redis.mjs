// A private redis-server for the bench scripts: a free loopback port, no persistence, its own temp
// directory; tracked with the other children (killed on the way out) and stopped by `stop()`.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { children, withTimeout } from './children.mjs'

export function freePort () {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Starts redis-server; resolves with `{ url, port, version, stop }`, or null when it is not on PATH. */
export async function startRedis () {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined || probe.status !== 0) return null
  const version = /v=([\d.]+)/.exec(probe.stdout ?? '')?.[1]
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'))
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(proc)
  proc.on('exit', () => children.delete(proc))
  let output = ''
  await withTimeout(new Promise((resolve, reject) => {
    proc.stdout.on('data', (chunk) => {
      output += chunk
      if (output.includes('Ready to accept connections')) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)))
  }), 10_000, 'redis-server start')
  proc.stdout.resume()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    version,
    async stop () {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve))
        proc.kill('SIGTERM')
        await withTimeout(exited, 5000, 'redis-server stop').catch(() => proc.kill('SIGKILL'))
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
