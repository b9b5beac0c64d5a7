// The reference PDS (@atproto/pds) as the "other PDS" of tests/federation.rs, with its own PLC
// directory (@did-plc/server, in memory), both on 127.0.0.1 on ports the system picks. Creates
// two accounts (carol.test, dave.test), each with an app password, prints one JSON line
//   {"plc", "url", "port", "admin", "users": [{"handle", "did", "password", "appPassword"}, …]}
// ("admin": the PDS's admin password) and serves until killed or its stdin closes. A line
// "stop" on stdin stops the PDS (the PLC directory stays up), "start" starts it again on the
// same port and data; "tamper on" makes every #commit frame of com.atproto.sync.subscribeRepos
// from then on signed by another key (tamper.mjs), "tamper off" ends that; each is answered with
// a line "ok" once done. State goes to $ATCR_PDS_DIR (the test's temporary directory).
import crypto from 'node:crypto'
import dns from 'node:dns'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import readline from 'node:readline'
import { AtpAgent } from '@atproto/api'
import { PlcServer, Database } from '@did-plc/server'
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'
import WebSocket from 'ws'
import { tamperCommitFrame } from './tamper.mjs'

// Host names in $ATCR_PDS_MAP_HOSTS (comma-separated) resolve to 127.0.0.1 in this process: a
// test's stand-in for DNS, e.g. the HTTPS name an atcr node serves its OAuth client metadata
// at (with that node's CA in NODE_EXTRA_CA_CERTS).
const mapped = new Set((process.env.ATCR_PDS_MAP_HOSTS ?? '').split(',').filter(Boolean))
if (mapped.size > 0) {
  const lookup = dns.lookup
  dns.lookup = function (hostname, options, callback) {
    if (!mapped.has(hostname)) return lookup.call(this, hostname, options, callback)
    const cb = typeof options === 'function' ? options : callback
    const all = typeof options === 'object' && options?.all
    process.nextTick(() =>
      all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4),
    )
  }
}

// Both servers call listen(port) on every interface: keep them on loopback.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}

// subscribeRepos frames leave through WebSocket#send (@atproto/xrpc-server's XrpcStreamServer,
// on the one `ws` in node_modules), one at a time: the next waits for this one's callback, so
// rewriting a frame asynchronously keeps their order.
let tamper = false
const send = WebSocket.prototype.send
WebSocket.prototype.send = function (data, options, cb) {
  if (!tamper) return send.call(this, data, options, cb)
  tamperCommitFrame(data).then(
    (bytes) => send.call(this, bytes, options, cb),
    (err) => (typeof options === 'function' ? options : cb)?.(err),
  )
}

const dir = process.env.ATCR_PDS_DIR
if (!dir) throw new Error('ATCR_PDS_DIR is not set: run this through `cargo test --test federation`')

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject)
    listen.call(s, 0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

const plcServer = PlcServer.create({ db: Database.mock() })
const plc = await new Promise((resolve) => {
  const s = http.createServer(plcServer.app).listen(0, '127.0.0.1', () =>
    resolve(`http://127.0.0.1:${s.address().port}`),
  )
})

const port = await freePort()
const admin = crypto.randomBytes(16).toString('hex')
Object.assign(process.env, {
  PDS_PORT: String(port),
  PDS_HOSTNAME: 'localhost',
  PDS_DEV_MODE: 'true',
  PDS_INVITE_REQUIRED: 'false',
  PDS_DID_PLC_URL: plc,
  PDS_DATA_DIRECTORY: dir,
  PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'blobs'),
  PDS_JWT_SECRET: crypto.randomBytes(16).toString('hex'),
  PDS_ADMIN_PASSWORD: admin,
  PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: crypto.randomBytes(32).toString('hex'),
  PDS_SERVICE_HANDLE_DOMAINS: '.test',
  LOG_ENABLED: 'false',
})
async function startPds() {
  const env = readEnv()
  const pds = await PDS.create(envToCfg(env), envToSecrets(env))
  await pds.start()
  return pds
}
let pds = await startPds()

const url = `http://localhost:${port}`
const users = []
for (const name of ['carol', 'dave']) {
  const agent = new AtpAgent({ service: url })
  const handle = `${name}.test`
  const password = crypto.randomBytes(12).toString('hex')
  const account = await agent.createAccount({ email: `${name}@example.com`, handle, password })
  const app = await agent.com.atproto.server.createAppPassword({ name: 'atcr' })
  users.push({ handle, did: account.data.did, password, appPassword: app.data.password })
}
console.log(JSON.stringify({ plc, url, port, admin, users }))

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === 'stop' && pds) {
    await pds.destroy()
    pds = null
  } else if (line === 'start' && !pds) {
    pds = await startPds()
  } else if (line === 'tamper on' || line === 'tamper off') {
    tamper = line === 'tamper on'
  }
  console.log('ok')
}
process.exit(0)
