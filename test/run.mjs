// `npm run test:unit`: every tap test, with the coverage of lib/ held at 100% of lines, branches and
// functions. (package.json's tap config allows incomplete coverage, so that one test file can be run
// alone with `npx tap test/x.test.ts`; the whole suite turns the check on.) Outside CI, the tests that
// need a server this machine lacks (redis-server, PostgreSQL, nginx, Chromium) are skipped with a message;
// coverage is then reported but not enforced, and this says why. In CI (the CI variable set) those tests
// run, and fail if their server is missing.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'

const runs = (command, flag) => {
  const probe = spawnSync(command, [flag], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}
// As test/helpers/postgres.ts looks for it: Debian's versioned directory with postgres and initdb, or postgres on PATH.
const postgres = () => (existsSync('/usr/lib/postgresql') && readdirSync('/usr/lib/postgresql')
  .some((major) => /^\d+$/.test(major) && ['postgres', 'initdb'].every((bin) => existsSync(`/usr/lib/postgresql/${major}/bin/${bin}`)))) ||
  runs('postgres', '--version')

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
} else {
  args.unshift('--no-allow-incomplete-coverage')
}
const tap = spawnSync('tap', args, { stdio: 'inherit', shell: process.platform === 'win32' })
if (tap.error !== undefined) console.error(`tap could not be started (run this through npm test): ${tap.error.message}`)
process.exit(tap.status ?? 1)
