// The bench's chart: an SVG written by hand (no dependency), next to the table. For each metric, each
// variant's ratio to bare Socket.IO measured in the same round: a bar from 1 to the median, a whisker
// from the lowest to the highest round, the median written out, and the goal as a dashed line. Absolute
// figures (store reads per session in a reconnect storm) get a panel of their own.

const colors = { b: '#1f77b4', c: '#d62728', d: '#2ca02c', e: '#9467bd', f: '#ff7f0e' }
const font = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'

function esc (text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

const n2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')

/**
 * rows: bench/run.mjs's summary rows; variants: the variants measured ({ key, short }); machine,
 * versions, date, commit, rounds: printed under the title; authority: bench/authority.mjs's results.
 */
export function renderChart ({ rows, variants, machine, versions, date, commit, rounds, authority }) {
  const keys = variants.map((v) => v.key).filter((k) => k !== 'a')
  const ratioRows = rows.filter((r) => r.chart !== undefined && !r.absolute && keys.some((k) => r[k] !== undefined))
  const absoluteRows = rows.filter((r) => r.absolute && keys.some((k) => Number.isFinite(r[k]?.median)))

  const width = 980
  const labelX = 16
  const plotX0 = 300
  const plotX1 = width - 70
  const rowH = 15
  const groupGap = 14
  const headerH = 18

  // The ratio axis: from below the lowest whisker to above the highest, 1 always inside.
  const all = ratioRows.flatMap((r) => keys.flatMap((k) => (r[k] === undefined ? [] : [r[k].min, r[k].max, r[k].ratio]))).filter(Number.isFinite)
  const lo = Math.min(0.8, Math.floor((Math.min(...all, 1) - 0.05) * 10) / 10)
  const hi = Math.min(2, Math.max(1.4, Math.ceil((Math.max(...all, 1) + 0.05) * 10) / 10))
  const x = (v) => plotX0 + ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * (plotX1 - plotX0)

  const out = []
  let y = 20
  out.push(`<text x="${labelX}" y="${y}" font-size="16" font-weight="600" ${font}>fastify-socket.io-session: cost relative to bare Socket.IO (same run, same rounds; 1 = bare)</text>`)
  y += 18
  const machineLine = `${machine.nproc} vCPU ${machine.cpu ?? ''}${machine.mhz ? ` (${machine.mhz} MHz)` : ''}, ${machine.memoryGB ?? '?'} GB, ${machine.os ?? machine.platform}, Node.js ${machine.node}; ${date?.slice(0, 10) ?? ''}${commit ? `, commit ${commit}` : ''}; ${rounds} rounds (CPU: ${rounds * 2})`
  out.push(`<text x="${labelX}" y="${y}" font-size="11" fill="#444" ${font}>${esc(machineLine)}</text>`)
  y += 14
  const versionList = Object.entries(versions ?? {}).map(([k, v]) => `${k} ${v}`)
  for (let i = 0; i < versionList.length; i += 7) {
    out.push(`<text x="${labelX}" y="${y}" font-size="11" fill="#444" ${font}>${esc(versionList.slice(i, i + 7).join(', '))}</text>`)
    y += 14
  }
  y += 6

  // Legend.
  let lx = labelX
  for (const v of variants.filter((v) => v.key !== 'a')) {
    out.push(`<rect x="${lx}" y="${y - 9}" width="12" height="10" fill="${colors[v.key]}"/>`)
    const label = `(${v.key}) ${v.short}`
    out.push(`<text x="${lx + 16}" y="${y}" font-size="12" ${font}>${esc(label)}</text>`)
    lx += 30 + label.length * 6.6
  }
  y += 16
  out.push(`<text x="${labelX}" y="${y}" font-size="11" fill="#444" ${font}>bar: ratio to bare Socket.IO in the same round, median of the rounds; whisker: lowest–highest round (→: beyond the axis); dashed: goal</text>`)
  y += 16

  // Axis.
  const axisTop = y
  const ticks = []
  for (let t = Math.ceil(lo * 10) / 10; t <= hi + 1e-9; t += hi - lo > 1.2 ? 0.2 : 0.1) ticks.push(Number(t.toFixed(1)))
  const plotTop = y + 14
  y = plotTop
  const body = []
  for (const r of ratioRows) {
    body.push(`<text x="${labelX}" y="${y + 12}" font-size="12" font-weight="600" ${font}>${esc(r.chart)}</text>`)
    body.push(`<text x="${plotX1}" y="${y + 12}" font-size="10" fill="#555" text-anchor="end" ${font}>bare Socket.IO: ${esc(formatAbsolute(r.a.median, r))}</text>`)
    const top = y
    y += headerH
    for (const k of keys) {
      const cell = r[k]
      if (cell === undefined) continue
      const cy = y + rowH / 2
      const m = cell.ratio
      if (Number.isFinite(m)) {
        const x1 = x(1)
        const xm = x(m)
        body.push(`<rect x="${Math.min(x1, xm).toFixed(1)}" y="${(cy - 5).toFixed(1)}" width="${Math.max(1, Math.abs(xm - x1)).toFixed(1)}" height="10" fill="${colors[k]}" fill-opacity="0.75"/>`)
        if (Number.isFinite(cell.min) && Number.isFinite(cell.max)) {
          const a = x(cell.min)
          const b = x(cell.max)
          body.push(`<line x1="${a.toFixed(1)}" y1="${cy}" x2="${b.toFixed(1)}" y2="${cy}" stroke="#222" stroke-width="1"/>`)
          body.push(`<line x1="${a.toFixed(1)}" y1="${cy - 4}" x2="${a.toFixed(1)}" y2="${cy + 4}" stroke="#222" stroke-width="1"/>`)
          body.push(`<line x1="${b.toFixed(1)}" y1="${cy - 4}" x2="${b.toFixed(1)}" y2="${cy + 4}" stroke="#222" stroke-width="1"/>`)
        }
        const clipped = cell.max > hi || m > hi ? ' →' : ''
        body.push(`<text x="${plotX1 + 6}" y="${cy + 4}" font-size="11" ${font}>${n2(m)}×${clipped}</text>`)
      }
      body.push(`<text x="${plotX0 - 8}" y="${cy + 4}" font-size="11" fill="${colors[k]}" text-anchor="end" ${font}>(${k})</text>`)
      y += rowH
    }
    if (r.target !== undefined) {
      const tx = x(r.target)
      body.push(`<line x1="${tx.toFixed(1)}" y1="${top + headerH - 2}" x2="${tx.toFixed(1)}" y2="${y + 2}" stroke="#000" stroke-dasharray="4 3" stroke-width="1"/>`)
      body.push(`<text x="${(tx + 3).toFixed(1)}" y="${top + headerH - 4}" font-size="9" fill="#000" ${font}>goal ≤ ${r.target.toFixed(2)}×</text>`)
    }
    y += groupGap
  }
  const plotBottom = y - groupGap + 4
  for (const t of ticks) {
    const tx = x(t)
    out.push(`<line x1="${tx.toFixed(1)}" y1="${plotTop - 4}" x2="${tx.toFixed(1)}" y2="${plotBottom}" stroke="${t === 1 ? '#000' : '#ddd'}" stroke-width="${t === 1 ? 1.2 : 1}"/>`)
    out.push(`<text x="${tx.toFixed(1)}" y="${axisTop + 6}" font-size="10" text-anchor="middle" fill="#333" ${font}>${t.toFixed(1)}×</text>`)
  }
  out.push(...body)

  // Absolute figures.
  if (absoluteRows.length > 0) {
    y += 6
    for (const r of absoluteRows) {
      const max = Math.max(...keys.map((k) => r[k]?.max).filter(Number.isFinite), r.target ?? 1) * 1.1
      const ax = (v) => plotX0 + (Math.max(0, v) / max) * (plotX1 - plotX0)
      out.push(`<text x="${labelX}" y="${y + 12}" font-size="12" font-weight="600" ${font}>${esc(r.metric)}</text>`)
      y += headerH
      const top = y
      y += headerH
      for (const k of keys) {
        const cell = r[k]
        if (!Number.isFinite(cell?.median)) continue
        const cy = y + rowH / 2
        out.push(`<rect x="${plotX0}" y="${(cy - 5).toFixed(1)}" width="${Math.max(1, ax(cell.median) - plotX0).toFixed(1)}" height="10" fill="${colors[k]}" fill-opacity="0.75"/>`)
        out.push(`<line x1="${ax(cell.min).toFixed(1)}" y1="${cy}" x2="${ax(cell.max).toFixed(1)}" y2="${cy}" stroke="#222" stroke-width="1"/>`)
        out.push(`<text x="${plotX0 - 8}" y="${cy + 4}" font-size="11" fill="${colors[k]}" text-anchor="end" ${font}>(${k})</text>`)
        out.push(`<text x="${plotX1 + 6}" y="${cy + 4}" font-size="11" ${font}>${n2(cell.median)}</text>`)
        y += rowH
      }
      out.push(`<line x1="${plotX0}" y1="${top + headerH - 2}" x2="${plotX0}" y2="${y + 2}" stroke="#000" stroke-width="1"/>`)
      if (r.target !== undefined) {
        const tx = ax(r.target)
        out.push(`<line x1="${tx.toFixed(1)}" y1="${top + headerH - 2}" x2="${tx.toFixed(1)}" y2="${y + 2}" stroke="#000" stroke-dasharray="4 3" stroke-width="1"/>`)
        out.push(`<text x="${(tx + 3).toFixed(1)}" y="${top + headerH - 4}" font-size="9" ${font}>goal ≤ ${r.target.toFixed(2)} for (b), (d)</text>`)
      }
      for (let t = 0; t <= max; t += max > 6 ? 2 : 1) {
        out.push(`<text x="${ax(t).toFixed(1)}" y="${y + 14}" font-size="10" text-anchor="middle" fill="#333" ${font}>${t}</text>`)
      }
      y += 22 + groupGap
    }
  }

  // Live authority (bench/authority.mjs): its own references, so its own panel.
  if (authority !== undefined) {
    const items = []
    for (const l of authority.latency ?? []) {
      if (l.ratioToBroadcast?.range === undefined || l.scenario === 'ping') continue
      items.push({ label: `${l.scenario}: request → sockets on B, ÷ a bare broadcast`, median: l.ratioToBroadcast.median, min: l.ratioToBroadcast.range[0], max: l.ratioToBroadcast.range[1] })
    }
    for (const t of authority.throughput ?? []) {
      if (t.ratio?.range === undefined || !/CPU/.test(t.metric)) continue
      const what = t.metric.replace(/ \(µs\)$/, '').replace('redis-server CPU per request', 'Redis CPU/request').replace('server CPU per request', 'CPU/request')
      items.push({ label: `${t.topology === 'single' ? 'one node' : 'two nodes'}: ${what}, sync on ÷ off`, median: t.ratio.median, min: t.ratio.range[0], max: t.ratio.range[1] })
    }
    if (items.length > 0) {
      y += 6
      out.push(`<text x="${labelX}" y="${y + 12}" font-size="12" font-weight="600" ${font}>${esc('live authority (bench/authority.mjs, two nodes on Redis): ratios to its own references')}</text>`)
      y += headerH + 4
      const top = y
      const amax = Math.min(3, Math.max(1.6, ...items.map((i) => i.max).filter(Number.isFinite)))
      const ax = (v) => plotX0 + (Math.min(Math.max(v, 0), amax) / amax) * (plotX1 - plotX0)
      for (const item of items) {
        const cy = y + rowH / 2
        out.push(`<text x="${labelX}" y="${cy + 4}" font-size="10" ${font}>${esc(item.label.slice(0, 52))}</text>`)
        out.push(`<rect x="${ax(1).toFixed(1)}" y="${(cy - 5).toFixed(1)}" width="${Math.max(1, Math.abs(ax(item.median) - ax(1))).toFixed(1)}" height="10" fill="#ff7f0e" fill-opacity="0.75" transform="${item.median < 1 ? `translate(${(ax(item.median) - ax(1)).toFixed(1)} 0)` : ''}"/>`)
        out.push(`<line x1="${ax(item.min).toFixed(1)}" y1="${cy}" x2="${ax(item.max).toFixed(1)}" y2="${cy}" stroke="#222" stroke-width="1"/>`)
        out.push(`<text x="${plotX1 + 6}" y="${cy + 4}" font-size="11" ${font}>${n2(item.median)}×${item.max > amax ? ' →' : ''}</text>`)
        y += rowH
      }
      out.push(`<line x1="${ax(1).toFixed(1)}" y1="${top - 4}" x2="${ax(1).toFixed(1)}" y2="${y + 2}" stroke="#000" stroke-width="1.2"/>`)
      for (let t = 0; t <= amax + 1e-9; t += 0.5) out.push(`<text x="${ax(t).toFixed(1)}" y="${y + 14}" font-size="10" text-anchor="middle" fill="#333" ${font}>${t.toFixed(1)}×</text>`)
      y += 22
    }
  }

  const height = Math.ceil(y + 8)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n${out.join('\n')}\n</svg>\n`
}

function formatAbsolute (value, row) {
  if (!Number.isFinite(value)) return 'n/a'
  const unit = /\(([^)]*)\)\s*$/.exec(row.metric)?.[1] ?? ''
  return `${value.toFixed(row.digits ?? 1)} ${unit}`.trim()
}
