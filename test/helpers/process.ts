import type { Test } from 'tap'

/**
 * Records what would crash the process: an uncaught exception or an unhandled rejection, kept here
 * instead of letting tap see it first, until the test ends. Assert `t.same(crashes, [])`.
 */
export function watchCrashes (t: Test): unknown[] {
  const crashes: unknown[] = []
  const onCrash = (err: unknown): void => { crashes.push(err) }
  process.on('uncaughtException', onCrash)
  process.on('unhandledRejection', onCrash)
  t.teardown(() => {
    process.off('uncaughtException', onCrash)
    process.off('unhandledRejection', onCrash)
  })
  return crashes
}
