// @atproto/api's AtpAgent against atcr: sessions, every repo operation, blobs, app passwords.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AtpAgent, ComAtprotoRepoApplyWrites } from '@atproto/api'
import { cidForRecord } from '@atproto/repo'
import { jsonToLex } from '@atproto/lex-json'
import { alice, baseUrl, bob } from './env.mjs'

async function login(who, password = who.password) {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: who.handle, password })
  return agent
}

/** The XRPC error name of a rejected promise. */
async function xrpcError(promise) {
  try {
    await promise
  } catch (err) {
    return { status: err.status, error: err.error, message: err.message }
  }
  assert.fail('the call succeeded')
}

test('login, resumeSession, refresh, logout', async () => {
  const agent = await login(alice)
  assert.equal(agent.session.did, alice.did)
  assert.equal(agent.session.handle, alice.handle)
  // The DID document the session returns points the agent at this node.
  assert.equal(agent.pdsUrl?.origin, new URL(baseUrl).origin)

  const byDid = new AtpAgent({ service: baseUrl })
  await byDid.login({ identifier: alice.did, password: alice.password })
  assert.equal(byDid.session.did, alice.did)

  const bad = await xrpcError(new AtpAgent({ service: baseUrl }).login({ identifier: alice.handle, password: 'wrong' }))
  assert.equal(bad.status, 401)

  // resumeSession (a stored session, as an app restarting) refreshes the tokens at once.
  const stored = { ...agent.session }
  const resumed = new AtpAgent({ service: baseUrl })
  await resumed.resumeSession(stored)
  assert.equal(resumed.session.did, alice.did)
  assert.notEqual(resumed.session.refreshJwt, stored.refreshJwt)
  const me = await resumed.com.atproto.server.getSession()
  assert.equal(me.data.handle, alice.handle)

  const old = { ...resumed.session }
  await resumed.sessionManager.refreshSession()
  assert.notEqual(resumed.session.refreshJwt, old.refreshJwt)
  assert.notEqual(resumed.session.accessJwt, old.accessJwt)
  // Refresh tokens rotate; for a grace period the old one refreshes again, to the same new
  // session (as the reference PDS does), instead of logging a retrying client out.
  const jti = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).jti
  const res = await fetch(`${baseUrl}/xrpc/com.atproto.server.refreshSession`, {
    method: 'POST',
    headers: { authorization: `Bearer ${old.refreshJwt}` },
  })
  assert.equal(res.status, 200, `old refresh token within the grace period: ${res.status}`)
  assert.equal(jti((await res.json()).refreshJwt), jti(resumed.session.refreshJwt))
  assert.equal((await resumed.com.atproto.server.getSession()).data.did, alice.did)

  // Two agents resuming one stored session at once (resumeSession always refreshes) both stay
  // logged in.
  const shared = { ...resumed.session }
  const a = new AtpAgent({ service: baseUrl })
  const b = new AtpAgent({ service: baseUrl })
  await Promise.all([a.resumeSession(shared), b.resumeSession(shared)])
  for (const agentX of [a, b]) {
    assert.equal((await agentX.com.atproto.server.getSession()).data.did, alice.did)
  }
  assert.equal(jti(a.session.refreshJwt), jti(b.session.refreshJwt))

  // Logging out ends the session for every holder of it.
  const current = a.session.accessJwt
  await a.logout()
  assert.equal(a.hasSession, false)
  const after = await fetch(`${baseUrl}/xrpc/com.atproto.server.getSession`, {
    headers: { authorization: `Bearer ${current}` },
  })
  assert.equal(after.status, 401)
  const refreshAfter = await fetch(`${baseUrl}/xrpc/com.atproto.server.refreshSession`, {
    method: 'POST',
    headers: { authorization: `Bearer ${shared.refreshJwt}` },
  })
  assert.equal(refreshAfter.status, 401)
})

test('createRecord, getRecord, putRecord, deleteRecord, describeRepo', async () => {
  const agent = await login(alice)
  const repo = alice.did
  const collection = 'com.example.note'
  const record = { $type: collection, text: 'hello', createdAt: new Date(0).toISOString() }

  const created = await agent.com.atproto.repo.createRecord({ repo, collection, record })
  assert.match(created.data.uri, new RegExp(`^at://${repo}/${collection}/`))
  assert.equal(created.data.cid, (await cidForRecord(record)).toString())
  assert.ok(created.data.commit?.cid && created.data.commit?.rev)
  const rkey = created.data.uri.split('/').pop()

  const got = await agent.com.atproto.repo.getRecord({ repo, collection, rkey })
  assert.equal(got.data.cid, created.data.cid)
  assert.deepEqual(got.data.value, record)
  // By handle too.
  const byHandle = await agent.com.atproto.repo.getRecord({ repo: alice.handle, collection, rkey })
  assert.equal(byHandle.data.cid, created.data.cid)

  const updated = { ...record, text: 'hello again' }
  const put = await agent.com.atproto.repo.putRecord({ repo, collection, rkey, record: updated, swapRecord: created.data.cid })
  assert.equal(put.data.cid, (await cidForRecord(updated)).toString())
  const stale = await xrpcError(agent.com.atproto.repo.putRecord({ repo, collection, rkey, record, swapRecord: created.data.cid }))
  assert.equal(stale.error, 'InvalidSwap')
  assert.equal((await agent.com.atproto.repo.getRecord({ repo, collection, rkey })).data.value.text, 'hello again')

  const putNew = await agent.com.atproto.repo.putRecord({ repo, collection, rkey: 'self', record })
  assert.equal(putNew.data.uri, `at://${repo}/${collection}/self`)

  const desc = await agent.com.atproto.repo.describeRepo({ repo })
  assert.equal(desc.data.did, repo)
  assert.equal(desc.data.handle, alice.handle)
  assert.equal(desc.data.handleIsCorrect, true)
  assert.ok(desc.data.collections.includes(collection))
  assert.equal(desc.data.didDoc.id, repo)

  await agent.com.atproto.repo.deleteRecord({ repo, collection, rkey })
  const gone = await xrpcError(agent.com.atproto.repo.getRecord({ repo, collection, rkey }))
  assert.equal(gone.error, 'RecordNotFound')
  await agent.com.atproto.repo.deleteRecord({ repo, collection, rkey: 'self' })

  // Another user's repository is not writable.
  const foreign = await xrpcError(agent.com.atproto.repo.createRecord({ repo: bob.did, collection, record }))
  assert.ok(foreign.status === 401 || foreign.status === 403, `${foreign.status}`)
})

test('applyWrites, with a swapCommit conflict', async () => {
  const agent = await login(alice)
  const repo = alice.did
  const collection = 'com.example.batch'
  const res = await agent.com.atproto.repo.applyWrites({
    repo,
    writes: [
      { $type: 'com.atproto.repo.applyWrites#create', collection, rkey: 'a', value: { n: 1 } },
      { $type: 'com.atproto.repo.applyWrites#create', collection, rkey: 'b', value: { n: 2 } },
    ],
  })
  assert.equal(res.data.results.length, 2)
  assert.equal(res.data.results[0].$type, 'com.atproto.repo.applyWrites#createResult')
  assert.equal(res.data.results[0].cid, (await cidForRecord({ $type: collection, n: 1 })).toString())
  const head = res.data.commit.cid
  const latest = await agent.com.atproto.sync.getLatestCommit({ did: repo })
  assert.equal(latest.data.cid, head)

  const next = await agent.com.atproto.repo.applyWrites({
    repo,
    swapCommit: head,
    writes: [
      { $type: 'com.atproto.repo.applyWrites#update', collection, rkey: 'a', value: { n: 10 } },
      { $type: 'com.atproto.repo.applyWrites#delete', collection, rkey: 'b' },
    ],
  })
  assert.equal(next.data.results[0].$type, 'com.atproto.repo.applyWrites#updateResult')
  assert.equal(next.data.results[1].$type, 'com.atproto.repo.applyWrites#deleteResult')

  // The old head no longer matches: nothing of the batch is applied.
  let thrown
  try {
    await agent.com.atproto.repo.applyWrites({
      repo,
      swapCommit: head,
      writes: [{ $type: 'com.atproto.repo.applyWrites#create', collection, rkey: 'c', value: { n: 3 } }],
    })
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown, 'the stale swapCommit was accepted')
  assert.equal(thrown.error, 'InvalidSwap')
  assert.ok(thrown instanceof ComAtprotoRepoApplyWrites.InvalidSwapError, `${thrown.constructor.name}`)
  const c = await xrpcError(agent.com.atproto.repo.getRecord({ repo, collection, rkey: 'c' }))
  assert.equal(c.error, 'RecordNotFound')
  const a = await agent.com.atproto.repo.getRecord({ repo, collection, rkey: 'a' })
  assert.equal(a.data.value.n, 10)

  // An #update or #delete of a record that does not exist fails the whole batch (as the
  // reference PDS does): the #create before it is not applied either.
  for (const missing of [
    { $type: 'com.atproto.repo.applyWrites#update', collection, rkey: 'nothing', value: { n: 0 } },
    { $type: 'com.atproto.repo.applyWrites#delete', collection, rkey: 'nothing' },
  ]) {
    const before = (await agent.com.atproto.sync.getLatestCommit({ did: repo })).data.cid
    const failed = await xrpcError(
      agent.com.atproto.repo.applyWrites({
        repo,
        writes: [{ $type: 'com.atproto.repo.applyWrites#create', collection, rkey: 'd', value: { n: 4 } }, missing],
      }),
    )
    assert.equal(failed.status, 400, missing.$type)
    assert.equal(failed.error, 'InvalidRequest')
    assert.match(failed.message, new RegExp(`Could not find a record with key: ${collection}/nothing`))
    const d = await xrpcError(agent.com.atproto.repo.getRecord({ repo, collection, rkey: 'd' }))
    assert.equal(d.error, 'RecordNotFound')
    assert.equal((await agent.com.atproto.sync.getLatestCommit({ did: repo })).data.cid, before)
  }
})

test('io.atcr.manifest records keyed by digest, as ATCR writes them', async () => {
  const agent = await login(alice)
  const repo = alice.did
  const collection = 'io.atcr.manifest'
  const digest = `sha256:${'ab'.repeat(32)}`
  const record = {
    $type: collection,
    repository: 'keys',
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    schemaVersion: 2,
    createdAt: new Date(0).toISOString(),
  }
  // The lexicon says `key: tid`; like the reference PDS, any valid record key is taken.
  const created = await agent.com.atproto.repo.createRecord({ repo, collection, rkey: digest, record })
  assert.equal(created.data.uri, `at://${repo}/${collection}/${digest}`)
  assert.equal(created.data.validationStatus, 'valid')
  const put = await agent.com.atproto.repo.putRecord({ repo, collection, rkey: digest, record: { ...record, repository: 'keys2' } })
  assert.equal(put.data.validationStatus, 'valid')
  // The data is still validated, whatever the key.
  const invalid = await xrpcError(
    agent.com.atproto.repo.createRecord({ repo, collection, rkey: `sha256:${'cd'.repeat(32)}`, record: { ...record, digest: 7 } }),
  )
  assert.equal(invalid.status, 400)
  assert.equal(invalid.error, 'InvalidRequest')
  // A key that is not a record key is refused by the node (sent raw: a client might refuse
  // it before sending).
  for (const rkey of ['sha256 ab', '..', 'a/b']) {
    const res = await fetch(`${baseUrl}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agent.session.accessJwt}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repo, collection, rkey, record }),
    })
    assert.equal(res.status, 400, rkey)
    assert.equal((await res.json()).error, 'InvalidRequest')
  }
  await agent.com.atproto.repo.deleteRecord({ repo, collection, rkey: digest })
})

test('writes check who is writing before whether the repository exists', async () => {
  const agent = await login(alice)
  const record = { text: 'x' }
  for (const repo of [bob.did, 'did:plc:nobodyhere0000000000000', 'nobody.example.com']) {
    const foreign = await xrpcError(agent.com.atproto.repo.createRecord({ repo, collection: 'com.example.note', record }))
    assert.equal(foreign.status, 403, repo)
  }
  const anonymous = new AtpAgent({ service: baseUrl })
  const noAuth = await xrpcError(
    anonymous.com.atproto.repo.createRecord({ repo: 'did:plc:nobodyhere0000000000000', collection: 'com.example.note', record }),
  )
  assert.equal(noAuth.status, 401)
})

test('uploadBlob and a record that references it', async () => {
  const agent = await login(alice)
  const bytes = new Uint8Array(4096).map((_, i) => (i * 7) % 256)
  const up = await agent.uploadBlob(bytes, { encoding: 'image/png' })
  const blob = up.data.blob
  assert.equal(blob.mimeType, 'image/png')
  assert.equal(blob.size, bytes.length)
  const record = { $type: 'com.example.photo', image: blob, alt: 'pattern' }
  const created = await agent.com.atproto.repo.createRecord({ repo: alice.did, collection: 'com.example.photo', record })
  const rkey = created.data.uri.split('/').pop()
  const got = await agent.com.atproto.repo.getRecord({ repo: alice.did, collection: 'com.example.photo', rkey })
  assert.equal(got.data.cid, created.data.cid)
  assert.equal(got.data.value.image.ref.$link ?? got.data.value.image.ref.toString(), blob.ref.toString())
  // The record's CID from its JSON form, blob link included.
  const json = JSON.parse(JSON.stringify(got.data.value))
  assert.equal((await cidForRecord(jsonToLex(json))).toString(), created.data.cid)

  const fetched = await agent.com.atproto.sync.getBlob({ did: alice.did, cid: blob.ref.toString() })
  assert.deepEqual(new Uint8Array(fetched.data), bytes)
  const listed = await agent.com.atproto.sync.listBlobs({ did: alice.did })
  assert.ok(listed.data.cids.includes(blob.ref.toString()))

  // Bob cannot reference Alice's blob.
  const bobAgent = await login(bob)
  const foreign = await xrpcError(
    bobAgent.com.atproto.repo.createRecord({ repo: bob.did, collection: 'com.example.photo', record }),
  )
  assert.equal(foreign.status, 400)
})

test('listRecords: cursor paging and reverse', async () => {
  const agent = await login(bob)
  const repo = bob.did
  const collection = 'com.example.item'
  const rkeys = ['k1', 'k2', 'k3', 'k4', 'k5']
  for (const rkey of rkeys) {
    await agent.com.atproto.repo.putRecord({ repo, collection, rkey, record: { rkey } })
  }
  const page = async (reverse) => {
    const seen = []
    let cursor
    for (let i = 0; i < 10; i++) {
      const res = await agent.com.atproto.repo.listRecords({ repo, collection, limit: 2, cursor, reverse })
      assert.ok(res.data.records.length <= 2)
      for (const r of res.data.records) {
        assert.equal(r.cid, (await cidForRecord(r.value)).toString())
        seen.push(r.uri.split('/').pop())
      }
      cursor = res.data.cursor
      if (!cursor || res.data.records.length === 0) break
    }
    return seen
  }
  assert.deepEqual(await page(false), [...rkeys].reverse())
  assert.deepEqual(await page(true), rkeys)
})

test('app passwords: create, list, log in, revoke', async () => {
  const agent = await login(bob)
  const created = await agent.com.atproto.server.createAppPassword({ name: 'ci' })
  assert.equal(created.data.name, 'ci')
  assert.match(created.data.password, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/)
  const list = await agent.com.atproto.server.listAppPasswords()
  assert.deepEqual(list.data.passwords.map((p) => p.name), ['ci'])

  const app = await login(bob, created.data.password)
  assert.equal(app.session.did, bob.did)
  await app.com.atproto.repo.createRecord({ repo: bob.did, collection: 'com.example.note', record: { text: 'via app password' } })
  // An app-password session cannot mint app passwords.
  const denied = await xrpcError(app.com.atproto.server.createAppPassword({ name: 'nested' }))
  assert.ok(denied.status >= 400 && denied.status < 500)

  await agent.com.atproto.server.revokeAppPassword({ name: 'ci' })
  assert.deepEqual((await agent.com.atproto.server.listAppPasswords()).data.passwords, [])
  const relogin = await xrpcError(new AtpAgent({ service: baseUrl }).login({ identifier: bob.handle, password: created.data.password }))
  assert.equal(relogin.status, 401)
  const res = await fetch(`${baseUrl}/xrpc/com.atproto.server.getSession`, {
    headers: { authorization: `Bearer ${app.session.accessJwt}` },
  })
  assert.equal(res.status, 401, 'a revoked app password keeps its sessions')
})
