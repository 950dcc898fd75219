import type { Test } from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, Pool } from 'pg'
import { freePort } from './redis'

/** A real PostgreSQL server on a loopback port, in a temporary directory, with trust authentication. */
export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  url: string
  port: number
  /** A pool on the server, ended by the test's teardown. */
  pool: Pool
}

const installHint = 'PostgreSQL is not installed (Debian: apt-get install postgresql)'

/**
 * The directory of `initdb` and `postgres`: Debian's /usr/lib/postgresql/<major>/bin (the newest
 * major), else the PATH.
 */
function postgresBin (): string | undefined {
  const debian = '/usr/lib/postgresql'
  if (existsSync(debian)) {
    const majors = readdirSync(debian).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a))
    for (const major of majors) {
      const bin = join(debian, major, 'bin')
      if (existsSync(join(bin, 'postgres')) && existsSync(join(bin, 'initdb'))) return bin
    }
  }
  const probe = spawnSync('postgres', ['--version'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0 ? '' : undefined
}

/**
 * PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user that Debian's
 * package creates (spawned with its uid and gid, so that it stays our direct child and SIGINT reaches
 * it); as anyone else, as that user.
 */
function serverUser (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim())
  const uid = id('-u')
  const gid = id('-g')
  if (!Number.isInteger(uid) || uid <= 0 || !Number.isInteger(gid)) throw new Error('running as root, and there is no postgres user to run PostgreSQL as')
  return { uid, gid }
}

/**
 * `{ skip: skipWithoutPostgres }` on a test: without PostgreSQL it is skipped with the reason in the
 * output, except in CI (the CI env var is set), where it runs and `startPostgres` fails it.
 */
export const skipWithoutPostgres: string | false = process.env.CI === undefined && postgresBin() === undefined
  ? `${installHint}: skipping the tests that need a real PostgreSQL`
  : false

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** Runs a PostgreSQL program to completion; rejects with its output when it fails. */
async function run (command: string, args: string[], user: { uid: number, gid: number } | undefined): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...user, env: { ...process.env, LC_ALL: 'C' } })
    let output = ''
    child.stdout.on('data', (chunk) => { output += chunk.toString() })
    child.stderr.on('data', (chunk) => { output += chunk.toString() })
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}: ${output.trim()}`))))
  })
}

/**
 * Starts a PostgreSQL server (initdb, then postgres) on a free 127.0.0.1 port in a temporary directory,
 * without durability (fsync off: a test database). Stopped with SIGINT (fast shutdown) and its directory
 * removed by the test's teardown. Throws when PostgreSQL is missing: guard the test with `skipWithoutPostgres`.
 */
export async function startPostgres (t: Test): Promise<PostgresServer> {
  const bin = postgresBin()
  if (bin === undefined) throw new Error(`${installHint}; the PostgreSQL tests must run in CI`)
  const user = serverUser()
  const dir = mkdtempSync(join(tmpdir(), 'fastify-socket.io-session-pg-'))
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  const data = join(dir, 'data')
  const program = (name: string): string => (bin === '' ? name : join(bin, name))

  let child: ChildProcess | undefined
  // Never leave a server or its directory behind, even when the test process dies before its teardown.
  const killOnExit = (): void => {
    child?.kill('SIGKILL')
    try { rmSync(dir, { recursive: true, force: true }) } catch {}
  }
  process.once('exit', killOnExit)
  const stop = async (): Promise<void> => {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => proc.kill('SIGKILL'), 5000)
      proc.once('exit', () => { clearTimeout(force); resolve() })
      proc.kill('SIGINT')
    })
  }
  let pool: Pool | undefined
  t.teardown(async () => {
    await pool?.end()
    await stop()
    process.removeListener('exit', killOnExit)
    rmSync(dir, { recursive: true, force: true })
  })

  await run(program('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync'], user)

  // Another process may take the free port between the probe and the start: try another one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'timezone=UTC']
    const proc = spawn(program('postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...user, env: { ...process.env, LC_ALL: 'C' } })
    child = proc
    let output = ''
    proc.stdout.on('data', (chunk) => { output += chunk.toString() })
    proc.stderr.on('data', (chunk) => { output += chunk.toString() })
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`
    const deadline = Date.now() + 15_000
    while (proc.exitCode === null && Date.now() < deadline) {
      const probe = new Client({ connectionString: url, connectionTimeoutMillis: 1000 })
      probe.on('error', () => {})
      try {
        await probe.connect()
        await probe.end()
        pool = new Pool({ connectionString: url, max: 4 })
        pool.on('error', () => {}) // a connection lost at the server's shutdown
        return { url, port, pool }
      } catch {
        await probe.end().catch(() => {})
        await sleep(50)
      }
    }
    await stop()
    if (attempt === 3 || !output.includes('in use')) throw new Error(`postgres did not accept connections on port ${port}: ${output.trim()}`)
  }
}
