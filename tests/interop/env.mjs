// What tests/pds_interop.rs hands the node tests: the node's URL (as `http://localhost:PORT`,
// the host its did:web and DID documents name) and the accounts it created.
import assert from 'node:assert/strict'

function need(name) {
  const v = process.env[name]
  assert.ok(v, `${name} is not set: run these tests through \`cargo test --test pds_interop\``)
  return v
}

/** `http://localhost:PORT` */
export const baseUrl = need('ATCR_URL')
/** `did:web:localhost%3APORT` */
export const nodeDid = need('ATCR_NODE_DID')
/** `[{ name, handle, did, password }]`, from `atcr user add`. */
export const users = JSON.parse(need('ATCR_USERS'))

export const [alice, bob] = users

/** A `subscribeRepos` subscription from `cursor` through the reference client, ended by `signal`. */
export async function firehose(cursor, signal) {
  const { Subscription } = await import('@atproto/xrpc-server')
  return new Subscription({
    service: baseUrl.replace(/^http/, 'ws'),
    method: 'com.atproto.sync.subscribeRepos',
    signal,
    getParams: () => ({ cursor }),
    validate: (v) => v,
  })
}
