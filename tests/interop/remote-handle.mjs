// Changes a user's handle directly on the reference PDS with @atproto/api
// (com.atproto.identity.updateHandle), as its user would with any ATProto client: the PDS
// updates the DID document and emits #identity. Used by tests/federation.rs.
// Usage: node remote-handle.mjs PDS_URL HANDLE PASSWORD NEW_HANDLE
import assert from 'node:assert/strict'
import { AtpAgent } from '@atproto/api'

const [service, identifier, password, handle] = process.argv.slice(2)
assert.ok(handle, 'usage: remote-handle.mjs PDS_URL HANDLE PASSWORD NEW_HANDLE')
const agent = new AtpAgent({ service })
await agent.login({ identifier, password })
await agent.com.atproto.identity.updateHandle({ handle })
console.log(JSON.stringify({ handle }))
