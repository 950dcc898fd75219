import type { SessionServer } from '../types/index'

/*
 * What this plugin needs of Socket.IO that it does not expose publicly. Each accessor says what it
 * relies on; test/internals.test.ts checks every one against the installed version.
 */

type Namespace = ReturnType<SessionServer['of']>

/**
 * Every namespace of the server, dynamic namespaces' children included: `Server#_nsps`, a public
 * field tagged private, where Socket.IO itself registers each namespace it creates.
 */
export function namespacesOf (io: SessionServer): Iterable<Namespace> {
  return io._nsps.values()
}

/**
 * Whether the adapter carries server-side events to other nodes. The in-memory adapter's
 * `serverSideEmit` only warns (it does not implement it): an adapter whose `serverSideEmit` is the one
 * at the root of its class chain (no subclass overrides it) is that in-memory one.
 */
export function carriesServerSideEvents (adapter: object): boolean {
  let root: unknown
  for (let proto = Object.getPrototypeOf(adapter); proto !== null; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto, 'serverSideEmit')) root = proto.serverSideEmit
  }
  return root !== undefined && (adapter as { serverSideEmit?: unknown }).serverSideEmit !== root
}

/**
 * Puts a middleware before those the namespace already has (`Namespace#_fns`, the private array
 * `use()` appends to; Socket.IO itself reaches it so from a parent namespace). Without that array,
 * falls back to `use()`: the middleware then runs after the others.
 */
export function prependMiddleware<Fn> (nsp: { use (fn: Fn): unknown }, middleware: Fn): void {
  const fns = (nsp as { _fns?: unknown[] })._fns
  if (Array.isArray(fns)) fns.unshift(middleware)
  else nsp.use(middleware)
}
