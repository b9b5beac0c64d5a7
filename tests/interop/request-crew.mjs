// A user of the reference PDS asks to join atcr's hold (io.atcr.hold.requestCrew) the way
// ATCR's AppView asks for its users: with a service token their own PDS signs
// (com.atproto.server.getServiceAuth, aud = the hold's DID, lxm = the method). Used by
// tests/federation.rs. Prints one JSON line: {"status", "body"} of the hold's answer.
// Usage: node request-crew.mjs PDS_URL HANDLE PASSWORD ATCR_URL HOLD_DID
import assert from 'node:assert/strict'
import { AtpAgent } from '@atproto/api'

const [service, identifier, password, atcr, hold] = process.argv.slice(2)
assert.ok(hold, 'usage: request-crew.mjs PDS_URL HANDLE PASSWORD ATCR_URL HOLD_DID')
const agent = new AtpAgent({ service })
await agent.login({ identifier, password })
const lxm = 'io.atcr.hold.requestCrew'
const { token } = (await agent.com.atproto.server.getServiceAuth({ aud: hold, lxm })).data
const res = await fetch(`${atcr}/xrpc/${lxm}`, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  body: '{}',
})
console.log(JSON.stringify({ status: res.status, body: await res.json().catch(() => null) }))
