// `npm run test:unit`: tap, with the coverage of lib/ held at 100% of lines and branches (tap's default).
// Outside CI, the tests that need a server this machine lacks (redis-server, PostgreSQL, nginx, Chromium)
// are skipped with a message; coverage is then reported but not enforced, and this says why.
// In CI (the CI variable set) those tests run, and fail if their server is missing.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'

const runs = (command, flag) => {
  const probe = spawnSync(command, [flag], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}
const postgres = () => (existsSync('/usr/lib/postgresql') && readdirSync('/usr/lib/postgresql')
  .some((major) => existsSync(`/usr/lib/postgresql/${major}/bin/postgres`))) || runs('postgres', '--version')

const missing = process.env.CI !== undefined
  ? []
  : [
      !runs('redis-server', '--version') && 'redis-server',
      !postgres() && 'PostgreSQL',
      !runs('nginx', '-v') && 'nginx',
      !existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium') && 'Chromium'
    ].filter(Boolean)

const args = process.argv.slice(2)
if (missing.length > 0) {
  console.log(`Coverage is not enforced in this run: no ${missing.join(', no ')}, so their tests are skipped (see README).`)
  args.unshift('--allow-incomplete-coverage')
}
const tap = spawnSync('tap', args, { stdio: 'inherit', shell: process.platform === 'win32' })
process.exit(tap.status ?? 1)
