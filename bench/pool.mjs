// What the bench's load generators (load.mjs, stress-client.mjs, authority-client.mjs) share.

/** Runs `fn(i)` for i in [0, n) with at most `concurrency` in flight; returns the results. */
export async function pool (n, concurrency, fn) {
  const results = new Array(n)
  let next = 0
  async function worker () {
    while (next < n) {
      const i = next++
      results[i] = await fn(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return results
}
