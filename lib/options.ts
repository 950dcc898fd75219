import type { FastifySocketIoSessionOptions as Options } from '../types/index'
import { InvalidOptionError } from './errors'
import { assertOrigins } from './origin'

type Check = (value: unknown) => boolean

const isString: Check = (v) => typeof v === 'string'
const isBoolean: Check = (v) => typeof v === 'boolean'
const isFunction: Check = (v) => typeof v === 'function'
const isObject: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)
const isStringArray: Check = (v) => Array.isArray(v) && v.every(isString)
const isWholeNumber = (min: number): Check => (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= 2 ** 31 - 1

/** Event names Socket.IO reserves: emitting one throws. */
const reservedEvents = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'])

/** Each option: how to check it, and what the error says it must be. */
const schema: Record<keyof Options, [Check, string]> = {
  cookieName: [(v) => isString(v) && v !== '', 'must be a non-empty string'],
  cookiePrefix: [isString, 'must be a string'],
  serverOptions: [isObject, 'must be an object of Socket.IO server options'],
  trustProxy: [
    (v) => isBoolean(v) || isString(v) || isStringArray(v) || isFunction(v) || (Number.isInteger(v) && (v as number) >= 0),
    'must be a boolean, a string, an array of strings, a hop count or a function, as Fastify\'s trustProxy'
  ],
  allowedOrigins: [
    (v) => isFunction(v) || (isStringArray(v) && assertOrigins(v as string[], (entry) => new InvalidOptionError('allowedOrigins',
      `has ${JSON.stringify(entry)}, which is not an origin: scheme://host[:port], without path, query, credentials or wildcard`))),
    'must be an array of origins (scheme://host[:port]) or a function (origin, request) => boolean'
  ],
  authorize: [isFunction, 'must be a function (session, socket) => boolean | Promise<boolean>'],
  sessionRoom: [isFunction, 'must be a function (sessionId) => string'],
  userRoom: [isFunction, 'must be a function (session, socket) => string | undefined'],
  reloadOnEvent: [isBoolean, 'must be a boolean'],
  autoSave: [isBoolean, 'must be a boolean'],
  validateInterval: [isWholeNumber(0), 'must be a whole number of milliseconds (0 disables)'],
  keepAlive: [isBoolean, 'must be a boolean'],
  createSession: [isBoolean, 'must be a boolean'],
  cookie: [isObject, 'must be an object of @fastify/session cookie options'],
  onSessionEnd: [isFunction, 'must be a function (sessionId, reason) => void'],
  passport: [
    (v) => isObject(v) && isString((v as { key?: unknown }).key) && isFunction((v as { deserializeUser?: unknown }).deserializeUser),
    'must be a @fastify/passport Authenticator'
  ],
  syncSessions: [isBoolean, 'must be a boolean'],
  endEvent: [
    (v) => v === false || (isString(v) && v !== '' && !reservedEvents.has(v as string)),
    `must be an event name (not one Socket.IO reserves: ${[...reservedEvents].join(', ')}) or false`
  ],
  ackTimeout: [isWholeNumber(1), 'must be a whole number of milliseconds, at least 1'],
  maxPendingEvents: [isWholeNumber(1), 'must be a whole number, at least 1']
}

/** Options Fastify's `register()` itself understands, passed through to every plugin: kept as given. */
const fastifyRegisterOptions = new Set(['prefix', 'logLevel', 'logSerializers'])

const defaultSessionRoom = (sessionId: string): string => `session:${sessionId}`

/** The default of each option that has one (the README's options table says the same). */
const defaults = {
  cookieName: 'sessionId',
  cookiePrefix: '',
  sessionRoom: defaultSessionRoom,
  reloadOnEvent: false,
  autoSave: true,
  validateInterval: 30_000,
  keepAlive: true,
  createSession: false,
  syncSessions: true,
  endEvent: 'session:end',
  ackTimeout: 5000,
  maxPendingEvents: 128
} satisfies { [K in keyof Options]?: Exclude<Options[K], undefined> }

/** The options with their defaults applied: what the rest of the plugin reads. */
export type ResolvedOptions = Omit<Options, keyof typeof defaults> & Required<Pick<Options, keyof typeof defaults>>

/** Validates the options given at registration and applies the defaults; throws naming the bad option. */
export function resolveOptions (options: Options | undefined): ResolvedOptions {
  if (options !== undefined && !isObject(options)) {
    throw new InvalidOptionError('options', 'must be an object')
  }
  const resolved: Record<string, unknown> = { ...defaults }
  for (const [name, value] of Object.entries(options ?? {})) {
    const rule = Object.hasOwn(schema, name) ? schema[name as keyof Options] : undefined
    if (rule === undefined && !fastifyRegisterOptions.has(name)) {
      throw new InvalidOptionError(name, `is not an option of this plugin (known options: ${Object.keys(schema).join(', ')})`)
    }
    if (value === undefined) continue // as if not given: the default applies
    if (rule !== undefined && !rule[0](value)) throw new InvalidOptionError(name, rule[1])
    resolved[name] = value
  }
  return resolved as ResolvedOptions
}
