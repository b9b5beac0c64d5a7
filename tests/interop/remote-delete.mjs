// Deletes one record directly on the reference PDS with @atproto/api, as its user would with
// any ATProto client: tests/federation.rs checks that atcr notices (through the firehose).
// Usage: node remote-delete.mjs PDS_URL HANDLE PASSWORD COLLECTION RKEY
import assert from 'node:assert/strict'
import { AtpAgent } from '@atproto/api'

const [service, identifier, password, collection, rkey] = process.argv.slice(2)
assert.ok(rkey, 'usage: remote-delete.mjs PDS_URL HANDLE PASSWORD COLLECTION RKEY')
const agent = new AtpAgent({ service })
await agent.login({ identifier, password })
await agent.com.atproto.repo.deleteRecord({ repo: agent.session.did, collection, rkey })
console.log(JSON.stringify({ deleted: `${collection}/${rkey}` }))
