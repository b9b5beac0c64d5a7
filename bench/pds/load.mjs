// One PDS benchmark run: node load.mjs URL IDENTIFIER PASSWORD. Prints a JSON object: the
// round trip of a request that does nothing, sequential and 8-client createRecord rates on one
// repository, getRecord p50/p99, and the time to download the repository (getRepo) once it
// holds 5,000 records.
import http from 'node:http'

const [url, identifier, password] = process.argv.slice(2)
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 500)
const CLIENTS = 8
const REPO_RECORDS = 5000
const GETS = 1000
const collection = 'com.example.bench.item'

// BENCH_CLIENT=http (default): node:http with keep-alive connections, little client time per
// request. BENCH_CLIENT=fetch: one fetch() per request (undici's pooled keep-alive
// connections), the way most applications call a PDS; it costs more client time per request.
const CLIENT = process.env.BENCH_CLIENT ?? 'http'
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
const base = new URL(url)
const answer = (nsid, status, buf) => {
  if (status !== 200) throw new Error(`${nsid}: ${status} ${buf}`)
  return nsid === 'com.atproto.sync.getRepo' ? buf : JSON.parse(buf)
}
const viaHttp = (method, nsid, { token, body, query } = {}) =>
  new Promise((resolve, reject) => {
    const q = query ? `?${new URLSearchParams(query)}` : ''
    const payload = body ? JSON.stringify(body) : undefined
    const req = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method,
        path: `/xrpc/${nsid}${q}`,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      },
      (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          try {
            resolve(answer(nsid, res.statusCode, Buffer.concat(chunks)))
          } catch (e) {
            reject(e)
          }
        })
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
const viaFetch = async (method, nsid, { token, body, query } = {}) => {
  const q = query ? `?${new URLSearchParams(query)}` : ''
  const res = await fetch(new URL(`/xrpc/${nsid}${q}`, base), {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  })
  return answer(nsid, res.status, Buffer.from(await res.arrayBuffer()))
}
const xrpc = CLIENT === 'fetch' ? viaFetch : viaHttp

const session = await xrpc('POST', 'com.atproto.server.createSession', {
  body: { identifier, password },
})
const { did, accessJwt: token } = session
let n = 0
const create = async () => {
  const i = n++
  const record = { $type: collection, n: i, text: `record ${i}`, createdAt: new Date().toISOString() }
  const out = await xrpc('POST', 'com.atproto.repo.createRecord', {
    token,
    body: { repo: did, collection, record },
  })
  return out.uri.split('/').pop()
}
const rkeys = []
const timed = async (f) => {
  const t0 = process.hrtime.bigint()
  await f()
  return Number(process.hrtime.bigint() - t0) / 1e9
}

const result = {}
// The client's own round trip for a request that does nothing (describeServer), averaged as
// the sequential rate is: with the log's sync, the floor under a sequential write.
const NOOPS = 1000
for (let i = 0; i < 100; i++) await xrpc('GET', 'com.atproto.server.describeServer')
const noops = await timed(async () => {
  for (let i = 0; i < NOOPS; i++) await xrpc('GET', 'com.atproto.server.describeServer')
})
result.noop_round_trip_us = Math.round((noops / NOOPS) * 1e6)
const seq = await timed(async () => {
  for (let i = 0; i < SEQUENTIAL; i++) rkeys.push(await create())
})
result.create_sequential_per_s = Math.round(SEQUENTIAL / seq)
const conc = await timed(() =>
  Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (let i = 0; i < SEQUENTIAL / CLIENTS; i++) rkeys.push(await create())
    }),
  ),
)
result.create_8_clients_per_s = Math.round(SEQUENTIAL / conc)

const latencies = []
for (let i = 0; i < GETS; i++) {
  const rkey = rkeys[(i * 7919) % rkeys.length]
  latencies.push(await timed(() => xrpc('GET', 'com.atproto.repo.getRecord', { query: { repo: did, collection, rkey } })))
}
latencies.sort((a, b) => a - b)
const ms = (s) => Math.round(s * 1e5) / 100
result.get_record_p50_ms = ms(latencies[Math.floor(GETS * 0.5)])
result.get_record_p99_ms = ms(latencies[Math.floor(GETS * 0.99)])

// Fill to 5,000 records with 8 clients, then download the repository three times.
const fill = await timed(() =>
  Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (n < REPO_RECORDS) await create()
    }),
  ),
)
result.fill_per_s = Math.round((REPO_RECORDS - 2 * SEQUENTIAL) / fill)
const downloads = []
let bytes = 0
for (let i = 0; i < 3; i++) {
  downloads.push(await timed(async () => { bytes = (await xrpc('GET', 'com.atproto.sync.getRepo', { query: { did } })).length }))
}
downloads.sort((a, b) => a - b)
result.get_repo_5000_ms = ms(downloads[1])
result.get_repo_bytes = bytes
console.log(JSON.stringify(result))
agent.destroy()
