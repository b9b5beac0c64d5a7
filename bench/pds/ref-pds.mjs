// The reference PDS (@atproto/pds) with an in-memory PLC directory (@did-plc/server), both on
// 127.0.0.1 only, for bench/pds.sh. Prints one JSON line {url, pid, handle, password} once an
// account exists, then serves until SIGTERM.
import http from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PlcServer, Database } from '@did-plc/server'
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'
import { Secp256k1Keypair } from '@atproto/crypto'

const listen = (app) =>
  new Promise((resolve) => {
    const server = http.createServer(app).listen(0, '127.0.0.1', () => resolve(server))
  })
const freePort = async () => {
  const s = await listen((_req, res) => res.end())
  const { port } = s.address()
  await new Promise((r) => s.close(r))
  return port
}

const plc = PlcServer.create({ db: Database.mock() })
const plcServer = await listen(plc.app)
const plcUrl = `http://127.0.0.1:${plcServer.address().port}`

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ref-pds-'))
const port = await freePort()
const rotation = await Secp256k1Keypair.create({ exportable: true })
Object.assign(process.env, {
  PDS_PORT: String(port),
  PDS_HOSTNAME: 'localhost',
  PDS_DEV_MODE: 'true',
  PDS_DATA_DIRECTORY: dir,
  PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'blobs'),
  PDS_DID_PLC_URL: plcUrl,
  PDS_JWT_SECRET: 'bench-jwt-secret',
  PDS_ADMIN_PASSWORD: 'bench-admin',
  PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: Buffer.from(await rotation.export()).toString('hex'),
  PDS_INVITE_REQUIRED: 'false',
  PDS_SERVICE_HANDLE_DOMAINS: '.test',
  PDS_RATE_LIMITS_ENABLED: 'false',
  LOG_ENABLED: 'false',
})
const env = readEnv()
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
// As PDS.start() does, but listening on loopback only.
await pds.ctx.sequencer.start()
const server = pds.app.listen(port, '127.0.0.1')
await new Promise((r) => server.once('listening', r))

const url = `http://localhost:${port}`
const handle = 'bench.test'
const password = 'bench-password'
const res = await fetch(`${url}/xrpc/com.atproto.server.createAccount`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ handle, password, email: 'bench@example.com' }),
})
if (!res.ok) throw new Error(`createAccount: ${res.status} ${await res.text()}`)
console.log(JSON.stringify({ url, pid: process.pid, handle, password }))

const stop = async () => {
  server.close()
  await pds.destroy().catch(() => {})
  plcServer.close()
  fs.rmSync(dir, { recursive: true, force: true })
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
