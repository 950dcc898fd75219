import type { FastifySessionObject } from '@fastify/session'
import { DELETED, type Changes } from './session-store'

/**
 * The fields of a session as JSON, each on its own, to tell later which ones an event handler
 * changed. The cookie is the session's metadata, not a field a handler saves.
 */
export function snapshot (session: FastifySessionObject): Map<string, string> {
  const fields = new Map<string, string>()
  for (const key of Object.keys(session)) {
    if (key !== 'cookie') fields.set(key, JSON.stringify((session as unknown as Record<string, unknown>)[key]) ?? 'undefined')
  }
  return fields
}

/** The fields that differ from the snapshot, as JSON-safe copies (what a store would keep), deleted ones as DELETED. */
export function changesSince (before: Map<string, string>, session: FastifySessionObject): Changes {
  const changes: Changes = new Map()
  const after = snapshot(session)
  for (const [key, json] of after) {
    if (before.get(key) !== json) changes.set(key, json === 'undefined' ? DELETED : JSON.parse(json))
  }
  for (const key of before.keys()) {
    if (!after.has(key)) changes.set(key, DELETED)
  }
  return changes
}
