// @atproto/repo + @atproto/identity: every repository of the node (did:plc users through the
// node's PLC directory, the node's own did:web) downloaded with sync.getRepo and verified:
// signed commit, MST, every record CID, against the #atproto key of the resolved DID document.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { verifyCidForBytes } from '@atproto/common'
import { DidResolver } from '@atproto/identity'
import { MST, MemoryBlockstore, cborToLex, cborToLexRecord, cidForRecord, readCar, verifyRecords, verifyRepoCar } from '@atproto/repo'
import { alice, baseUrl, bob, nodeDid } from './env.mjs'

// The default fetch refuses http: and loopback (SSRF protection): tests inject the plain one.
const resolver = new DidResolver({ plcUrl: baseUrl, fetch: globalThis.fetch, timeout: 10_000 })

async function getBytes(path) {
  const res = await fetch(`${baseUrl}${path}`)
  assert.equal(res.status, 200, `${path}: ${res.status} ${await res.clone().text()}`)
  return new Uint8Array(await res.arrayBuffer())
}

/** Every (collection/rkey → cid) the node lists for `did`, through listRecords. */
async function listed(agent, did) {
  const out = new Map()
  const { data } = await agent.com.atproto.repo.describeRepo({ repo: did })
  for (const collection of data.collections) {
    let cursor
    do {
      const res = await agent.com.atproto.repo.listRecords({ repo: did, collection, limit: 100, cursor })
      for (const r of res.data.records) out.set(`${collection}/${r.uri.split('/').pop()}`, r.cid)
      cursor = res.data.records.length ? res.data.cursor : undefined
    } while (cursor)
  }
  return out
}

/** Downloads and verifies the repository of `did`; returns what the verifier found. */
async function verifyRepository(agent, did, expectedHandle) {
  let key
  if (expectedHandle) {
    const data = await resolver.resolveAtprotoData(did)
    assert.equal(data.did, did)
    assert.equal(data.pds, baseUrl, 'the #atproto_pds endpoint of the DID document')
    assert.equal(data.handle, expectedHandle)
    key = data.signingKey
  } else {
    // The node's did:web has no handle (resolveAtprotoData requires one): key and endpoint.
    key = await resolver.resolveAtprotoKey(did)
    const doc = await resolver.resolve(did)
    const pds = doc.service.find((s) => s.id === '#atproto_pds' || s.id === `${did}#atproto_pds`)
    assert.equal(pds?.serviceEndpoint, baseUrl)
  }
  assert.match(key, /^did:key:z/)

  const car = await getBytes(`/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
  // Checks each block against its CID, the commit signature, the DID and the MST walk.
  const verified = await verifyRepoCar(car, did, key)
  const { roots, blocks } = await readCar(car)
  const commit = cborToLex(blocks.get(roots[0]))
  assert.equal(commit.did, did)
  const latest = await agent.com.atproto.sync.getLatestCommit({ did })
  assert.equal(commit.rev, latest.data.rev)
  assert.equal(roots[0].toString(), latest.data.cid)

  const seen = new Map()
  const mst = { tree: await MST.create(new MemoryBlockstore()) }
  for (const c of verified.creates) {
    const record = cborToLexRecord(blocks.get(c.cid))
    assert.equal((await cidForRecord(record)).toString(), c.cid.toString(), `${c.collection}/${c.rkey}`)
    seen.set(`${c.collection}/${c.rkey}`, c.cid.toString())
    mst.tree = await mst.tree.add(`${c.collection}/${c.rkey}`, c.cid)
  }
  // The same leaves give the same (canonical) tree: the node's MST shape is the reference's.
  assert.equal((await mst.tree.getPointer()).toString(), commit.data.toString())
  assert.deepEqual(seen, await listed(agent, did))

  // Any other key is refused.
  const other = await resolver.resolveAtprotoKey(did === alice.did ? bob.did : alice.did)
  await assert.rejects(verifyRepoCar(car, did, other))
  return { key, verified, blocks }
}

test('did:plc users: DID documents from the node PLC directory, getRepo verified', async () => {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: alice.handle, password: alice.password })
  // Enough records for a multi-level MST, across collections, one with a blob.
  const writes = []
  for (let i = 0; i < 60; i++) {
    writes.push({
      $type: 'com.atproto.repo.applyWrites#create',
      collection: i % 3 ? 'com.example.post' : 'com.example.like',
      value: { text: `record ${i}`, n: i, nested: { list: [i, `${i}`, null, true] } },
    })
  }
  await agent.com.atproto.repo.applyWrites({ repo: alice.did, writes })
  const blob = await agent.uploadBlob(new TextEncoder().encode('blob bytes'), { encoding: 'text/plain' })
  await agent.com.atproto.repo.putRecord({
    repo: alice.did,
    collection: 'com.example.file',
    rkey: 'self',
    record: { file: blob.data.blob, name: 'notes.txt' },
  })
  // A deleted record leaves no trace in the tree.
  await agent.com.atproto.repo.putRecord({ repo: alice.did, collection: 'com.example.post', rkey: 'gone', record: { text: 'x' } })
  await agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: 'com.example.post', rkey: 'gone' })

  const doc = await resolver.resolve(alice.did)
  assert.equal(doc.id, alice.did)
  assert.deepEqual(doc.alsoKnownAs, [`at://${alice.handle}`])

  const { key, verified } = await verifyRepository(agent, alice.did, alice.handle)
  assert.ok(verified.creates.length >= 60)
  await verifyRepository(agent, bob.did, bob.handle)

  // sync.getRecord: a proof of one record, checked by the reference verifier.
  const one = verified.creates.find((c) => c.collection === 'com.example.file')
  const proof = await getBytes(
    `/xrpc/com.atproto.sync.getRecord?did=${encodeURIComponent(alice.did)}&collection=${one.collection}&rkey=${one.rkey}`,
  )
  const claims = await verifyRecords(proof, alice.did, key)
  assert.equal(claims.length, 1)
  assert.equal((await cidForRecord(claims[0].record)).toString(), one.cid.toString())
})

test("the node's own did:web: DID document at /.well-known/did.json, repo verified", async () => {
  assert.match(nodeDid, /^did:web:localhost%3A\d+$/)
  const doc = await resolver.resolve(nodeDid)
  assert.ok(doc, `${nodeDid} did not resolve`)
  assert.equal(doc.id, nodeDid)
  const agent = new AtpAgent({ service: baseUrl })
  const describe = await agent.com.atproto.server.describeServer()
  assert.equal(describe.data.did, nodeDid)
  const repo = await agent.com.atproto.repo.describeRepo({ repo: nodeDid })
  assert.equal(repo.data.handle, 'handle.invalid')
  assert.equal(repo.data.handleIsCorrect, false)
  await verifyRepository(agent, nodeDid, null)
})

test('sync.getBlocks: blocks of one repository, each hashing to its CID', async () => {
  /** Signs in `who` and writes one post; returns the agent and the post's CID. */
  const post = async (who, text) => {
    const agent = new AtpAgent({ service: baseUrl })
    await agent.login({ identifier: who.handle, password: who.password })
    const res = await agent.com.atproto.repo.createRecord({ repo: who.did, collection: 'com.example.post', record: { text } })
    return { agent, cid: res.data.cid }
  }
  const { agent, cid: created } = await post(alice, 'fetched by getBlocks')
  const { cid: bobs } = await post(bob, "bob's own")

  const car = await getBytes(`/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(alice.did)}`)
  const repo = await readCar(car)
  const commitCid = repo.roots[0]
  const commit = cborToLex(repo.blocks.get(commitCid))
  const cids = [commitCid.toString(), commit.data.toString(), created]

  // Anonymous, as a relay asks (the hold is public).
  const res = await new AtpAgent({ service: baseUrl }).com.atproto.sync.getBlocks({ did: alice.did, cids })
  assert.equal(res.headers['content-type'], 'application/vnd.ipld.car')
  // readCar checks each block against its CID; verifyCidForBytes says so once more.
  const got = await readCar(res.data)
  assert.deepEqual(got.roots, [])
  assert.deepEqual(
    [...got.blocks.keys()].map((c) => c.toString()).sort(),
    [...cids].sort(),
  )
  for (const [cid, bytes] of got.blocks) {
    await verifyCidForBytes(cid, bytes)
    assert.deepEqual(bytes, repo.blocks.get(cid), `${cid} as getRepo has it`)
  }
  const [, record] = [...got.blocks].find(([cid]) => cid.toString() === created)
  assert.equal(cborToLexRecord(record).text, 'fetched by getBlocks')

  // A block of another repository is not served through this one, nor one that exists nowhere.
  for (const missing of [bobs, (await cidForRecord({ text: 'never written' })).toString()]) {
    await assert.rejects(agent.com.atproto.sync.getBlocks({ did: alice.did, cids: [cids[0], missing] }), (e) => {
      assert.equal(e.status, 400)
      assert.equal(e.error, 'BlockNotFound')
      assert.match(e.message, new RegExp(missing))
      return true
    })
  }
  // A malformed DID is the caller's error; a well-formed unknown one is not found.
  const bad = await fetch(`${baseUrl}/xrpc/com.atproto.sync.getBlocks?did=alice&cids=${cids[0]}`)
  assert.equal(bad.status, 400)
  assert.equal((await bad.json()).error, 'InvalidRequest')
  const unknown = await fetch(`${baseUrl}/xrpc/com.atproto.sync.getBlocks?did=did:plc:nobodyhere0000000000000&cids=${cids[0]}`)
  assert.equal(unknown.status, 404)
  assert.equal((await unknown.json()).error, 'RepoNotFound')
})
