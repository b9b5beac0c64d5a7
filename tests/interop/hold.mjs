// The hold's upload XRPC and blob reads, with service tokens @atproto/api's AtpAgent requested
// from the node's PDS (`com.atproto.server.getServiceAuth`, aud = the hold's DID).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { alice, baseUrl, nodeDid } from './env.mjs'

const JSON_TYPE = { 'content-type': 'application/json' }

/** A service token for the hold and `lxm`, through the reference client. */
async function serviceToken(agent, lxm) {
  const { data } = await agent.com.atproto.server.getServiceAuth({ aud: nodeDid, lxm })
  return data.token
}

/** A call of a hold method with a fresh token for it; the status and the JSON answer. */
async function call(agent, nsid, body, { headers = JSON_TYPE, method = 'POST', url, lxm = nsid } = {}) {
  const token = await serviceToken(agent, lxm)
  const res = await fetch(url ?? `${baseUrl}/xrpc/${nsid}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...headers },
    body,
  })
  return { status: res.status, body: await res.json() }
}

test('a token AtpAgent requested uploads a blob through the hold, read back by getBlob', async () => {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: alice.handle, password: alice.password })
  const bytes = Buffer.from('layer bytes sent by node')
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`

  let r = await call(agent, 'io.atcr.hold.initiateUpload', JSON.stringify({ digest }))
  assert.equal(r.status, 200, JSON.stringify(r.body))
  const { uploadId } = r.body
  r = await call(agent, 'io.atcr.hold.getPartUploadUrl', JSON.stringify({ uploadId, partNumber: 1 }))
  assert.equal(r.status, 200, JSON.stringify(r.body))
  const { url, method, headers } = r.body
  r = await call(agent, 'io.atcr.hold.uploadPart', bytes, { url, method, headers })
  assert.equal(r.status, 200, JSON.stringify(r.body))
  const parts = [{ partNumber: 1, etag: r.body.etag }]
  r = await call(agent, 'io.atcr.hold.completeUpload', JSON.stringify({ uploadId, digest, parts }))
  assert.deepEqual(r, { status: 200, body: { status: 'completed', digest } })

  const res = await fetch(
    `${baseUrl}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(nodeDid)}&cid=${digest}`,
  )
  assert.equal(res.status, 200)
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes)

  // A token the client bound to another method is refused with the reference's error name.
  r = await call(agent, 'io.atcr.hold.initiateUpload', JSON.stringify({ digest }), {
    lxm: 'io.atcr.hold.abortUpload',
  })
  assert.equal(r.status, 401)
  assert.equal(r.body.error, 'BadJwtLexiconMethod')
})
