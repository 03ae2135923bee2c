// The Node tardis-dev client (npm) against ticktape's replay server, unchanged but for its endpoints.
//
//   node tardis_node_client.js SPEC.json
//
// SPEC: {"modules": <node_modules dir>, "endpoint": "https://127.0.0.1:PORT/v1", "cacheDir", "replay":
//        <replay() options>, "datasets": <downloadDatasets() options>}
// Prints one JSON line per replayed message ({"localTimestamp", "message"}; null for a disconnect), then
// {"datasets": "done"} once downloadDatasets has written its files.
'use strict'
const fs = require('fs')
const path = require('path')

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const td = require(path.join(spec.modules, 'tardis-dev'))

// tardis-dev 13.35.3's downloadDatasets reads its options once, when the package is required
// (dist/downloaddatasets.js: `const options = getOptions()` at module level), and init() replaces the
// options object rather than updating it: init({datasetsEndpoint}) never reaches downloadDatasets, which
// always fetches https://datasets.tardis.dev. The object it captured is the one getOptions() returns
// before init(), so that one gets the endpoint too.
const captured = require(path.join(spec.modules, 'tardis-dev', 'dist', 'options')).getOptions()

async function main() {
  td.init({ endpoint: spec.endpoint, datasetsEndpoint: spec.endpoint, cacheDir: spec.cacheDir })
  captured.datasetsEndpoint = spec.endpoint
  const out = []
  for await (const m of td.replay(spec.replay)) {
    out.push(m === undefined ? 'null' : JSON.stringify({ localTimestamp: m.localTimestamp.toISOString(), message: m.message }))
  }
  process.stdout.write(out.join('\n') + '\n')
  await td.downloadDatasets(spec.datasets)
  process.stdout.write(JSON.stringify({ datasets: 'done' }) + '\n')
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : String(e))
    process.exit(1)
  }
)
