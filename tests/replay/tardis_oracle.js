// The oracle of the differential suite: tardis-dev's own replayNormalized, normalizers and
// computables over raw frames written into its cache directory, so nothing is fetched.
//
//   node tardis_oracle.js filters SPEC.json   -> prints the filters replayNormalized asks for
//   node tardis_oracle.js run SPEC.json       -> writes the cache from SPEC.raw, prints normalized lines
//
// SPEC: {"modules": <node_modules dir>, "cacheDir", "raw": <file of ticktape /replay NDJSON lines>,
//        "options": <one /replay-normalized options object>}
// Lines are serialized as Tardis Machine 3.35.5 writes them: JSON.stringify of the message, with
// localTimestamp carrying its microseconds (6 fractional digits) and every other date as
// Date.toJSON writes it (3 digits).
'use strict'
const fs = require('fs')
const path = require('path')
const zlib = require('zlib')

const spec = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))
const td = require(path.join(spec.modules, 'tardis-dev'))
const handy = require(path.join(spec.modules, 'tardis-dev', 'dist', 'handy'))

// tardis-machine's helpers: data type names -> normalizers and computables
const UNITS = { ms: 1, s: 1000, m: 60 * 1000 }
function unitOf(s) {
  for (const u of ['ms', 's', 'm']) if (s.endsWith(u)) return [Number(s.slice(0, -u.length)), UNITS[u]]
  throw new Error('invalid interval ' + s)
}
function normalizers(dataTypes) {
  const out = []
  if (dataTypes.includes('trade') || dataTypes.some((d) => d.startsWith('trade_bar_'))) out.push(td.normalizeTrades)
  if (dataTypes.includes('book_change') || dataTypes.some((d) => d.startsWith('book_snapshot_') || d.startsWith('quote'))) {
    out.push(td.normalizeBookChanges)
  }
  if (dataTypes.includes('book_ticker')) out.push(td.normalizeBookTickers)
  if (dataTypes.includes('derivative_ticker')) out.push(td.normalizeDerivativeTickers)
  if (dataTypes.includes('liquidation')) out.push(td.normalizeLiquidations)
  return out
}
function computables(dataTypes) {
  const out = []
  for (const d of dataTypes) {
    if (d.startsWith('trade_bar_')) {
      const rest = d.slice('trade_bar_'.length)
      let kind, interval
      if (rest.endsWith('ticks')) [kind, interval] = ['tick', Number(rest.slice(0, -5))]
      else if (rest.endsWith('vol')) [kind, interval] = ['volume', Number(rest.slice(0, -3))]
      else {
        const [v, m] = unitOf(rest)
        ;[kind, interval] = ['time', v * m]
      }
      out.push(td.computeTradeBars({ kind, interval, name: d }))
    } else if (d.startsWith('book_snapshot_')) {
      const parts = d.slice('book_snapshot_'.length).split('_')
      const depth = Number(parts[0])
      const grouping = parts.length === 3 ? Number(parts[1].replace('grouped', '')) : undefined
      const [v, m] = unitOf(parts[parts.length - 1])
      out.push(td.computeBookSnapshots({ depth, grouping, interval: v * m, name: d }))
    } else if (d === 'quote') {
      out.push(td.computeBookSnapshots({ depth: 1, interval: 0, name: d }))
    } else if (d.startsWith('quote_')) {
      const [v, m] = unitOf(d.slice('quote_'.length))
      out.push(td.computeBookSnapshots({ depth: 1, interval: v * m, name: d }))
    }
  }
  return out
}
function wanted(dataTypes) {
  return dataTypes.map((d) =>
    d.startsWith('trade_bar_') ? 'trade_bar' : d.startsWith('book_snapshot_') || d.startsWith('quote') ? 'book_snapshot' : d
  )
}

const opts = spec.options
const fromDate = handy.parseAsUTCDate(opts.from)
const toDate = handy.parseAsUTCDate(opts.to)
const mappers = normalizers(opts.dataTypes).map((n) => n(opts.exchange, fromDate))
const filters = handy.getFilters(mappers, opts.symbols)

if (process.argv[2] === 'filters') {
  process.stdout.write(JSON.stringify(filters) + '\n')
  process.exit(0)
}

// the cache, exactly where tardis-dev's worker looks before any download
const optimized = handy.optimizeFilters(JSON.parse(JSON.stringify(filters)))
const feedDir = path.join(spec.cacheDir, 'feeds', opts.exchange, handy.sha256(optimized))
const byMinute = new Map()
for (const line of fs.readFileSync(spec.raw, 'utf8').split('\n').slice(0, -1)) {
  let ts, frame
  if (line.length === 0) {
    frame = '' // a disconnect: an empty line in the slice of the last frame's minute
    ts = byMinute.lastKey
  } else {
    ts = line.slice(19, 47)
    frame = line.slice(59, -1)
  }
  if (ts === undefined) continue
  const key = Math.floor(new Date(ts).getTime() / 60000)
  byMinute.lastKey = ts
  if (!byMinute.has(key)) byMinute.set(key, [])
  byMinute.get(key).push(frame === '' ? '' : `${ts} ${frame}`)
}
for (let t = fromDate.getTime(); t < toDate.getTime(); t += 60000) {
  const file = path.join(feedDir, handy.formatDateToPath(new Date(t)) + '.json.gz')
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const lines = byMinute.get(Math.floor(t / 60000)) || []
  fs.writeFileSync(file, zlib.gzipSync(lines.length ? lines.join('\n') + '\n' : ''))
}

td.init({ cacheDir: spec.cacheDir, endpoint: 'http://127.0.0.1:9/v1', apiKey: '' })

function iso6(date) {
  const base = date.toISOString().slice(0, 23)
  const us = String(date.μs || 0).padStart(3, '0')
  return `${base}${us}Z`
}
function serialize(message) {
  return JSON.stringify(message, function (key, value) {
    if (key === 'localTimestamp' && this[key] instanceof Date) return iso6(this[key])
    return value
  })
}

async function main() {
  const types = wanted(opts.dataTypes)
  let messages = td.replayNormalized(opts, ...normalizers(opts.dataTypes))
  const comps = computables(opts.dataTypes)
  if (comps.length) messages = td.compute(messages, ...comps)
  const out = []
  for await (const m of messages) {
    if (m.type !== 'disconnect' && !types.includes(m.type)) continue
    out.push(serialize(m))
    if (out.length >= 4096) process.stdout.write(out.splice(0).join('\n') + '\n')
  }
  if (out.length) process.stdout.write(out.join('\n') + '\n')
}
main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e))
  process.exit(1)
})
