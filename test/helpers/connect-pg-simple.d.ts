// connect-pg-simple 10 ships JavaScript with JSDoc only: the part of its API the tests use.
declare module 'connect-pg-simple' {
  import type { Pool, PoolConfig } from 'pg'

  interface PGStoreOptions {
    pool?: Pool
    conString?: string
    conObject?: PoolConfig
    schemaName?: string
    tableName?: string
    /** Creates the session table (and its index) on first use when it does not exist. */
    createTableIfMissing?: boolean
    ttl?: number
    disableTouch?: boolean
    /** Seconds between deletions of expired rows, or false for none (the default is 15 minutes, with a timer). */
    pruneSessionInterval?: false | number
    errorLog?: (...args: unknown[]) => void
  }

  type Callback = (err?: Error | null, value?: any) => void

  interface PGStore {
    get (sid: string, callback: Callback): void
    set (sid: string, session: unknown, callback?: Callback): void
    destroy (sid: string, callback?: Callback): void
    touch (sid: string, session: unknown, callback?: Callback): void
    /** Stops the pruning timer, and ends the pool when the store made it. */
    close (): Promise<void>
  }

  /** Takes the session module whose `Store` it extends (express-session, or @fastify/session). */
  function connectPgSimple (session: { Store: unknown }): new (options?: PGStoreOptions) => PGStore
  export = connectPgSimple
}
