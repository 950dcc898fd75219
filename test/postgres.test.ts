import t from 'tap'
import fastifySession, { type SessionStore } from '@fastify/session'
import connectPgSimple from 'connect-pg-simple'
import { login, me } from './helpers/server'
import { startPostgres, skipWithoutPostgres } from './helpers/postgres'
import { adapterReady, skipWithoutRedis, startRedis, startRedisNode, type RedisNode } from './helpers/redis'
import { twoNodeScenarios, type StoreProbe } from './helpers/two-nodes'

// A second real store: PostgreSQL (Debian's postgresql, started by the test) with connect-pg-simple, on
// two nodes. The nodes share the PostgreSQL store for sessions and Socket.IO's Redis adapter for the
// rooms that logout and the helpers reach across nodes (a store alone cannot reach another node's sockets).

const PGStore = connectPgSimple(fastifySession)

t.test('connect-pg-simple store on PostgreSQL, Redis adapter, two nodes', { skip: skipWithoutPostgres || skipWithoutRedis }, async (t) => {
  const postgres = await startPostgres(t)
  const redis = await startRedis(t)

  /** A node as a user configures it: its own PGStore (and pool), closed when the node closes. */
  const startNode = async (t: Parameters<typeof startRedisNode>[0], plugin: Parameters<typeof startRedisNode>[2], build: Parameters<typeof startRedisNode>[3] = {}): Promise<RedisNode> => {
    const store = new PGStore({ conString: postgres.url, createTableIfMissing: true, pruneSessionInterval: false })
    return await startRedisNode(t, redis, plugin, {
      ...build,
      before: async (app) => {
        app.addHook('onClose', async () => { await store.close() })
        await build.before?.(app)
      }
    }, { store: () => store as unknown as SessionStore }) // the node's Redis clients serve the adapter only
  }

  const probe: StoreProbe = {
    async read (sessionId) {
      const { rows } = await postgres.pool.query('SELECT sess FROM session WHERE sid = $1', [sessionId])
      return rows[0]?.sess
    },
    async destroy (sessionId) {
      await postgres.pool.query('DELETE FROM session WHERE sid = $1', [sessionId])
    },
    async expiresAt (sessionId) {
      const { rows } = await postgres.pool.query('SELECT extract(epoch FROM expire) * 1000 AS at FROM session WHERE sid = $1', [sessionId])
      return rows[0] === undefined ? undefined : Number(rows[0].at)
    }
  }

  t.test('createTableIfMissing: the first session creates the table, and sessions are its rows', async (t) => {
    const node = await startNode(t, {}, {})
    const before = await postgres.pool.query("SELECT to_regclass('session') AS name")
    t.equal(before.rows[0].name, null, 'no session table before the first request')
    const cookie = await login(node.url, 'Ada')
    const { sessionId } = await me(node.url, cookie)
    t.match(await probe.read(sessionId), { user: { name: 'Ada' }, cookie: { path: '/' } }, 'the session row, as JSON')
  })

  twoNodeScenarios(t, {
    startNode,
    ready: async (a) => { await adapterReady(a as RedisNode, ['/', '/chat'], 2) },
    probe
  })
})
