import t from 'tap'
import type { SessionStore } from '@fastify/session'
import { adapterReady, redisClient, skipWithoutRedis, startRedis, startRedisNode, type RedisClient, type RedisNode, type RedisNodeClients, type RedisServer } from './helpers/redis'
import { twoNodeScenarios, type StoreProbe, type TwoNodeSetup } from './helpers/two-nodes'

// The two-node scenarios (handshake, merge-save, no resurrection, sweep, keep-alive, logout) with the
// Redis clients and stores that users scale with, next to test/redis.test.ts's connect-redis 9 on
// node-redis: connect-redis 10 (Node >= 22 only), and ioredis for the Redis adapter's clients.

const nodeMajor = Number(process.versions.node.split('.')[0])

/** Reads connect-redis's keys (`sess:<id>`, JSON, with a TTL) through a client of its own. */
async function redisProbe (t: Parameters<typeof startRedis>[0], redis: RedisServer): Promise<StoreProbe> {
  const client = await redisClient(redis.url)
  t.teardown(async () => { await client.close() })
  return {
    async read (sessionId) {
      const value = await client.get(`sess:${sessionId}`)
      return value === null ? undefined : JSON.parse(value)
    },
    async destroy (sessionId) {
      await client.del(`sess:${sessionId}`)
    },
    async expiresAt (sessionId) {
      const ttl = await client.pTTL(`sess:${sessionId}`)
      return ttl > 0 ? Date.now() + ttl : undefined
    }
  }
}

async function redisSetup (t: Parameters<typeof startRedis>[0], clients: RedisNodeClients): Promise<TwoNodeSetup> {
  const redis = await startRedis(t)
  return {
    startNode: async (t, plugin, build) => await startRedisNode(t, redis, plugin, build, clients),
    ready: async (a) => { await adapterReady(a as RedisNode, ['/', '/chat'], 2) },
    probe: await redisProbe(t, redis)
  }
}

const connectRedis10Skip = nodeMajor < 22
  ? `connect-redis 10 requires Node 22 (this is Node ${process.versions.node}): its tests run on Node 22 and later`
  : false

t.test('connect-redis 10 store (node-redis client) and the Redis adapter, two nodes', { skip: skipWithoutRedis || connectRedis10Skip }, async (t) => {
  // Loaded only on Node >= 22, which connect-redis 10 requires (installed as the alias connect-redis-10).
  const { RedisStore } = await import('connect-redis-10')
  const store = (client: RedisClient): SessionStore => new RedisStore({ client }) as unknown as SessionStore
  twoNodeScenarios(t, await redisSetup(t, { store }))
})

t.test('ioredis clients for the Redis adapter, connect-redis on node-redis for the store, two nodes', { skip: skipWithoutRedis }, async (t) => {
  twoNodeScenarios(t, await redisSetup(t, { adapterClients: 'ioredis' }))
})
