// Writes one record directly on the reference PDS with @atproto/api (putRecord), as its user
// would with any ATProto client: tests/federation_oauth.rs checks that atcr takes it in
// (through the firehose), e.g. an io.atcr.repo.page README.
// Usage: node remote-put.mjs PDS_URL HANDLE PASSWORD COLLECTION RKEY RECORD_JSON
import assert from 'node:assert/strict'
import { AtpAgent } from '@atproto/api'

const [service, identifier, password, collection, rkey, json] = process.argv.slice(2)
assert.ok(json, 'usage: remote-put.mjs PDS_URL HANDLE PASSWORD COLLECTION RKEY RECORD_JSON')
const agent = new AtpAgent({ service })
await agent.login({ identifier, password })
const record = { $type: collection, ...JSON.parse(json) }
const put = await agent.com.atproto.repo.putRecord({ repo: agent.session.did, collection, rkey, record })
console.log(JSON.stringify({ uri: put.data.uri }))
