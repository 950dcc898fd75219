// Coverage is measured on the plugin's source only (not the built dist/, the demo, or test helpers).
import { readdirSync } from 'node:fs'

const sources = readdirSync(new URL('../lib/', import.meta.url)).filter((file) => file.endsWith('.ts')).map((file) => `lib/${file}`)

export default function coverageMap () {
  return sources
}
