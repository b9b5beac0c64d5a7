// The PDS's block collection through the reference libraries. ATCR_PHASE=write: alice rewrites
// and deletes records for many commits (bob keeps one record identical to one of alice's
// deleted ones: one block, two repositories) and the revision of an early commit is saved to
// ATCR_STATE. Then tests/pds_interop.rs runs `atcr gc`. ATCR_PHASE=verify: both repositories
// still verify with @atproto/repo (signed commit, MST rebuilt to the same root, every record
// CID), listRecords agrees, a getRecord proof verifies, getRepo since the collected revision
// answers a superset, and the repository takes new commits.
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { DidResolver } from '@atproto/identity'
import { MST, MemoryBlockstore, cborToLex, cborToLexRecord, cidForRecord, readCar, verifyRecords, verifyRepoCar } from '@atproto/repo'
import { alice, baseUrl, bob } from './env.mjs'

const POST = 'com.example.post'
const ROUNDS = 40
const resolver = new DidResolver({ plcUrl: baseUrl, fetch: globalThis.fetch, timeout: 10_000 })
const phase = process.env.ATCR_PHASE
const stateFile = process.env.ATCR_STATE

async function login(who) {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: who.handle, password: who.password })
  return agent
}

/** alice's records after the write phase: key → text. */
function expected() {
  const model = new Map()
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < 3; j++) model.set(`r${(round * 3 + j) % 12}`, `round ${round} item ${j}`)
    model.delete(`r${(round * 5) % 12}`)
  }
  model.set('shared', 'kept by bob')
  model.delete('shared')
  return model
}

async function getBytes(path) {
  const res = await fetch(`${baseUrl}${path}`)
  assert.equal(res.status, 200, `${path}: ${res.status} ${await res.clone().text()}`)
  return new Uint8Array(await res.arrayBuffer())
}

/** Downloads `who`'s repository, verifies it and rebuilds its MST; returns its records. */
async function verified(agent, who) {
  const key = await resolver.resolveAtprotoKey(who.did)
  const car = await getBytes(`/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(who.did)}`)
  const repo = await verifyRepoCar(car, who.did, key)
  const { roots, blocks } = await readCar(car)
  const commit = cborToLex(blocks.get(roots[0]))
  let tree = await MST.create(new MemoryBlockstore())
  const records = new Map()
  for (const c of repo.creates) {
    const record = cborToLexRecord(blocks.get(c.cid))
    assert.equal((await cidForRecord(record)).toString(), c.cid.toString())
    records.set(`${c.collection}/${c.rkey}`, record)
    tree = await tree.add(`${c.collection}/${c.rkey}`, c.cid)
  }
  assert.equal((await tree.getPointer()).toString(), commit.data.toString(), 'the same MST root')
  const listed = await agent.com.atproto.repo.listRecords({ repo: who.did, collection: POST, limit: 100 })
  assert.deepEqual(
    listed.data.records.map((r) => `${POST}/${r.uri.split('/').pop()}`).sort(),
    [...records.keys()].filter((k) => k.startsWith(`${POST}/`)).sort(),
  )
  return { key, records, rev: commit.rev }
}

if (phase === 'write') {
  test('many updates and deletes', async () => {
    const a = await login(alice)
    const b = await login(bob)
    await b.com.atproto.repo.putRecord({ repo: bob.did, collection: POST, rkey: 'mine', record: { text: 'kept by bob' } })
    let early
    const live = new Set()
    for (let round = 0; round < ROUNDS; round++) {
      for (let j = 0; j < 3; j++) {
        const rkey = `r${(round * 3 + j) % 12}`
        await a.com.atproto.repo.putRecord({ repo: alice.did, collection: POST, rkey, record: { text: `round ${round} item ${j}` } })
        live.add(rkey)
      }
      const gone = `r${(round * 5) % 12}`
      if (live.delete(gone)) await a.com.atproto.repo.deleteRecord({ repo: alice.did, collection: POST, rkey: gone })
      if (round === 1) early = (await a.com.atproto.sync.getLatestCommit({ did: alice.did })).data.rev
    }
    await a.com.atproto.repo.putRecord({ repo: alice.did, collection: POST, rkey: 'shared', record: { text: 'kept by bob' } })
    await a.com.atproto.repo.deleteRecord({ repo: alice.did, collection: POST, rkey: 'shared' })
    writeFileSync(stateFile, JSON.stringify({ early }))
  })
}

if (phase === 'verify') {
  test('after collection: repositories verify, proofs verify, since answers', async () => {
    const { early } = JSON.parse(readFileSync(stateFile, 'utf8'))
    const a = await login(alice)
    const { key, records } = await verified(a, alice)
    const want = expected()
    assert.equal(records.size, want.size)
    for (const [rkey, text] of want) assert.equal(records.get(`${POST}/${rkey}`)?.text, text, rkey)
    const bobs = await verified(await login(bob), bob)
    assert.equal(bobs.records.get(`${POST}/mine`)?.text, 'kept by bob', "bob's record (shared with alice's deleted one)")

    // A proof of one record, from the collected store.
    const [rkey, text] = [...want][0]
    const proof = await getBytes(`/xrpc/com.atproto.sync.getRecord?did=${encodeURIComponent(alice.did)}&collection=${POST}&rkey=${rkey}`)
    const claims = await verifyRecords(proof, alice.did, key)
    assert.equal(claims.length, 1)
    assert.equal(claims[0].record.text, text)

    // since a revision whose blocks were collected: every block the current tree needs.
    const since = await readCar(await getBytes(`/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(alice.did)}&since=${early}`))
    const whole = await readCar(await getBytes(`/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(alice.did)}`))
    for (const cid of whole.blocks.keys()) assert.ok(since.blocks.has(cid), `${cid} missing from since=${early}`)

    // Writing goes on, and the repository still verifies.
    await a.com.atproto.repo.putRecord({ repo: alice.did, collection: POST, rkey: 'after', record: { text: 'after collection' } })
    const after = await verified(a, alice)
    assert.equal(after.records.get(`${POST}/after`)?.text, 'after collection')
  })
}
