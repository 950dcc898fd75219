import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { io } from 'socket.io-client'
import { once } from './helpers/client'

// The README's quick start, pasted into a new project that installs the packed package, as a user would.
const root = join(__dirname, '..')
const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address() as { port: number }
      server.close(() => resolve(address.port))
    })
  })
}

t.test('the README quick start works as written in a new project', { timeout: 180_000 }, async (t) => {
  const project = mkdtempSync(join(tmpdir(), 'fastify-socket.io-session-quick-start-'))
  t.teardown(() => rmSync(project, { recursive: true, force: true }))

  const { stdout } = await run(npm, ['pack', '--pack-destination', project, '--silent'], { cwd: root })
  const tarball = stdout.trim().split('\n').pop() as string
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'quick-start', private: true, type: 'module' }))
  await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts',
    `./${tarball}`, 'fastify@5', '@fastify/cookie@11', '@fastify/session@11', '@types/node@20'], { cwd: project })

  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const quickStart = /## Quick start\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  t.ok(quickStart, 'the README has a quick start')
  const port = await freePort()
  writeFileSync(join(project, 'index.ts'), (quickStart as string).replace('port: 3000', `port: ${port}, host: '127.0.0.1'`))
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out' },
    include: ['index.ts']
  }))
  // Type-checks strictly, the library's declarations included (no skipLibCheck).
  await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', project])

  const server = spawn(process.execPath, [join(project, 'out/index.js')], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { server.kill() })
  let log = ''
  server.stdout.on('data', (chunk) => { log += chunk })
  const deadline = Date.now() + 10_000
  while (!log.includes('Server listening') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  const url = `http://127.0.0.1:${port}`

  const login = await fetch(`${url}/login`, { method: 'POST' })
  const cookie = login.headers.getSetCookie()[0].split(';')[0]
  for (const transports of [['websocket'], ['polling', 'websocket']]) {
    const socket = io(url, { transports, extraHeaders: { cookie }, reconnection: false, forceNew: true })
    t.teardown(() => { socket.close() })
    t.equal(await once(socket, 'hello'), 'Ada', `${transports.join('+')}: hello with the session's user`)
  }
  const socket = io(url, { transports: ['websocket'], extraHeaders: { cookie }, reconnection: false, forceNew: true })
  t.teardown(() => { socket.close() })
  await once(socket, 'connect')
  const reason = once(socket, 'disconnect')
  t.equal((await fetch(`${url}/logout`, { method: 'POST', headers: { cookie } })).status, 204)
  t.equal(await reason, 'io server disconnect', 'logout disconnects the socket')
  const refused = io(url, { transports: ['websocket'], extraHeaders: { cookie }, reconnection: false, forceNew: true })
  t.teardown(() => { refused.close() })
  const err = await once<{ message: string, data: unknown }>(refused, 'connect_error')
  t.same([err.message, err.data], ['unauthorized', { code: 'SESSION_UNAUTHORIZED' }], 'the old cookie is refused')
  t.notOk(server.killed, 'the server ran')
})
